"""The Oxford (VGG) Hand dataset: one MATLAB ``.mat`` annotation per image.

Layout: ``training_dataset``, ``validation_dataset``, ``test_dataset``, each holding
``images/*.jpg`` and ``annotations/*.mat`` either directly or one folder down
(``training_dataset/training_data/annotations``, the layout of the published archive as
public converters describe it). ``root`` may also be one such split folder.

Each ``.mat`` holds ``boxes``: a 1xN cell array of structs with fields ``a, b, c, d``, the
four corners of a possibly rotated rectangle around the hand, each a ``[row, column]`` =
``[y, x]`` pair (MATLAB order). The training box is the axis-aligned box around the four
corners. Read with ``scipy.io.loadmat(simplify_cells=True)``: one box loads as a dict, several
as a list.

Sources checked: the VGG readme itself was not found in the search corpora; the structure
above is the one used by several public converters (``Hzzone/Hand-Keypoint-Detection``
data README for the folder layout; converters reading ``box['a'..'d']`` with ``x = p[1]``,
``y = p[0]``). MATLAB's 1-based pixel indices are kept as they are (half a pixel at most).

A rotated rectangle's corners can lie outside the photo while the hand is inside it, so the
enclosing box is clipped to the photo here (the writer would otherwise reject it as
``box_outside_image``). Hands are labelled ``hand``. No annotation names a file (the image is
the ``.mat`` file's namesake in ``images/``), so nothing here can point outside the root.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gesture_recognition.training.converters.common import (
    IMAGE_SUFFIXES,
    HandBox,
    ImageRecord,
    image_size,
    split_name,
)

CORNERS = ("a", "b", "c", "d")


def _annotation_dirs(root: Path) -> list[tuple[Path, str | None]]:
    if (root / "annotations").is_dir():
        return [(root / "annotations", split_name(root.name) or split_name(root.parent.name))]
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        split = split_name(child.name)
        for ann_dir in [child / "annotations", *sorted(child.glob("*/annotations"))]:
            if ann_dir.is_dir():
                found.append((ann_dir, split))
    return found


def _image_for(ann_path: Path) -> Path:
    images = ann_path.parent.parent / "images"
    for suffix in IMAGE_SUFFIXES:
        candidate = images / (ann_path.stem + suffix)
        if candidate.is_file():
            return candidate
    return images / (ann_path.stem + ".jpg")


def corner_box(box: object) -> tuple[float, float, float, float] | None:
    """``(x1, y1, x2, y2)`` around the four ``[y, x]`` corners of one box, None if malformed."""
    if not isinstance(box, dict):
        return None
    xs, ys = [], []
    for key in CORNERS:
        try:
            point = np.asarray(box[key], dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError):
            return None
        if point.shape[0] != 2 or not np.all(np.isfinite(point)):
            return None
        ys.append(float(point[0]))
        xs.append(float(point[1]))
    return min(xs), min(ys), max(xs), max(ys)


def parse_mat(ann_path: Path, source: str = "oxford", split: str | None = None) -> ImageRecord:
    """One annotation file -> record (its ``problem`` set when unusable)."""
    import scipy.io

    image_path = _image_for(ann_path)
    try:
        mat = scipy.io.loadmat(str(ann_path), simplify_cells=True)
    except Exception:
        # scipy raises several types (ValueError, MatReadError, OSError...) for broken files.
        return ImageRecord(image_path, [], source, split, problem="unparsable_annotation")
    boxes = mat.get("boxes", [])
    if isinstance(boxes, dict):
        boxes = [boxes]
    elif isinstance(boxes, np.ndarray):
        boxes = list(boxes.reshape(-1))
    if not isinstance(boxes, list):
        return ImageRecord(image_path, [], source, split, problem="malformed_annotation")
    if not image_path.is_file():
        return ImageRecord(image_path, [], source, split, problem="missing_image")
    size = image_size(image_path)
    if size is None:
        return ImageRecord(image_path, [], source, split, problem="unreadable_image")
    width, height = size
    hand_boxes = []
    for box in boxes:
        corners = corner_box(box)
        if corners is None:
            return ImageRecord(image_path, [], source, split, problem="malformed_box")
        x1, y1, x2, y2 = corners
        hand_boxes.append(
            HandBox(
                min(max(x1, 0.0), width),
                min(max(y1, 0.0), height),
                min(max(x2, 0.0), width),
                min(max(y2, 0.0), height),
            )
        )
    return ImageRecord(image_path, hand_boxes, source, split, width=width, height=height)


def read_oxford(root: Path, source: str = "oxford") -> Iterator[ImageRecord]:
    """Every annotated image of the Oxford hand dataset under ``root``."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no such dataset folder: {root}")
    files = [
        (path, split)
        for ann_dir, split in _annotation_dirs(root)
        for path in sorted(ann_dir.glob("*.mat"))
    ]
    if not files:
        raise FileNotFoundError(f"no Oxford hand annotations (*/annotations/*.mat) under {root}")
    for path, split in tqdm(files, desc=f"reading {source}", unit="img"):
        yield parse_mat(path, source, split)
