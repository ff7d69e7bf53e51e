"""MediaPipe Hands as a teacher: hand boxes for photos without true boxes.

The box is the rectangle around MediaPipe's 21 hand landmarks, grown by ``padding`` of its
width and height on each side (landmarks sit on joints and fingertips, so the bare rectangle
cuts the fingertips' flesh and the palm's edge; the padding that matches human boxes is
measured in ``reports/teacher``). The score is MediaPipe's confidence for the hand (its
handedness classification score, the only per-hand confidence the Hands solution reports).

Its dependencies (``mediapipe==0.10.14``, the last release that ships the Hands models in the
wheel; ``opencv-contrib-python``; ``protobuf<5``) clash with the project's (ultralytics installs
``opencv-python``, which owns the same ``cv2`` package), so the teacher lives in its own
environment, ``.venv-teacher`` (``scripts/bootstrap.sh teacher``). ``gesture-train detect
--teacher mediapipe`` runs it there: this module imports only numpy, Pillow, tqdm and
mediapipe, and writes the same detection cache as the detector (``training.detect_cache``),
which the crop, export, review and apply steps read. Serving never needs it.

    python -m gesture_recognition.training.teacher PHOTOS --out CACHE.json [--padding 0.1]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.training.detect_cache import cache_boxes

TEACHERS = ("mediapipe",)
DEFAULT_PADDING = 0.1
# The environment the teacher runs in unless mediapipe imports here (scripts/bootstrap.sh
# teacher makes it at the repository root; training/ sits there in the editable install).
TEACHER_PYTHON = Path(__file__).resolve().parents[1] / ".venv-teacher" / "bin" / "python"
TEACHER_PYTHON_ENV = "GESTURE_TEACHER_PYTHON"


class MediaPipeHands:
    """``photo -> (boxes, scores)`` from MediaPipe Hands (static-image mode, CPU)."""

    def __init__(
        self,
        padding: float = DEFAULT_PADDING,
        max_hands: int = 4,
        min_confidence: float = 0.5,
        model_complexity: int = 1,
    ) -> None:
        if not 0.0 <= padding <= 1.0:
            raise ValueError(f"padding must be within [0, 1], got {padding}")
        from mediapipe.python.solutions import hands  # the wheel's own palm + landmark models

        # mediapipe 0.10.14 calls a protobuf API that protobuf 4.25 deprecates, once per photo.
        warnings.filterwarnings("ignore", "SymbolDatabase.GetPrototype", UserWarning)
        self.padding = padding
        self.settings = {
            "max_num_hands": max_hands,
            "min_detection_confidence": min_confidence,
            "model_complexity": model_complexity,
        }
        self._hands = hands.Hands(static_image_mode=True, **self.settings)

    def identity(self) -> dict[str, Any]:
        """What the cache records as its maker: a cache of other settings is not resumed."""
        import mediapipe

        return {
            "kind": "teacher",
            "teacher": "mediapipe_hands",
            "mediapipe": mediapipe.__version__,
            "padding": self.padding,
            **self.settings,
        }

    def __call__(self, image: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        height, width = image.shape[:2]
        result = self._hands.process(np.ascontiguousarray(image))
        hands = result.multi_hand_landmarks or []
        handedness = result.multi_handedness or []
        boxes, scores = [], []
        for landmarks, side in zip(hands, handedness, strict=False):
            points = np.array([(p.x * width, p.y * height) for p in landmarks.landmark])
            boxes.append(landmark_box(points, self.padding, width, height))
            scores.append(side.classification[0].score)
        return (
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(scores, np.float32).reshape(-1),
        )

    def close(self) -> None:
        self._hands.close()


def landmark_box(
    points: NDArray[np.float64], padding: float, width: int, height: int
) -> NDArray[np.float32]:
    """The rectangle around ``points`` ``[K, 2]`` grown by ``padding`` of its size a side,
    clipped to the photo."""
    x1, y1 = points.min(axis=0)
    x2, y2 = points.max(axis=0)
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    return np.array(
        [
            max(0.0, x1 - pad_x),
            max(0.0, y1 - pad_y),
            min(float(width), x2 + pad_x),
            min(float(height), y2 + pad_y),
        ],
        np.float32,
    )


def label_photos(
    root: Path,
    out_path: Path,
    padding: float = DEFAULT_PADDING,
    images: Sequence[Path] | None = None,
) -> dict[str, Any]:
    """Teacher boxes for every photo under ``root`` (or ``images``) into the cache ``out_path``."""
    teacher = MediaPipeHands(padding=padding)
    try:
        return cache_boxes(
            teacher, teacher.identity(), root, out_path, images, desc="teacher (MediaPipe Hands)"
        )
    finally:
        teacher.close()


def mediapipe_importable() -> bool:
    try:
        import mediapipe.python.solutions.hands  # noqa: F401
    except ImportError:
        return False
    return True


def teacher_python() -> Path:
    """The interpreter of the teacher's environment ($GESTURE_TEACHER_PYTHON or .venv-teacher)."""
    return Path(os.environ.get(TEACHER_PYTHON_ENV) or TEACHER_PYTHON)


def run_teacher(
    root: Path, out_path: Path, padding: float, images: Sequence[Path] | None = None
) -> dict[str, Any]:
    """Label here when mediapipe imports, else in the teacher's environment (a subprocess)."""
    if mediapipe_importable():
        return label_photos(root, out_path, padding, images)
    import json
    import subprocess
    import tempfile

    python = teacher_python()
    if not python.is_file():
        raise FileNotFoundError(
            f"the MediaPipe teacher needs its own environment: no {python}. Create it with "
            f"`scripts/bootstrap.sh teacher` (or point {TEACHER_PYTHON_ENV} at a Python with "
            "mediapipe==0.10.14 and this package installed)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        command = [str(python), "-m", "gesture_recognition.training.teacher", str(root)]
        command += ["--out", str(out_path), "--padding", str(padding)]
        if images is not None:
            listing = Path(tmp) / "images.txt"
            listing.write_text("\n".join(str(Path(p).resolve()) for p in images), "utf-8")
            command += ["--images", str(listing)]
        # stderr passes through: the teacher's progress bar, and its one-line error if any.
        done = subprocess.run(command)
    if done.returncode != 0:
        raise ValueError(f"the teacher ({python}) failed with exit status {done.returncode}")
    return dict(json.loads(Path(out_path).read_text(encoding="utf-8")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gesture_recognition.training.teacher", description=__doc__.split("\n")[0]
    )
    parser.add_argument("root", help="photo folder (the cache keys are paths relative to it)")
    parser.add_argument("--out", required=True, help="cache file (JSON); resumes if it exists")
    parser.add_argument("--padding", type=float, default=DEFAULT_PADDING)
    parser.add_argument("--images", help="a file listing the photos to label, one path a line")
    args = parser.parse_args(argv)
    images = None
    if args.images:
        images = [Path(line) for line in Path(args.images).read_text("utf-8").split("\n") if line]
    root = Path(args.root)
    if not root.is_dir():
        print(f"teacher: error: no such folder {root}", file=sys.stderr)
        return 2
    try:
        cache = label_photos(root, Path(args.out), args.padding, images)
    except (ValueError, FileNotFoundError) as exc:
        print(f"teacher: error: {exc}", file=sys.stderr)
        return 2
    with_hand = sum(1 for e in cache["images"].values() if e["boxes"])
    print(f"{len(cache['images'])} photos in {args.out}: {with_hand} with at least one hand")
    return 0


if __name__ == "__main__":
    sys.exit(main())
