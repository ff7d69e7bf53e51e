"""Real photo context around a tight hand crop: the room the server's crop shows.

The served crop is the detector box grown ×1.2 and squared, so about a third of the
classifier's input is what surrounds the hand in the photo: the arm, the shirt, the face, the
room. HaGRID's tight crops have none of it, and :class:`~served_view.ServedView` can only fill
the margin from the crop itself (stretched border pixels, a blurred copy, a flat colour).
Trained that way, the classifier met real surroundings for the first time when served.

:class:`SceneContext` supplies that margin from boxed photos of people (the detector's training
scenes): a canvas cut around one of their real hands, scaled so that hand fits inside the place
where the tight crop will be pasted. The margin is then a real arm, body and room in the served
geometry, drawn from many photos; the pasted crop covers the scene's own hand. The scenes'
photos must not be test photos of anything the classifier is judged on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from gesture_recognition.images import load_image
from gesture_recognition.training.copy_paste import read_scenes


class SceneContext:
    """Canvases cut from real photos around a real hand (``images/train`` folders of YOLO data).

    Picklable (paths and boxes only) so DataLoader workers share it; random draws use torch's
    generator, seeded per epoch and per worker as the rest of the training transforms.
    """

    def __init__(self, image_dirs: Sequence[str | Path], min_hand_side: int = 16) -> None:
        self.sites: list[tuple[Path, NDArray[np.float32]]] = []
        for image_dir in image_dirs:
            if not Path(image_dir).is_dir():
                raise FileNotFoundError(f"no such scene folder: {image_dir}")
            for scene in read_scenes(Path(image_dir)):
                for box in scene.boxes:
                    if min(box[2] - box[0], box[3] - box[1]) >= min_hand_side:
                        self.sites.append((scene.path, box))
        if not self.sites:
            folders = ", ".join(map(str, image_dirs))
            raise ValueError(f"no boxed hand of {min_hand_side}+ px in {folders}")

    def __len__(self) -> int:
        return len(self.sites)

    def canvas(
        self, width: int, height: int, hand: tuple[int, int, int, int], pick: float
    ) -> NDArray[np.uint8]:
        """A ``height`` x ``width`` RGB canvas of a real photo whose hand lies on ``hand``.

        ``hand`` is (left, top, w, h): where the tight crop will be pasted; ``pick`` in [0, 1)
        chooses the hand site. The scene's hand box is scaled to fit inside ``hand``, centres
        together; outside the photo, its edge pixels extend.
        """
        path, box = self.sites[min(int(pick * len(self.sites)), len(self.sites) - 1)]
        left, top, w, h = hand
        # Photo px per canvas px: the scene's hand fits inside the crop on both axes, so the
        # pasted crop hides it (a finger of another gesture peeking out would contradict the
        # crop's label).
        factor = max((box[2] - box[0]) / w, (box[3] - box[1]) / h)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0 = cx - (left + w / 2) * factor
        y0 = cy - (top + h / 2) * factor
        photo = load_image(path)
        # Only the window the canvas shows is read, its indices clamped to the photo: off the
        # photo, its edge pixels extend (a hot path: once per training draw).
        x1, y1 = x0 + width * factor, y0 + height * factor
        ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
        rows = np.clip(np.arange(iy0, int(np.ceil(y1)) + 1), 0, photo.shape[0] - 1)
        cols = np.clip(np.arange(ix0, int(np.ceil(x1)) + 1), 0, photo.shape[1] - 1)
        window = photo[rows[:, None], cols[None, :]]
        out = Image.fromarray(window).resize(
            (width, height), Image.Resampling.BILINEAR, box=(x0 - ix0, y0 - iy0, x1 - ix0, y1 - iy0)
        )
        return np.array(out, np.uint8)  # writable: the crop is pasted onto it
