"""HaGRID annotation json (github.com/hukenovs/hagrid, README section "Annotations").

One json per gesture (``ann_train_val/<gesture>.json``, ``ann_test/...`` in HaGRID v1;
``annotations/{train,val,test}/<gesture>.json`` in HaGRIDv2). Each maps an image id (the file
name without extension) to::

    {"bboxes": [[x, y, w, h], ...],   # normalised to [0, 1], top-left corner + size
     "labels": ["one", "no_gesture"],  # one per box; no_gesture = the other, idle hand
     "leading_hand": "left", "leading_conf": 1.0, "user_id": "..."}

HaGRIDv2 adds ``united_bbox``/``united_label`` (one box around both hands of a two-handed
gesture), ``hand_landmarks`` and ``meta``. The united box is not a hand, so it is ignored
here; every box in ``bboxes`` is a hand, ``no_gesture`` ones included, because a hand
detector must find idle hands too (``include_no_gesture=false`` drops them).

Images are looked up at ``<root>/<gesture>/<id>.jpg`` (the v2 and subsample layouts), then
``<root>/train_val_<gesture>/<id>.jpg`` (v1 archives), then ``<root>/<id>.jpg``. The split
comes from the json's folder (``train``/``val``/``test``, ``ann_test``); v1's ``train_val``
is left to the writer. ``user_id`` (one person) is the group, as HaGRID's own split is by
subject. Checked against the hukenovs/hagrid README (v1) and the HaGRIDv2 README excerpt
showing ``united_bbox``; the folder names of the v1 image archives are not documented there
and are a best guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from gesture_recognition.training.converters.common import (
    HandBox,
    ImageRecord,
    UnsafePathError,
    image_size,
    option_bool,
    resolve_inside,
    split_name,
)

NO_GESTURE = "no_gesture"


def _annotation_files(root: Path, annotations: str | Path | None) -> list[Path]:
    if annotations is not None:
        path = Path(annotations)
        if path.is_file():
            return [path]
        if path.is_dir():
            return sorted(path.rglob("*.json"))
        raise FileNotFoundError(f"no such HaGRID annotation file or folder: {path}")
    for folder in (root / "annotations", root.parent / "annotations"):
        if folder.is_dir():
            return sorted(folder.rglob("*.json"))
    files = sorted(root.glob("*.json"))
    if not files:
        raise FileNotFoundError(
            f"no HaGRID annotations found for {root}; pass annotations=<json file or folder>"
        )
    return files


def _find_image(root: Path, gesture: str, image_id: str, labels: list[str]) -> Path:
    relatives = [f"{gesture}/{image_id}.jpg", f"train_val_{gesture}/{image_id}.jpg"]
    relatives += [f"{label}/{image_id}.jpg" for label in labels if label != NO_GESTURE]
    relatives.append(f"{image_id}.jpg")
    candidates = [resolve_inside(root, rel) for rel in relatives]
    return next((c for c in candidates if c.is_file()), candidates[0])


def parse_entry(
    root: Path,
    gesture: str,
    image_id: object,
    entry: object,
    source: str,
    split: str | None,
    include_no_gesture: bool,
) -> ImageRecord:
    """One annotation entry -> record (its ``problem`` set when unusable)."""
    fallback = root / gesture / f"{image_id}.jpg"
    if not isinstance(entry, dict) or not isinstance(image_id, str):
        return ImageRecord(fallback, [], source, split, problem="malformed_annotation")
    bboxes, labels = entry.get("bboxes"), entry.get("labels")
    if not isinstance(bboxes, list) or not isinstance(labels, list) or len(bboxes) != len(labels):
        return ImageRecord(fallback, [], source, split, problem="malformed_annotation")
    user = entry.get("user_id")
    group = f"{source}:{user}" if isinstance(user, str) and user else None
    try:
        image_path = _find_image(root, gesture, image_id, [str(lab) for lab in labels])
    except UnsafePathError:
        return ImageRecord(fallback, [], source, split, group, problem="path_escapes_root")
    if not image_path.is_file():
        return ImageRecord(image_path, [], source, split, group, problem="missing_image")
    size = image_size(image_path)
    if size is None:
        return ImageRecord(image_path, [], source, split, group, problem="unreadable_image")
    width, height = size
    boxes = []
    for bbox, label in zip(bboxes, labels, strict=True):
        if label == NO_GESTURE and not include_no_gesture:
            continue
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            return ImageRecord(image_path, [], source, split, group, problem="malformed_box")
        if any(v != v for v in (x, y, w, h)):
            return ImageRecord(image_path, [], source, split, group, problem="malformed_box")
        boxes.append(HandBox(x * width, y * height, (x + w) * width, (y + h) * height, str(label)))
    return ImageRecord(image_path, boxes, source, split, group, width, height)


def read_hagrid(
    root: Path,
    source: str = "hagrid",
    annotations: str | Path | None = None,
    include_no_gesture: object = True,
) -> Iterator[ImageRecord]:
    """Every annotated image of HaGRID (``root``: the folder holding ``<gesture>/`` folders)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no such dataset folder: {root}")
    keep_idle = option_bool(include_no_gesture)
    for ann_path in _annotation_files(root, annotations):
        gesture = ann_path.stem
        split = split_name(ann_path.parent.name)
        try:
            data = json.loads(ann_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            yield ImageRecord(ann_path, [], source, split, problem="unparsable_annotation")
            continue
        if not isinstance(data, dict):
            yield ImageRecord(ann_path, [], source, split, problem="malformed_annotation")
            continue
        for image_id, entry in tqdm(
            data.items(), desc=f"reading {source} {gesture}", unit="img", leave=False
        ):
            yield parse_entry(root, gesture, image_id, entry, source, split, keep_idle)
