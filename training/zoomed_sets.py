"""A detector set shown smaller: people farther from the camera, with boxes that stay true.

Every detector test set of this project shows large hands (at the detector's 320-pixel input,
nearly all are 48 pixels or more), while a photo of a person across a room puts a few dozen
pixels on a hand. :func:`write_zoomed_set` writes a copy of a labelled split in which each photo
is shrunk to ``1/zoom`` of its size onto a grey canvas of its original size, at a random place,
its boxes moved with it: the same hands with fewer pixels, the photo's size unchanged (so the
detector's letterbox is the same). The copy is an ultralytics dataset (``images/<split>``,
``labels/<split>``, ``data.yaml``), so ``gesture-train evaluate --detector-data`` scores it, the
MediaPipe peer beside it, with the same matching code.

Grey (114) is what the detector has seen around shrunk photos: ultralytics' letterbox and
affine augmentation fill with it. The photos are written as PNG: no JPEG artefacts on hands a
few pixels wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from gesture_recognition.images import load_image
from gesture_recognition.training.detector_sets import load_set
from gesture_recognition.training.pseudo_labels import yolo_rows

GREY = 114


@dataclass
class ZoomReport:
    photos: int = 0
    boxes: int = 0
    smallest_side: float = float("inf")  # the smallest box side in the written photos, px

    def summary(self) -> str:
        small = f", smallest box side {self.smallest_side:.1f} px" if self.boxes else ""
        return f"{self.photos} photos, {self.boxes} boxes{small}"


def zoom_out(
    image: NDArray[np.uint8], boxes: NDArray[np.float32], zoom: float, rng: np.random.Generator
) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """``image`` shrunk to ``1/zoom`` onto a grey canvas of its size at a random place, and
    ``boxes`` (``[N, 4]`` pixels) moved with it. ``zoom`` 1 returns them unchanged."""
    if zoom < 1:
        raise ValueError(f"zoom must be at least 1 (1/zoom of the size), got {zoom}")
    if zoom == 1:
        return image, boxes
    height, width = image.shape[:2]
    w, h = max(1, round(width / zoom)), max(1, round(height / zoom))
    small = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
    x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    canvas = np.full_like(image, GREY)
    canvas[y0 : y0 + h, x0 : x0 + w] = small
    scale = np.array([w / width, h / height, w / width, h / height], np.float32)
    offset = np.array([x0, y0, x0, y0], np.float32)
    return canvas, (np.asarray(boxes, np.float32).reshape(-1, 4) * scale + offset)


def write_zoomed_set(
    data_yaml: str | Path, split: str, zoom: float, out_dir: str | Path, seed: int = 0
) -> ZoomReport:
    """The ``split`` of ``data_yaml`` zoomed out (module doc), as a dataset in ``out_dir``."""
    out = Path(out_dir)
    if (out / "data.yaml").exists():
        raise FileExistsError(f"{out / 'data.yaml'} exists: choose a new folder")
    photos = load_set(Path(data_yaml).stem, Path(data_yaml), split)
    images, labels = out / "images" / split, out / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    report = ZoomReport()
    names: set[str] = set()
    for path, truth in tqdm(
        list(zip(photos.images, photos.truths, strict=True)), desc=f"zoom 1/{zoom:g}", unit="img"
    ):
        if path.stem in names:
            raise ValueError(f"two photos named {path.stem} in the split: rename one")
        names.add(path.stem)
        canvas, boxes = zoom_out(load_image(path), truth, zoom, rng)
        Image.fromarray(canvas).save(images / f"{path.stem}.png")
        height, width = canvas.shape[:2]
        rows = [(b[0], b[1], b[2], b[3]) for b in boxes.tolist()]
        (labels / f"{path.stem}.txt").write_text(yolo_rows(rows, width, height), "utf-8")
        report.photos += 1
        report.boxes += len(boxes)
        if len(boxes):
            sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            report.smallest_side = min(report.smallest_side, float(sides.min()))
    data = {"path": ".", split: f"images/{split}", "names": {0: "hand"}}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return report
