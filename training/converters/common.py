"""One in-memory form for hand-box datasets, and the writer of the unified detector dataset.

Every converter yields :class:`ImageRecord` objects; :func:`write_yolo_dataset` validates them,
reports and skips bad ones with a count per reason, and writes the ultralytics YOLO layout
(``images/<split>``, ``labels/<split>``, ``data.yaml``). Images are linked, not copied, unless
asked: datasets stay where they are and nothing is lost.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import yaml
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from gesture_recognition.images import shown_size

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Folder and file names datasets use for their splits (Roboflow writes ``valid``, the Oxford
# hand set ``validation_dataset``); anything else leaves the split to the writer.
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# Thumbnail similarity from which a training photo counts as a copy of a test photo: re-encoded
# copies score >= 0.995; consecutive frames of one webcam session (SubhiH) reach it too, and
# are as good as the test photo for a detector.
TEST_DUPLICATE_SIMILARITY = 0.995
# Annotation tools round coordinates; a box may overshoot the border by this many pixels
# and still be clipped rather than rejected.
BORDER_TOLERANCE_PX = 2.0


class UnsafePathError(ValueError):
    """An annotation names a file outside the dataset root."""


def resolve_inside(root: Path, relative: str | os.PathLike[str]) -> Path:
    """``root / relative``, refusing paths that escape ``root`` (``..``, absolute paths)."""
    base = root.resolve()
    candidate = (base / relative).resolve()
    if candidate != base and base not in candidate.parents:
        raise UnsafePathError(f"path {str(relative)!r} escapes the dataset root {root}")
    return candidate


def split_name(name: str) -> str | None:
    """``train``/``val``/``test`` for a dataset's split folder or file name, else None.

    Accepts the common spellings (``valid``, ``validation_dataset``, ``train2017``,
    ``ann_test``); a name that is not clearly one split (``train_val``) gives None.
    """
    key = name.lower()
    for prefix in ("ann_", "annotations_", "instances_"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    for suffix in ("_dataset", "_data", "_ids", "_ids_tv"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    key = key.rstrip("0123456789")
    return _SPLIT_ALIASES.get(key)


def image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the image header (no pixels decoded), None if unreadable.

    Converters of normalised formats need the size to turn fractions into pixels; the writer
    decodes every image anyway, so this only reads the header. The size is the photo's as
    shown (EXIF orientation applied), as ultralytics and the serving code read it.
    """
    try:
        with Image.open(path) as img:
            return shown_size(img)
    except Exception:
        return None


def option_bool(value: object) -> bool:
    """Converter options arrive as strings from the command line (``keep_empty=false``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a yes/no option value, got {value!r}")


@dataclass(frozen=True)
class HandBox:
    """One box in pixels of its image; ``label`` is the source's class name."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = "hand"


@dataclass
class ImageRecord:
    image_path: Path
    boxes: list[HandBox]
    source: str
    # The source's own split when it has one (None: the writer assigns train/val).
    split: str | None = None
    # Photos that must stay on one side of a split (video, session, person).
    group: str | None = None
    # Size from the annotation, if it gives one; checked against the image itself.
    width: int | None = None
    height: int | None = None
    # Problems the converter already found (e.g. an unparsable annotation).
    problem: str | None = None
    # The split was set for the whole source (``split=`` source option): never reassigned.
    fixed_split: bool = False


@dataclass
class SkipLog:
    """Bad records are reported and skipped with a count: per reason, a few examples."""

    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: ClassVar[int] = 5

    def skip(self, reason: str, what: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < self.max_examples:
            self.examples[reason].append(what)

    def skipped_lines(self) -> list[str]:
        if not self.skipped:
            return ["skipped: 0 records"]
        lines = [f"skipped: {sum(self.skipped.values())} records"]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"  {reason}: {count}  e.g. {', '.join(self.examples[reason])}")
        return lines


@dataclass
class ConversionReport(SkipLog):
    written: Counter[str] = field(default_factory=Counter)
    # Images written per source name, so a merged dataset shows what each source gave.
    per_source: Counter[str] = field(default_factory=Counter)
    boxes: int = 0
    clipped_boxes: int = 0

    def summary(self) -> str:
        lines = [
            f"written: {sum(self.written.values())} images "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.written.items())),
            f"boxes: {self.boxes} ({self.clipped_boxes} clipped to the image border)",
        ]
        if len(self.per_source) > 1:
            lines.append(
                "sources: " + ", ".join(f"{k} {v}" for k, v in sorted(self.per_source.items()))
            )
        return "\n".join(lines + self.skipped_lines())


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            return shown_size(img)
    except Exception:
        return None


def validate_record(
    record: ImageRecord, class_names: Sequence[str], class_map: dict[str, str] | None
) -> tuple[list[tuple[int, float, float, float, float]] | None, str | None, int]:
    """YOLO rows ``(class, cx, cy, w, h)`` normalised, or (None, reason, 0) for a bad record."""
    if record.problem:
        return None, record.problem, 0
    if not record.image_path.is_file():
        return None, "missing_image", 0
    size = _image_size(record.image_path)
    if size is None:
        return None, "unreadable_image", 0
    width, height = size
    if record.width and record.height and (record.width, record.height) != (width, height):
        return None, "annotation_size_mismatch", 0
    rows = []
    clipped = 0
    for box in record.boxes:
        name = class_map.get(box.label, box.label) if class_map is not None else box.label
        if name not in class_names:
            return None, "unknown_class", 0
        x1, x2 = sorted((box.x1, box.x2))
        y1, y2 = sorted((box.y1, box.y2))
        if (
            x1 < -BORDER_TOLERANCE_PX
            or y1 < -BORDER_TOLERANCE_PX
            or x2 > width + BORDER_TOLERANCE_PX
            or y2 > height + BORDER_TOLERANCE_PX
        ):
            return None, "box_outside_image", 0
        cx1, cy1 = max(0.0, x1), max(0.0, y1)
        cx2, cy2 = min(float(width), x2), min(float(height), y2)
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            clipped += 1
        if cx2 - cx1 < 1.0 or cy2 - cy1 < 1.0:
            return None, "zero_area_box", 0
        rows.append(
            (
                class_names.index(name),
                (cx1 + cx2) / 2 / width,
                (cy1 + cy2) / 2 / height,
                (cx2 - cx1) / width,
                (cy2 - cy1) / height,
            )
        )
    return rows, None, clipped


def assign_splits(records: list[ImageRecord], val_fraction: float, seed: int) -> None:
    """Give records without a source split ``train`` or ``val``, whole groups at a time.

    When no source brings a ``val`` split, validation is carved out of the training side too,
    so a dataset like SubhiH's (train/test only) still gets a validation set that never
    touches its test split. Each source gives about ``val_fraction`` of its own photos: with
    sources of very different group sizes (SubhiH's few long capture sessions beside
    Roboflow's one-photo groups) a fraction of *groups* would fill validation with one kind.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    has_val = any(r.split == "val" for r in records)
    free = [
        r
        for r in records
        if not r.fixed_split and (r.split is None or (not has_val and r.split == "train"))
    ]
    by_source: dict[str, dict[str, int]] = {}
    for r in free:
        sizes = by_source.setdefault(r.source, {})
        key = r.group or str(r.image_path)
        sizes[key] = sizes.get(key, 0) + 1
    val_groups: set[str] = set()
    for source in sorted(by_source):
        sizes = by_source[source]
        groups = sorted(sizes)
        # One generator per source: adding a source leaves the others' validation unchanged.
        random.Random(f"{seed}:{source}").shuffle(groups)
        target = round(sum(sizes.values()) * val_fraction)
        if val_fraction > 0 and target == 0 and len(groups) > 1:
            target = 1
        chosen = _fill_groups(groups, sizes, target)
        val_groups.update(chosen)
    for r in free:
        r.split = "val" if (r.group or str(r.image_path)) in val_groups else "train"


def _fill_groups(groups: Sequence[str], sizes: dict[str, int], target: int) -> list[str]:
    """Groups, in the given (shuffled) order, that add up to about ``target`` photos.

    A group that would overshoot the target by more than a quarter is passed over, so one long
    capture session cannot turn a 10 % validation split into 40 %. Never every group: training
    keeps at least one.
    """
    chosen: list[str] = []
    taken = 0
    for group in groups:
        if taken >= target or len(chosen) == len(groups) - 1:
            break
        if taken + sizes[group] <= max(target * 1.25, 1):
            chosen.append(group)
            taken += sizes[group]
    if not chosen and target > 0 and len(groups) > 1:
        chosen.append(min(groups, key=lambda g: sizes[g]))
    return chosen


def copies_of_test_photos(records: Sequence[ImageRecord], similarity: float) -> set[int]:
    """``id()`` of the non-test records whose photo matches a test photo (thumbnail cosine
    similarity >= ``similarity``, :func:`training.near_duplicates.signature`)."""
    from gesture_recognition.training.near_duplicates import signature

    def signatures(chosen: Sequence[ImageRecord]) -> list[tuple[int, NDArray[np.float32]]]:
        out = []
        for r in chosen:
            try:
                with Image.open(r.image_path) as img:
                    out.append((id(r), signature(img)))
            except Exception:  # unreadable: validate_record reports it
                continue
        return out

    test = signatures([r for r in records if r.split == "test"])
    if not test:
        return set()
    rest = signatures([r for r in records if r.split != "test"])
    if not rest:
        return set()
    test_matrix = np.stack([v for _, v in test])
    rest_matrix = np.stack([v for _, v in rest])
    best = (rest_matrix @ test_matrix.T).max(axis=1)
    return {rid for (rid, _), b in zip(rest, best, strict=True) if b >= similarity}


def _unique_name(record: ImageRecord) -> str:
    digest = hashlib.sha1(str(record.image_path).encode()).hexdigest()[:8]
    return f"{record.source}_{record.image_path.stem}_{digest}{record.image_path.suffix.lower()}"


def write_yolo_dataset(
    records: Iterable[ImageRecord],
    out_dir: Path,
    class_names: Sequence[str] = ("hand",),
    class_map: dict[str, str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    copy: bool = False,
    test_duplicate_similarity: float | None = TEST_DUPLICATE_SIMILARITY,
) -> ConversionReport:
    """Write ``out_dir`` in the ultralytics YOLO layout; returns what was written and skipped.

    ``class_map`` maps source labels to ``class_names`` (default: every label is ``hand``).
    Training and validation photos that are copies of a test photo (thumbnail similarity at
    least ``test_duplicate_similarity``; None: keep them) are skipped as
    ``duplicate_of_test_photo``: datasets ship the same photo in two splits (78 of Roboflow
    hands' 264 test photos are also in its valid split, re-encoded), and a split by name or
    group cannot see it.
    """
    if class_map is None and tuple(class_names) == ("hand",):
        class_map = _AllHand()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new folder")
    records = list(records)
    assign_splits(records, val_fraction, seed)
    report = ConversionReport()
    copies = (
        set()
        if test_duplicate_similarity is None
        else copies_of_test_photos(records, test_duplicate_similarity)
    )
    for record in tqdm(records, desc="writing dataset", unit="img"):
        if id(record) in copies:
            report.skip("duplicate_of_test_photo", str(record.image_path))
            continue
        rows, reason, clipped = validate_record(record, class_names, class_map)
        if rows is None:
            report.skip(reason or "invalid", str(record.image_path))
            continue
        split = record.split if record.split in SPLITS else "train"
        name = _unique_name(record)
        image_dst = out_dir / "images" / split / name
        label_dst = out_dir / "labels" / split / (Path(name).stem + ".txt")
        image_dst.parent.mkdir(parents=True, exist_ok=True)
        label_dst.parent.mkdir(parents=True, exist_ok=True)
        if copy:
            shutil.copy2(record.image_path, image_dst)
        else:
            image_dst.symlink_to(record.image_path.resolve())
        label_dst.write_text(
            "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in rows),
            encoding="utf-8",
        )
        report.written[split] += 1
        report.per_source[record.source] += 1
        report.boxes += len(rows)
        report.clipped_boxes += clipped
    data = {
        "path": str(out_dir.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(class_names)),
    }
    if report.written.get("test"):
        data["test"] = "images/test"
    (out_dir / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (out_dir / "conversion_report.txt").write_text(report.summary() + "\n", encoding="utf-8")
    return report


class _AllHand(dict[str, str]):
    """Class map sending every source label to ``hand`` (the detector's single class)."""

    def get(self, key: str, default: str | None = None) -> str:  # type: ignore[override]
        return "hand"
