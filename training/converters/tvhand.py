"""TV-Hand and COCO-Hand (Narasimhaswamy et al., "Contextual Attention for Hand Detection in
the Wild", ICCV 2019; www3.cs.stonybrook.edu/~cvl/projects/hand_det_attention/).

What was checked, and what could not be:

* The project page (found in the ``pages`` corpus) only links the two archives: TV-Hand
  (hands in 9.5K frames of the ActionThread TV videos) and COCO-Hand (25K COCO images).
* COCO-Hand ships ``COCO-Hand-Big/COCO-Hand-Big_annotations.txt`` (+ ``COCO-Hand-Big_Images``)
  and ``COCO-Hand-S/...`` alike (maintainer in SupreethN/Hand-CNN issue #15; public
  converters). One line per hand::

      image_name,v1,v2,v3,v4,x1,y1,x2,y2,x3,y3,x4,y4,class

  ``v1..v4`` is the axis-aligned box, ``x1..y4`` the four corners of the hand's (rotated)
  box, ``class`` is ``hand``. The dataset README says ``v1..v4`` = ``xmin, xmax, ymin, ymax``,
  but the maintainer answered in SupreethN/Hand-CNN issue #10 that this is a README mistake
  and the order is ``xmin, ymin, xmax, ymax`` (an open PR #19 says the same for TV-Hand), and
  the authors' own ``datasets/annotations/oxford_annos.txt`` in that repository is in
  ``xmin, ymin, xmax, ymax`` order (its corners confirm it). Public converters disagree. So
  by default (``box_order=auto``) each line's order is decided by the corners: the reading
  whose box is nearer the corners' bounding box wins. Without corners, ``xyxy`` is assumed;
  ``box_order=xyxy`` or ``xxyy`` forces one reading.
* TV-Hand: public scripts read ``TV-Hand_Images/`` and per-split files ``train_IDs_tv.txt``,
  ``valid_IDs.txt``, ``test_IDs.txt`` whose lines have the same comma-separated form (image
  path first, four box numbers, ...). That form is read here, the split taken from the file
  name. Some scripts skip boxes holding ``-1``; such a line makes its image
  ``malformed_box`` here (an unlabelled hand must not become a background photo). A
  Pascal-VOC xml per frame could NOT be confirmed from any source; if a copy of TV-Hand has
  ``*.xml`` files and no ID files, they are read with :func:`voc.parse_voc`.

Image names: an absolute path (the authors' machine) is reduced to its file name inside the
images folder; a relative name must stay inside the dataset root (path_escapes_root).
TV-Hand frames are grouped by the name before the last ``_`` (``<video>_<frame>``, a guess
from the published file names) so frames of one clip stay on one side of a split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from gesture_recognition.training.converters.common import (
    HandBox,
    ImageRecord,
    UnsafePathError,
    resolve_inside,
    split_name,
)
from gesture_recognition.training.converters.voc import parse_voc

BOX_ORDERS = ("auto", "xyxy", "xxyy")


def _as_xyxy(values: list[float], order: str) -> tuple[float, float, float, float]:
    a, b, c, d = values
    return (a, b, c, d) if order == "xyxy" else (a, c, b, d)


def decide_order(values: list[float], corners: list[float] | None) -> str:
    """``xyxy`` or ``xxyy``: the reading of ``values`` closest to the corners' bounding box."""
    if not corners:
        return "xyxy"
    xs, ys = corners[0::2], corners[1::2]
    target = (min(xs), min(ys), max(xs), max(ys))

    def distance(order: str) -> float:
        x1, y1, x2, y2 = _as_xyxy(values, order)
        penalty = 0.0 if x1 <= x2 and y1 <= y2 else 1e9
        return penalty + sum(abs(p - q) for p, q in zip((x1, y1, x2, y2), target, strict=True))

    return min(("xyxy", "xxyy"), key=distance)


def parse_line(line: str, order: str = "auto") -> tuple[str, HandBox] | str:
    """``(image name, box)`` from one annotation line, or a problem name."""
    if order not in BOX_ORDERS:
        raise ValueError(f"box_order must be one of {BOX_ORDERS}, got {order!r}")
    fields = [f.strip() for f in line.split(",")]
    if len(fields) < 5 or not fields[0]:
        return "malformed_line"
    try:
        values = [float(v) for v in fields[1:5]]
    except ValueError:
        return "malformed_box"
    corners: list[float] | None = None
    if len(fields) >= 13:
        try:
            corners = [float(v) for v in fields[5:13]]
        except ValueError:
            corners = None
    label = fields[13] if len(fields) > 13 and fields[13] else "hand"
    if any(v != v for v in values) or any(v == -1 for v in values):
        return "malformed_box"
    chosen = decide_order(values, corners) if order == "auto" else order
    return fields[0], HandBox(*_as_xyxy(values, chosen), label=label)


def _resolve_image(name: str, images_dir: Path, root: Path) -> Path:
    if Path(name).is_absolute() or ("\\" in name and ":" in name):
        # Paths from the authors' machines (/home/..., C:\...): keep only the file name.
        return images_dir / name.replace("\\", "/").split("/")[-1]
    candidates = [resolve_inside(root, images_dir.relative_to(root) / name)]
    candidates.append(resolve_inside(root, name))
    return next((c for c in candidates if c.is_file()), candidates[0])


def read_box_lines(
    lines: Iterable[str],
    images_dir: Path,
    root: Path,
    source: str,
    split: str | None = None,
    box_order: str = "auto",
    group_frames: bool = False,
) -> Iterator[ImageRecord]:
    """Records from annotation lines (one box per line), one record per image."""
    records: dict[str, ImageRecord] = {}
    for line in lines:
        if not line.strip():
            continue
        parsed = parse_line(line, box_order)
        name = line.split(",")[0].strip() or "?"
        record = records.get(name)
        if record is None:
            try:
                image_path = _resolve_image(name, images_dir, root)
                problem = None
            except UnsafePathError:
                image_path, problem = images_dir / Path(name).name, "path_escapes_root"
            group = None
            if group_frames:
                group = f"{source}:{image_path.stem.rsplit('_', 1)[0]}"
            record = ImageRecord(image_path, [], source, split, group, problem=problem)
            records[name] = record
        if record.problem:
            continue
        if isinstance(parsed, str):
            record.problem = parsed
            continue
        record.boxes.append(parsed[1])
    yield from records.values()


def _read_lines(path: Path, desc: str) -> list[str]:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return list(tqdm(f, desc=desc, unit="line", leave=False))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc


def read_cocohand(
    root: Path, source: str = "cocohand", box_order: str = "auto"
) -> Iterator[ImageRecord]:
    """COCO-Hand: ``root`` is ``COCO-Hand-Big``/``COCO-Hand-S``, their parent, or the txt."""
    root = Path(root).resolve()
    if root.is_file():
        ann_files = [root]
        root = root.parent
    elif root.is_dir():
        ann_files = sorted(root.glob("*_annotations.txt")) or sorted(
            root.glob("*/*_annotations.txt")
        )
    else:
        raise FileNotFoundError(f"no such dataset folder or file: {root}")
    if not ann_files:
        raise FileNotFoundError(f"no *_annotations.txt (COCO-Hand) under {root}")
    for ann in ann_files:
        prefix = ann.stem[: -len("_annotations")] if ann.stem.endswith("_annotations") else ""
        images_dir = ann.parent / f"{prefix}_Images"
        if not images_dir.is_dir():
            images_dir = ann.parent
        lines = _read_lines(ann, f"reading {source} {ann.name}")
        yield from read_box_lines(lines, images_dir, root, source, None, box_order)


def read_tvhand(
    root: Path, source: str = "tvhand", box_order: str = "auto"
) -> Iterator[ImageRecord]:
    """TV-Hand: ``root`` holds ``TV-Hand_Images`` and the ``*_IDs*.txt`` split files."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no such dataset folder: {root}")
    id_files = sorted(root.glob("*IDs*.txt")) or sorted(root.glob("*/*IDs*.txt"))
    if id_files:
        for ann in id_files:
            images_dir = next(
                (d for d in (ann.parent / "TV-Hand_Images", ann.parent / "images") if d.is_dir()),
                ann.parent,
            )
            lines = _read_lines(ann, f"reading {source} {ann.name}")
            split = split_name(ann.stem)
            yield from read_box_lines(
                lines, images_dir, root, source, split, box_order, group_frames=True
            )
        return
    xml_files = sorted(root.rglob("*.xml"))
    if not xml_files:
        raise FileNotFoundError(f"no TV-Hand annotations (*IDs*.txt or *.xml) under {root}")
    for xml_path in tqdm(xml_files, desc=f"reading {source}", unit="img"):
        record = parse_voc(xml_path, root, source)
        record.split = next(
            (split_name(p) for p in xml_path.relative_to(root).parts[:-1] if split_name(p)), None
        )
        record.group = f"{source}:{xml_path.stem.rsplit('_', 1)[0]}"
        yield record
