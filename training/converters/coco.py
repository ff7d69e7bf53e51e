"""COCO object-detection json (cocodataset.org/#format-data).

``images``: ``{"id", "file_name", "width", "height"}``; ``annotations``:
``{"image_id", "category_id", "bbox": [x, y, w, h], "iscrowd"}`` with ``bbox`` in pixels,
top-left corner plus size; ``categories``: ``{"id", "name"}``.

Where the images are: the ``images`` option, else the json's folder (Roboflow's COCO export
puts ``_annotations.coco.json`` beside the images of each split), else -- for the COCO
layout ``annotations/instances_train2017.json`` -- ``<root>/train2017``. ``file_name`` must
stay inside that folder (path_escapes_root otherwise).

The split comes from the ``split`` option, else from the json's folder (``train``, ``valid``,
``test``) or name (``instances_val2017``).

``categories`` (comma separated names) keeps only those categories' boxes. Images with no
kept box stay in as background photos unless ``keep_empty=false``: a dataset labelled for
hands says there is no hand in them. ``iscrowd`` boxes are dropped, as ultralytics' own COCO
converter does.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from gesture_recognition.training.converters.common import (
    HandBox,
    ImageRecord,
    UnsafePathError,
    option_bool,
    resolve_inside,
    split_name,
)


def _image_dirs(ann_path: Path, images: str | Path | None) -> list[Path]:
    if images is not None:
        return [Path(images).resolve()]
    folder = ann_path.parent
    dirs = [folder]
    if folder.name == "annotations":
        # instances_train2017.json -> <root>/train2017
        tail = ann_path.stem.split("_")[-1]
        dirs = [folder.parent / tail, folder.parent / "images" / tail, folder.parent]
    return dirs


def _guess_split(ann_path: Path) -> str | None:
    return split_name(ann_path.parent.name) or split_name(ann_path.stem.split("_")[-1])


def read_coco(
    root: Path,
    source: str = "coco",
    images: str | Path | None = None,
    categories: str | None = None,
    split: str | None = None,
    keep_empty: object = True,
) -> Iterator[ImageRecord]:
    """Every image of one COCO json (``root``: the json file)."""
    ann_path = Path(root).resolve()
    if ann_path.is_dir():
        candidates = sorted(ann_path.glob("*.json"))
        if len(candidates) != 1:
            found = len(candidates)
            raise ValueError(f"{ann_path}: name the COCO json file itself (found {found})")
        ann_path = candidates[0]
    if not ann_path.is_file():
        raise FileNotFoundError(f"no such COCO annotation file: {ann_path}")
    try:
        data = json.loads(ann_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read COCO json {ann_path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{ann_path} is not a COCO detection json (no 'images' list)")
    keep_empty = option_bool(keep_empty)
    split = split_name(split) if split else _guess_split(ann_path)
    names = {c.get("id"): str(c.get("name")) for c in data.get("categories", []) or []}
    wanted = {c.strip() for c in categories.split(",")} if categories else None
    if wanted is not None and not wanted & set(names.values()):
        raise ValueError(
            f"{ann_path} has no category {sorted(wanted)}; it has {sorted(names.values())}"
        )
    by_image: dict[object, list[dict]] = defaultdict(list)
    for ann in data.get("annotations", []) or []:
        if isinstance(ann, dict):
            by_image[ann.get("image_id")].append(ann)
    dirs = _image_dirs(ann_path, images)
    for entry in tqdm(data["images"], desc=f"reading {source}", unit="img"):
        yield _record(entry, by_image, names, wanted, dirs, source, split, keep_empty)


def _record(
    entry: object,
    by_image: dict[object, list[dict]],
    names: dict[object, str],
    wanted: set[str] | None,
    dirs: list[Path],
    source: str,
    split: str | None,
    keep_empty: bool,
) -> ImageRecord:
    if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
        return ImageRecord(dirs[0] / "?", [], source, split, problem="malformed_annotation")
    file_name = entry["file_name"]
    try:
        candidates = [resolve_inside(d, file_name) for d in dirs]
    except UnsafePathError:
        escaped = dirs[0] / Path(file_name).name
        return ImageRecord(escaped, [], source, split, problem="path_escapes_root")
    image_path = next((c for c in candidates if c.is_file()), candidates[0])
    width, height = entry.get("width"), entry.get("height")
    record = ImageRecord(
        image_path,
        [],
        source,
        split,
        width=int(width) if isinstance(width, (int, float)) and width > 0 else None,
        height=int(height) if isinstance(height, (int, float)) and height > 0 else None,
    )
    for ann in by_image.get(entry.get("id"), []):
        if ann.get("iscrowd"):
            continue
        if ann.get("category_id") not in names:
            record.problem = "unknown_category"
            return record
        label = names[ann["category_id"]]
        if wanted is not None and label not in wanted:
            continue
        bbox = ann.get("bbox")
        try:
            x, y, w, h = (float(v) for v in bbox)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            record.problem = "malformed_box"
            return record
        if any(v != v for v in (x, y, w, h)):
            record.problem = "malformed_box"
            return record
        record.boxes.append(HandBox(x, y, x + w, y + h, label))
    if not record.boxes and not keep_empty:
        record.problem = "no_boxes"
    return record
