"""Detector pseudo-labels for review, and the fine-tuning dataset built from the reviewed ones.

Issue 2, step 7a: the first detector labels the gesture photos; a person checks its boxes in a
labelling tool; the corrected boxes fine-tune the detector.

Export (:func:`export_pseudo_labels`) from a detection cache (``training.detect_cache``)::

    <out>/voc/<photo path>.xml       Pascal VOC, one per photo (LabelImg, CVAT "Pascal VOC")
    <out>/yolo/<photo path>.txt      YOLO txt, class 0 = hand, + <out>/yolo/classes.txt
    <out>/low_confidence.csv         boxes below the threshold (not in the files above)
    <out>/review_list.txt            photos to look at first: a low-confidence box or no box
    <out>/pseudo_labels.json         what was exported: dataset root, threshold, counts, photos

The folders mirror the dataset's (``<class>/<photo>``): in LabelImg open ``<root>/<class>`` as
the image folder and ``<out>/voc/<class>`` as the save folder. With ``low_label`` set,
low-confidence boxes are also written into the VOC files under that name, so the reviewer sees
them in the tool; rename the real hands to ``hand`` and delete the rest — boxes still carrying
``low_label`` at import are dropped (counted), never trained on unreviewed.

Import (:func:`import_reviewed`) reads the corrected VOC files back with
``converters.voc.parse_voc``; :func:`build_finetune_dataset` writes them (optionally with the
original hand dataset) through ``converters.common.write_yolo_dataset``.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gesture_recognition.boxes import box_iou
from gesture_recognition.training.converters.common import (
    ConversionReport,
    ImageRecord,
    UnsafePathError,
    resolve_inside,
    write_yolo_dataset,
)
from gesture_recognition.training.converters.voc import parse_voc
from gesture_recognition.training.detect_cache import read_cache

SUMMARY_JSON = "pseudo_labels.json"
LOW_CONFIDENCE_CSV = "low_confidence.csv"
REVIEW_LIST = "review_list.txt"
HAND = "hand"


@dataclass
class PseudoLabelExport:
    out_dir: Path
    images: int = 0
    boxes: int = 0
    low_confidence_boxes: int = 0
    images_without_boxes: int = 0
    images_to_review: int = 0

    def summary(self) -> str:
        return (
            f"{self.images} photos exported to {self.out_dir}: {self.boxes} boxes, "
            f"{self.low_confidence_boxes} low-confidence boxes listed separately, "
            f"{self.images_without_boxes} photos without a box; "
            f"{self.images_to_review} photos on the review list"
        )


@dataclass
class ImportReport:
    images: int = 0
    boxes: int = 0
    dropped_boxes: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    # Photos left out on purpose (held-out photos of the end-to-end evaluation, audited ones).
    excluded: int = 0
    # Photos without any box, dropped (see build_finetune_dataset's keep_empty).
    empty_dropped: int = 0

    def summary(self) -> str:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped_boxes.items())) or "none"
        problems = ", ".join(f"{k} {v}" for k, v in sorted(self.problems.items())) or "none"
        return (
            f"{self.images} reviewed photos read, {self.boxes} boxes; dropped boxes: {dropped}; "
            f"photos with problems (skipped when writing): {problems}; "
            f"held-out or listed photos left out: {self.excluded}; "
            f"photos without a box left out: {self.empty_dropped}"
        )


def _pixel_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    # Labelling tools store whole pixels; rounding moves an edge by at most half a pixel.
    x1, y1, x2, y2 = (float(v) for v in box)
    return (
        int(np.clip(round(x1), 0, width)),
        int(np.clip(round(y1), 0, height)),
        int(np.clip(round(x2), 0, width)),
        int(np.clip(round(y2), 0, height)),
    )


def voc_xml(
    image_path: Path,
    folder: str,
    width: int,
    height: int,
    boxes: Iterable[tuple[int, int, int, int]],
    labels: Iterable[str],
) -> ET.ElementTree:
    """A Pascal VOC annotation as LabelImg writes it."""
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = folder
    ET.SubElement(ann, "filename").text = image_path.name
    ET.SubElement(ann, "path").text = str(image_path)
    ET.SubElement(ET.SubElement(ann, "source"), "database").text = "pseudo-labels"
    size = ET.SubElement(ann, "size")
    ET.SubElement(size, "width").text = str(width)
    ET.SubElement(size, "height").text = str(height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(ann, "segmented").text = "0"
    for (x1, y1, x2, y2), label in zip(boxes, labels, strict=True):
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = label
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bnd = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, x2, y2), strict=True):
            ET.SubElement(bnd, key).text = str(value)
    tree = ET.ElementTree(ann)
    ET.indent(tree, space="\t")
    return tree


def yolo_rows(boxes: Iterable[tuple[float, float, float, float]], width: int, height: int) -> str:
    return "".join(
        f"0 {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
        f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n"
        for x1, y1, x2, y2 in boxes
    )


def candidate_boxes(
    boxes: np.ndarray, scores: np.ndarray, dedupe_iou: float | None, max_boxes: int | None
) -> np.ndarray:
    """Indices of the boxes worth a reviewer's look, best score first.

    A low export threshold on an NMS-free head (YOLO26) yields stacks of near-identical boxes;
    greedy suppression at ``dedupe_iou`` and a cap leave one box per place to accept or delete.
    """
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    for i in order:
        if max_boxes is not None and len(kept) >= max_boxes:
            break
        if (
            dedupe_iou is not None
            and kept
            and float(box_iou(boxes[i : i + 1], boxes[kept]).max()) > dedupe_iou
        ):
            continue
        kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


def export_pseudo_labels(
    cache_path: str | Path,
    out_dir: str | Path,
    conf_threshold: float = 0.5,
    low_label: str | None = None,
    dedupe_iou: float | None = None,
    max_boxes: int | None = None,
) -> PseudoLabelExport:
    """Write VOC and YOLO pseudo-labels of every photo in the detection cache (see module doc).

    Boxes with score >= ``conf_threshold`` become labels; the others go to
    ``low_confidence.csv`` (and into the VOC files as ``low_label`` when it is given).
    ``dedupe_iou`` / ``max_boxes`` thin each photo's boxes first (:func:`candidate_boxes`).
    """
    if dedupe_iou is not None and not 0.0 < dedupe_iou <= 1.0:
        raise ValueError(f"dedupe_iou must be in (0, 1], got {dedupe_iou}")
    if max_boxes is not None and max_boxes < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
    if not 0.0 <= conf_threshold <= 1.0:
        raise ValueError(f"conf_threshold must be in [0, 1], got {conf_threshold}")
    if low_label == HAND:
        raise ValueError(f"low_label must differ from {HAND!r}")
    cache_path = Path(cache_path)
    meta = json.loads(cache_path.read_text(encoding="utf-8"))
    root = Path(meta["root"])
    cache = read_cache(cache_path)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder")
    (out / "yolo").mkdir(parents=True)
    (out / "yolo" / "classes.txt").write_text(f"{HAND}\n", encoding="utf-8")
    report = PseudoLabelExport(out)
    low_rows, review = [], []
    for rel in tqdm(sorted(cache), desc="exporting pseudo-labels", unit="img"):
        det = cache[rel]
        image_path = resolve_inside(root, rel)
        chosen = candidate_boxes(det.boxes, det.scores, dedupe_iou, max_boxes)
        boxes, scores = det.boxes[chosen], det.scores[chosen]
        keep = scores >= conf_threshold
        kept = [_pixel_box(b, det.width, det.height) for b in boxes[keep]]
        low = [_pixel_box(b, det.width, det.height) for b in boxes[~keep]]
        for box, score in zip(low, scores[~keep], strict=True):
            low_rows.append([rel, *box, f"{float(score):.4f}"])
        voc_boxes, voc_labels = list(kept), [HAND] * len(kept)
        if low_label is not None:
            voc_boxes += low
            voc_labels += [low_label] * len(low)
        xml_path = out / "voc" / Path(rel).with_suffix(".xml")
        xml_path.parent.mkdir(parents=True, exist_ok=True)
        tree = voc_xml(
            image_path, Path(rel).parent.name, det.width, det.height, voc_boxes, voc_labels
        )
        tree.write(xml_path, encoding="utf-8", xml_declaration=False)
        txt_path = out / "yolo" / Path(rel).with_suffix(".txt")
        txt_path.parent.mkdir(parents=True, exist_ok=True)
        txt_path.write_text(yolo_rows(kept, det.width, det.height), encoding="utf-8")
        report.images += 1
        report.boxes += len(kept)
        report.low_confidence_boxes += len(low)
        report.images_without_boxes += not kept
        if low or not kept:
            review.append(rel)
    with (out / LOW_CONFIDENCE_CSV).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "x1", "y1", "x2", "y2", "score"])
        writer.writerows(low_rows)
    (out / REVIEW_LIST).write_text("".join(f"{r}\n" for r in review), encoding="utf-8")
    report.images_to_review = len(review)
    summary = {
        "root": str(root),
        "cache": str(cache_path),
        "detector": meta.get("detector"),
        "conf_threshold": conf_threshold,
        "low_label": low_label,
        "dedupe_iou": dedupe_iou,
        "max_boxes": max_boxes,
        "images": sorted(cache),
        "counts": {
            "images": report.images,
            "boxes": report.boxes,
            "low_confidence_boxes": report.low_confidence_boxes,
            "images_without_boxes": report.images_without_boxes,
            "images_to_review": report.images_to_review,
        },
    }
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return report


def _image_for(
    xml_path: Path, voc_dir: Path, root: Path, by_name: dict[str, list[str]]
) -> Path | None:
    """The photo a VOC file describes: same relative folder under ``root`` and its
    ``<filename>``; else, for tools that flatten folders, the one exported photo of that name."""
    rel_dir = xml_path.parent.relative_to(voc_dir)
    try:
        filename = (ET.parse(xml_path).getroot().findtext("filename") or "").strip()
    except ET.ParseError:
        filename = ""
    names = [filename] if filename else []
    names.append(xml_path.stem)
    for name in names:
        try:
            candidate = resolve_inside(root, rel_dir / name)
        except UnsafePathError:
            return None
        if candidate.is_file():
            return candidate
    for name in names:
        matches = by_name.get(Path(name).name, [])
        if len(matches) == 1:
            return resolve_inside(root, matches[0])
    return None


def import_reviewed(
    export_dir: str | Path,
    voc_dir: str | Path | None = None,
    root: str | Path | None = None,
    source: str = "pseudo",
) -> tuple[list[ImageRecord], ImportReport]:
    """Reviewed VOC files -> records of the photos they describe (label ``hand``).

    ``voc_dir`` defaults to ``<export_dir>/voc`` (point it at a tool's export folder instead),
    ``root`` to the dataset root recorded at export. Boxes still named ``low_label`` were not
    confirmed by the reviewer and are dropped.
    """
    export_dir = Path(export_dir)
    summary_path = export_dir / SUMMARY_JSON
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    voc = Path(voc_dir) if voc_dir is not None else export_dir / "voc"
    if not voc.is_dir():
        raise FileNotFoundError(f"no VOC folder at {voc}")
    if root is None and "root" not in summary:
        raise ValueError(f"no {SUMMARY_JSON} in {export_dir}: pass the dataset root")
    dataset_root = Path(root if root is not None else summary["root"])
    low_label = summary.get("low_label")
    by_name: dict[str, list[str]] = {}
    for rel in summary.get("images", []):
        by_name.setdefault(Path(rel).name, []).append(rel)
        by_name.setdefault(Path(rel).stem, []).append(rel)
    records, report = [], ImportReport()
    for xml_path in tqdm(sorted(voc.rglob("*.xml")), desc="reading reviewed labels", unit="xml"):
        record = parse_voc(xml_path, voc, source)
        image = _image_for(xml_path, voc, dataset_root, by_name)
        if image is None:
            record.problem = record.problem or "missing_image"
        else:
            record.image_path = image
        kept = []
        for box in record.boxes:
            if low_label is not None and box.label == low_label:
                report.dropped_boxes["unreviewed_low_confidence"] += 1
            else:
                kept.append(box)
        record.boxes = kept
        if record.problem:
            report.problems[record.problem.split(" ")[0]] += 1
        report.images += 1
        report.boxes += len(kept)
        records.append(record)
    return records, report


def read_path_column(csv_path: str | Path) -> list[str]:
    """The ``path`` column of a review or audit CSV (``training/reviews/sld_teacher_audit.csv``
    is ``path,problem``), for ``build_finetune_dataset(exclude=...)``."""
    with Path(csv_path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "path" not in (reader.fieldnames or []):
            raise ValueError(f"{csv_path}: no 'path' column (columns: {reader.fieldnames})")
        paths = [(row.get("path") or "").strip() for row in reader]
    return [p for p in paths if p]


def build_finetune_dataset(
    export_dir: str | Path,
    out_dir: str | Path,
    base_records: Iterable[ImageRecord] = (),
    exclude: Iterable[str | Path] = (),
    voc_dir: str | Path | None = None,
    root: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    keep_empty: bool = False,
) -> tuple[ConversionReport, ImportReport]:
    """The detector fine-tuning dataset: reviewed pseudo-labels (+ ``base_records``, e.g. the
    original hand dataset from ``converters.voc.read_voc_dir``) in the YOLO layout.

    ``exclude``: photos (paths relative to the dataset root, or absolute) to leave out — pass
    the held-out photos of the end-to-end evaluation so the detector never trains on them.
    Pseudo-labelled photos get train/val splits by ``write_yolo_dataset``.

    Photos left with no box are dropped unless ``keep_empty``: on gesture photos an empty
    annotation usually means the detector missed the hand, and training on it as background
    would teach the detector to miss it again. Keep them only once a reviewer has confirmed
    they show no hand.
    """
    records, imported = import_reviewed(export_dir, voc_dir, root, source="pseudo")
    summary_path = Path(export_dir) / SUMMARY_JSON
    dataset_root = Path(
        root if root is not None else json.loads(summary_path.read_text(encoding="utf-8"))["root"]
    )
    excluded = {(Path(p) if Path(p).is_absolute() else dataset_root / p).resolve() for p in exclude}
    kept = []
    for record in records:
        if record.image_path.resolve() in excluded:
            imported.excluded += 1
            continue
        if not record.boxes and not keep_empty:
            imported.empty_dropped += 1
            continue
        kept.append(record)
    report = write_yolo_dataset(
        [*kept, *base_records], Path(out_dir), val_fraction=val_fraction, seed=seed
    )
    return report, imported


def write_combined_data_yaml(data_yamls: Iterable[str | Path], out_yaml: str | Path) -> Path:
    """One ultralytics ``data.yaml`` training on several datasets at once (lists of folders).

    The first dataset with a ``test`` split gives the test split: fine-tuning on pseudo-labels
    is judged on the original hand dataset's held-out photos, which none of them trains on.
    """
    import yaml

    splits: dict[str, list[str]] = {"train": [], "val": []}
    test: str | None = None
    names = None
    for path in map(Path, data_yamls):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        base = Path(data.get("path") or path.parent)
        if not base.is_absolute():
            base = (path.parent / base).resolve()
        if names is None:
            names = data["names"]
        elif data["names"] != names:
            raise ValueError(f"{path} has classes {data['names']}, the first dataset {names}")
        for split in ("train", "val"):
            entries = data.get(split) or []
            for entry in [entries] if isinstance(entries, str) else entries:
                splits[split].append(str((base / entry).resolve()))
        if test is None and data.get("test"):
            test = str((base / data["test"]).resolve())
    if names is None:
        raise ValueError("no datasets given")
    combined: dict[str, object] = {**splits, "names": names}
    if test is not None:
        combined["test"] = test
    out = Path(out_yaml)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(combined, sort_keys=False), encoding="utf-8")
    return out
