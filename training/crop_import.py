"""Folders of ready-made hand crops -> a crops folder ``train-classifier`` reads.

Two layouts are read (``gesture-train import-crops``):

* a manifest of labelled crops with a group key: ``manifest.csv`` with ``path``, a label
  column and a group column (HaGRID hand crops: ``path,label,image_id,...``; one photo gives
  several crops, so ``image_id`` keeps them on one side of the split);
* class-per-folder photos whose folder names are relabelled by a mapping file (the sign-language
  digits: ``{"2": "peace", "5": "palm", ...}``).

Nothing is copied: the written ``manifest.csv`` (``path,label,split,group,source,crop``) points
at the source images by relative path. Bad records are reported and skipped with a count per
reason, as the converters do. ``crop`` says what kind of crop a row is, and training cuts the
served view from it (``classifier_data.ServedView``): ``tight_box`` for a crop that is a hand's
tight box (the server's crop is the detector box grown ×1.2 and squared, with the room around
the hand in it).

Held-out photos elsewhere may show the very same hands: HaGRID's scene photos in
``hagrid_crops`` and its hand crops come from one pool of photos. ``exclude_groups`` drops whole
groups (found by :mod:`training.near_duplicates`), so an end-to-end test photo never trains the
classifier.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from PIL import Image
from tqdm import tqdm

from gesture_recognition.labels import LabelMap
from gesture_recognition.training.converters.common import SkipLog
from gesture_recognition.training.crops import CROP_CONFIG, GROUP_COLUMNS, MANIFEST, TIGHT_BOX
from gesture_recognition.training.splits import SPLITS, grouped_split

# Smaller crops carry too little of a hand to learn from (HaGRID has a few under 8 px).
MIN_SIDE = 8
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class ImportReport(SkipLog):
    written: Counter[str] = field(default_factory=Counter)  # per split
    labels: Counter[str] = field(default_factory=Counter)
    test_list_missing: int = 0  # listed test crops not imported (dropped or absent)
    max_examples: ClassVar[int] = 3

    def summary(self) -> str:
        lines = [
            f"crops: {sum(self.written.values())} "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.written.items())),
            "labels: " + ", ".join(f"{k} {v}" for k, v in sorted(self.labels.items())),
        ]
        if self.test_list_missing:
            lines.append(f"test list: {self.test_list_missing} listed crops not imported")
        return "\n".join(lines + self.skipped_lines())


@dataclass(frozen=True)
class _Row:
    rel: str
    label: str
    group: str


def read_mapping(path: Path) -> dict[str, str]:
    """A JSON object ``{source label: label}`` (e.g. a sign-language digit -> a HaGRID gesture)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    mapping = data.get("mapping", data) if isinstance(data, dict) else None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ValueError(f"{path}: expected a JSON object {{source label: label}}")
    return {str(k): v for k, v in mapping.items()}


def _manifest_rows(root: Path, label_column: str, report: ImportReport) -> list[_Row]:
    path = root / "manifest.csv"
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "path" not in columns or label_column not in columns:
            raise ValueError(f"{path} needs the columns path and {label_column}")
        group_column = next((c for c in GROUP_COLUMNS if c in columns), None)
        rows = []
        for row in reader:
            rel, label = (row.get("path") or "").strip(), (row.get(label_column) or "").strip()
            if not rel or not label:
                report.skip("empty_field", str(row))
                continue
            group = (row.get(group_column) or "").strip() if group_column else ""
            rows.append(_Row(rel, label, group or rel))
    return rows


def _folder_rows(root: Path) -> list[_Row]:
    return [
        _Row(p.relative_to(root).as_posix(), p.parent.name, p.relative_to(root).as_posix())
        for p in sorted(root.glob("*/*"))
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]


def _check_image(path: Path) -> str | None:
    """None for a usable crop, else the reason to skip it (header only, no decoding)."""
    if not path.is_file():
        return "missing_image"
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception:
        return "unreadable_image"
    return "too_small" if min(width, height) < MIN_SIDE else None


def import_crops(
    root: Path,
    out_dir: Path,
    label_map: LabelMap,
    source: str,
    label_column: str = "label",
    mapping: dict[str, str] | None = None,
    fractions: tuple[float, float] = (0.1, 0.1),
    seed: int = 0,
    split: str | None = None,
    exclude_groups: Collection[str] = (),
    test_items: Collection[str] | None = None,
) -> ImportReport:
    """Write ``out_dir/manifest.csv`` for the crops under ``root``; returns the report.

    ``split`` puts every crop in one split (a training-only source); otherwise whole groups are
    split train/val/test by ``fractions`` (val, test), stratified by label
    (:func:`training.splits.grouped_split`). ``test_items`` (crop paths relative to ``root``)
    fixes the test split instead: the groups of the listed crops, so that a retrained model is
    measured on the crops an earlier one was; the other groups are split train/val.
    """
    root, out_dir = Path(root), Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no such crop folder: {root}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if (out_dir / MANIFEST).exists():
        raise FileExistsError(f"{out_dir / MANIFEST} exists: choose a new folder")
    report = ImportReport()
    has_manifest = (root / "manifest.csv").is_file()
    rows = _manifest_rows(root, label_column, report) if has_manifest else _folder_rows(root)
    if not rows:
        raise FileNotFoundError(f"no crops under {root} (no manifest.csv, no <label>/<image>)")
    excluded = set(exclude_groups)
    kept: list[_Row] = []
    seen: set[str] = set()
    for row in tqdm(rows, desc=f"checking {source}", unit="crop"):
        label = mapping.get(row.label) if mapping is not None else row.label
        if label is None:
            report.skip("label_not_in_mapping", f"{row.rel} ({row.label})")
            continue
        if not label_map.contains(label):
            report.skip("label_not_in_label_map", f"{row.rel} ({label})")
            continue
        if row.rel in seen:
            report.skip("duplicate_path", row.rel)
            continue
        seen.add(row.rel)
        if row.group in excluded:
            report.skip("near_duplicate_of_held_out_photo", row.rel)
            continue
        problem = _check_image(root / row.rel)
        if problem:
            report.skip(problem, row.rel)
            continue
        kept.append(_Row(row.rel, label_map.canonical(label), row.group))
    if split is not None:
        sides = {r.rel: split for r in kept}
    elif test_items is not None:
        sides = _split_with_test_list(kept, set(test_items), fractions[0], seed, report)
    else:
        sides = grouped_split(
            {r.rel: r.label for r in kept}, {r.rel: r.group for r in kept}, fractions, seed
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / MANIFEST).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split", "group", "source", "crop"])
        writer.writeheader()
        for r in kept:
            writer.writerow(
                {
                    # Relative to the crops folder, so the pair moves together.
                    "path": Path(
                        os.path.relpath(root.resolve() / r.rel, out_dir.resolve())
                    ).as_posix(),
                    "label": r.label,
                    "split": sides[r.rel],
                    "group": f"{source}:{r.group}",
                    "source": f"{source}:{r.rel}",
                    "crop": TIGHT_BOX,
                }
            )
            report.written[sides[r.rel]] += 1
            report.labels[r.label] += 1
    # No crop_config.json: these crops were not cut with a CropConfig; training uses the
    # served default (CropConfig()) for the spec and ServedView for the geometry.
    assert not (out_dir / CROP_CONFIG).exists()
    (out_dir / "import_report.txt").write_text(report.summary() + "\n", encoding="utf-8")
    return report


def _split_with_test_list(
    kept: list[_Row], test_items: set[str], val_fraction: float, seed: int, report: ImportReport
) -> dict[str, str]:
    test_groups = {r.group for r in kept if r.rel in test_items}
    report.test_list_missing = len(test_items - {r.rel for r in kept})
    rest = [r for r in kept if r.group not in test_groups]
    sides = grouped_split(
        {r.rel: r.label for r in rest}, {r.rel: r.group for r in rest}, (val_fraction, 0.0), seed
    )
    sides.update({r.rel: "test" for r in kept if r.group in test_groups})
    return sides


def read_test_list(path: Path) -> list[str]:
    """Crop paths (relative to the imported folder), one a line; ``#`` starts a comment."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    items = [line.split("#", 1)[0].strip() for line in lines]
    return [item for item in items if item]


def merge_crop_folders(folders: list[Path], out_dir: Path) -> int:
    """One crops folder whose manifest lists the rows of several (paths re-based); row count."""
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST).exists():
        raise FileExistsError(f"{out_dir / MANIFEST} exists: choose a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = ["path", "label", "split", "group", "source", "crop"]
    count = 0
    with (out_dir / MANIFEST).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for folder in folders:
            with (Path(folder) / MANIFEST).open(newline="", encoding="utf-8") as g:
                for row in csv.DictReader(g):
                    target = (Path(folder) / row["path"]).resolve()
                    row["path"] = Path(os.path.relpath(target, out_dir.resolve())).as_posix()
                    writer.writerow({k: row.get(k, "") for k in fields})
                    count += 1
    return count
