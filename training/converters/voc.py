"""Pascal VOC xml (one file per image, ``<object><name>`` and ``<bndbox>`` in pixels).

The layout of ``../shared/data/subhih_hands``: ``<split>/<image>.jpg`` beside ``<image>.xml``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from gesture_recognition.training.converters.common import (
    HandBox,
    ImageRecord,
    UnsafePathError,
    resolve_inside,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _text(node: ET.Element | None) -> str | None:
    return node.text.strip() if node is not None and node.text else None


def parse_voc(xml_path: Path, root: Path, source: str = "voc") -> ImageRecord:
    """One VOC annotation -> record (its ``problem`` set when the file is unusable)."""
    xml_path = Path(xml_path)
    image_path = _find_image(xml_path)
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as exc:
        return ImageRecord(image_path, [], source, problem=f"unparsable_annotation ({exc})")
    ann = tree.getroot()
    filename = _text(ann.find("filename"))
    if filename:
        try:
            named = resolve_inside(root, xml_path.parent.relative_to(root) / filename)
        except UnsafePathError:
            return ImageRecord(image_path, [], source, problem="path_escapes_root")
        if named.is_file():
            image_path = named
    size = ann.find("size")
    width = height = None
    if size is not None:
        try:
            width = int(float(_text(size.find("width")) or 0)) or None
            height = int(float(_text(size.find("height")) or 0)) or None
        except ValueError:
            width = height = None
    boxes = []
    for obj in ann.iter("object"):
        bnd = obj.find("bndbox")
        name = _text(obj.find("name")) or ""
        try:
            coords = [float(_text(bnd.find(k)) or "nan") for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            return ImageRecord(image_path, [], source, problem="malformed_box")
        if any(c != c for c in coords):
            return ImageRecord(image_path, [], source, problem="malformed_box")
        x1, y1, x2, y2 = coords
        boxes.append(HandBox(x1, y1, x2, y2, label=name))
    return ImageRecord(image_path, boxes, source, width=width, height=height)


def _find_image(xml_path: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (xml_path.with_suffix(suffix), xml_path.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return xml_path.with_suffix(".jpg")


def session_group(stem: str) -> str:
    """SubhiH file names start with the capture session (``<session>_picNNNNN``)."""
    return stem.split("_pic")[0]


def read_voc_dir(root: Path, source: str = "voc") -> Iterator[ImageRecord]:
    """Every ``*.xml`` under ``root``. A first-level folder named train/val/test is the split."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such dataset folder: {root}")
    for xml_path in sorted(root.rglob("*.xml")):
        record = parse_voc(xml_path, root, source)
        rel = xml_path.relative_to(root).parts
        if len(rel) > 1 and rel[0] in ("train", "val", "test"):
            record.split = rel[0]
        record.group = f"{source}:{session_group(xml_path.stem)}"
        yield record
