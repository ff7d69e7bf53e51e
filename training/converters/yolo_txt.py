"""YOLO txt datasets (Roboflow "YOLO PyTorch TXT" exports and the ultralytics layout).

Format, as documented by Roboflow (roboflow.com/formats/yolo) and ultralytics
(docs.ultralytics.com/datasets/detect): one ``.txt`` per image, one line per box,
``class_id cx cy w h`` separated by spaces, all four coordinates normalised to [0, 1] by the
image width/height. ``data.yaml`` gives the class names, as a list (Roboflow:
``names: ['head', 'helmet']`` with ``nc``) or a dict (ultralytics: ``names: {0: person}``).
A line with more than five numbers is a segmentation polygon (``class x1 y1 x2 y2 ...``);
ultralytics trains detection from its enclosing box, and so do we.

Layouts understood, in this order:

1. ``data.yaml`` ``train``/``val``/``test`` entries naming image folders inside the dataset
   root (relative to its ``path`` key, else to the yaml's folder). Roboflow writes
   ``../train/images``; like ultralytics we retry such an entry without the leading ``../``.
   An entry that still points outside the root is refused (UnsafePathError).
2. Roboflow: ``<root>/{train,valid,test}/images`` beside ``.../labels``.
3. ultralytics: ``<root>/images/{train,val,test}`` beside ``<root>/labels/<split>``.
4. ``<root>/images`` with ``<root>/labels`` and no split.

An image's label file is found as ultralytics finds it: the last ``images`` folder of its
path replaced by ``labels``, suffix ``.txt``. An image without a label file is a background
image (no boxes), as in ultralytics. Roboflow names augmented copies
``<photo>_jpg.rf.<hash>.jpg``; the part before ``.rf.`` is used as the group so all copies of
one photo land on one side of a train/val split.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml
from tqdm import tqdm

from gesture_recognition.training.converters.common import (
    IMAGE_SUFFIXES,
    HandBox,
    ImageRecord,
    UnsafePathError,
    image_size,
    resolve_inside,
    split_name,
)

_YAML_SPLIT_KEYS = ("train", "val", "test")


def load_names(data_yaml: Path) -> dict[int, str] | None:
    """Class names from ``data.yaml`` (list or dict form), or None when it has none."""
    try:
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {data_yaml}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{data_yaml} is not a YAML mapping")
    names = data.get("names")
    if names is None:
        return None
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{data_yaml}: class ids in 'names' must be integers") from exc
    raise ValueError(f"{data_yaml}: 'names' must be a list or a mapping")


def _yaml_image_dirs(root: Path, data_yaml: Path) -> list[tuple[Path, str | None]]:
    data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    base = root
    path_key = data.get("path")
    if isinstance(path_key, str) and path_key and not Path(path_key).is_absolute():
        try:
            base = resolve_inside(root, path_key)
        except UnsafePathError:
            base = root
    dirs: list[tuple[Path, str | None]] = []
    for key in _YAML_SPLIT_KEYS:
        entries = data.get(key)
        if isinstance(entries, str):
            entries = [entries]
        if not isinstance(entries, list):
            continue
        for entry in entries:
            folder = _resolve_yaml_entry(root, base, str(entry))
            if folder is not None:
                dirs.append((folder, key))
    return dirs


def _resolve_yaml_entry(root: Path, base: Path, entry: str) -> Path | None:
    """The image folder a data.yaml entry names, inside ``root``; None if it does not exist."""
    attempts = [entry]
    if entry.startswith("../"):
        attempts.append(entry[3:])
    inside = False
    for attempt in attempts:
        try:
            folder = resolve_inside(root, base / attempt)
        except UnsafePathError:
            continue
        inside = True
        if folder.is_dir():
            return folder
    if not inside:
        raise UnsafePathError(f"data.yaml entry {entry!r} points outside the dataset root {root}")
    return None


def _scan_image_dirs(root: Path) -> list[tuple[Path, str | None]]:
    found: list[tuple[Path, str | None]] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        split = split_name(child.name)
        if split and (child / "images").is_dir():
            found.append((child / "images", split))
    if found:
        return found
    images = root / "images"
    if images.is_dir():
        for child in sorted(p for p in images.iterdir() if p.is_dir()):
            split = split_name(child.name)
            if split:
                found.append((child, split))
        if not found:
            found.append((images, None))
    return found


def label_path_for(image: Path) -> Path:
    """ultralytics' rule: the last ``images`` folder in the path becomes ``labels``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def roboflow_group(stem: str) -> str:
    """Roboflow names augmented copies ``<photo>_jpg.rf.<hash>``; group them by photo."""
    return stem.split(".rf.")[0]


def parse_label_file(
    label_path: Path, width: int, height: int, names: dict[int, str] | None
) -> tuple[list[HandBox], str | None]:
    """Boxes in pixels from one YOLO label file, or ([], problem)."""
    try:
        text = label_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return [], "unreadable_annotation"
    boxes = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        try:
            class_id = int(float(fields[0]))
            values = [float(v) for v in fields[1:]]
        except ValueError:
            return [], "malformed_box"
        if any(v != v for v in values):
            return [], "malformed_box"
        if len(values) == 4:
            cx, cy, w, h = values
            x1, x2 = cx - w / 2, cx + w / 2
            y1, y2 = cy - h / 2, cy + h / 2
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
        else:
            return [], "malformed_box"
        if names is not None and class_id not in names:
            return [], "unknown_class"
        label = names[class_id] if names is not None else str(class_id)
        boxes.append(HandBox(x1 * width, y1 * height, x2 * width, y2 * height, label))
    return boxes, None


def read_yolo(root: Path, source: str = "yolo") -> Iterator[ImageRecord]:
    """Every image of a YOLO txt dataset (``root``: its folder or its ``data.yaml``)."""
    root = Path(root).resolve()
    data_yaml: Path | None = None
    if root.is_file():
        data_yaml, root = root, root.parent
    elif (root / "data.yaml").is_file():
        data_yaml = root / "data.yaml"
    if not root.is_dir():
        raise FileNotFoundError(f"no such dataset folder: {root}")
    names = load_names(data_yaml) if data_yaml else None
    image_dirs = _yaml_image_dirs(root, data_yaml) if data_yaml else []
    if not image_dirs:
        image_dirs = _scan_image_dirs(root)
    if not image_dirs:
        raise FileNotFoundError(
            f"no YOLO image folders under {root} (expected <split>/images or images/<split>)"
        )
    images: list[tuple[Path, str | None]] = []
    seen: set[Path] = set()
    for folder, split in image_dirs:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path not in seen:
                seen.add(path)
                images.append((path, split))
    for image_path, split in tqdm(images, desc=f"reading {source}", unit="img"):
        group = f"{source}:{roboflow_group(image_path.stem)}"
        size = image_size(image_path)
        if size is None:
            yield ImageRecord(image_path, [], source, split, group, problem="unreadable_image")
            continue
        label_path = label_path_for(image_path)
        boxes: list[HandBox] = []
        problem = None
        if label_path.is_file():
            boxes, problem = parse_label_file(label_path, size[0], size[1], names)
        yield ImageRecord(
            image_path, boxes, source, split, group, size[0], size[1], problem=problem
        )
