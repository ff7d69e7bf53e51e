"""Cut the classifier's training crops from cached detections.

Each photo gives one crop: its topmost detected hand, expanded with the classifier's
:class:`~gesture_recognition.boxes.CropConfig` by ``boxes.topmost_hand_crop`` — the very
function the Triton ``hand_crops`` model serves with. Crops are saved losslessly (PNG) so the
pixels the classifier trains on are the pixels the server would cut.

Output: ``<out>/<split>/<label>/<name>.png``, ``<out>/manifest.csv``
(``path,label,split,group,source,crop``) and ``<out>/crop_config.json``.

``crop`` says where a crop came from: ``topmost_hand`` (the served code path), or
``whole_photo`` when the photo had no detected hand and ``no_hand="whole"`` was asked for —
meant for datasets whose photos are already framed around one gesturing hand (the HaGRID
subset), so a detector miss does not throw the labelled photo away. Serving never does this.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from gesture_recognition.boxes import CropConfig, box_iou, select_topmost, topmost_hand_crop
from gesture_recognition.images import load_image
from gesture_recognition.mcs2021 import read_train_csv
from gesture_recognition.training.detect_cache import read_cache
from gesture_recognition.training.splits import grouped_split

MANIFEST = "manifest.csv"
CROP_CONFIG = "crop_config.json"
# ``crop`` of a ready-made tight hand box (``gesture-train import-crops``), which training shows
# in the served geometry (``classifier_data.ServedView``).
TIGHT_BOX = "tight_box"
# A detected box takes a ground-truth box's label only when they overlap this much.
MATCH_IOU = 0.3
# Columns of a folder dataset's manifest that name a photo's group, first found wins.
GROUP_COLUMNS = ("group", "image_id", "video_name", "user_id")


@dataclass(frozen=True)
class PhotoLabel:
    """What a photo is labelled with: one label (``label``) or labelled boxes (``boxes``)."""

    label: str | None = None
    boxes: np.ndarray | None = None  # [M, 4] ground truth
    box_labels: list[str] = field(default_factory=list)
    group: str | None = None
    split: str | None = None


@dataclass
class CropReport:
    written: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    whole_photo: int = 0  # written from photos without a detected hand (no_hand="whole")

    def summary(self) -> str:
        w = ", ".join(f"{k} {v}" for k, v in sorted(self.written.items()))
        s = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        return (
            f"crops written: {sum(self.written.values())} ({w}; {self.whole_photo} of them whole "
            f"photos without a detected hand); skipped: {s}"
        )


def crop_label(box: np.ndarray, truth: PhotoLabel) -> str | None:
    """The label of a detected box: the photo's label, or the best-matching GT box's."""
    if truth.label is not None:
        return truth.label
    if truth.boxes is None or len(truth.boxes) == 0:
        return None
    overlaps = box_iou(box[None, :], truth.boxes)[0]
    best = int(overlaps.argmax())
    return truth.box_labels[best] if overlaps[best] >= MATCH_IOU else None


def split_stratified(
    labels: dict[str, PhotoLabel], fractions: tuple[float, float], seed: int
) -> dict[str, str]:
    """Assign val/test to photos without a split: per label, whole groups at a time.

    Photos sharing a group (video, session, person) always land on the same side; the rule
    itself is :func:`gesture_recognition.training.splits.grouped_split`. Photos that bring
    their own split keep it.
    """
    free = {rel: truth for rel, truth in labels.items() if truth.split is None}
    side = grouped_split(
        {rel: truth.label for rel, truth in free.items()},
        {rel: truth.group for rel, truth in free.items()},
        fractions,
        seed,
    )
    return {rel: truth.split or side[rel] for rel, truth in labels.items()}


def cut_crops(
    cache_path: Path,
    labels: dict[str, PhotoLabel],
    out_dir: Path,
    config: CropConfig,
    source: str,
    fractions: tuple[float, float] = (0.15, 0.15),
    seed: int = 0,
    label_filter: Callable[[str], bool] | None = None,
    no_hand: str = "skip",
) -> CropReport:
    """One crop per labelled photo in the cache; photos with no (matching) hand are counted."""
    if no_hand not in ("skip", "whole"):
        raise ValueError(f"no_hand must be 'skip' or 'whole', got {no_hand!r}")
    cache = read_cache(cache_path)
    root = Path(json.loads(Path(cache_path).read_text())["root"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if label_filter is not None:
        labels = {k: v for k, v in labels.items() if v.label is None or label_filter(v.label)}
    splits = split_stratified(labels, fractions, seed)
    report = CropReport()
    rows = []
    for rel in tqdm(sorted(labels), desc="cutting crops", unit="img"):
        truth = labels[rel]
        det = cache.get(rel)
        if det is None:
            report.skipped["not_in_detection_cache"] += 1
            continue
        index = select_topmost(det.boxes)
        whole = index is None and no_hand == "whole" and truth.label is not None
        if index is None and not whole:
            report.skipped["no_hand_detected"] += 1
            continue
        label = truth.label if whole else crop_label(det.boxes[index], truth)
        if label is None:
            report.skipped["no_matching_ground_truth"] += 1
            continue
        if label_filter is not None and not label_filter(label):
            report.skipped["label_not_in_label_map"] += 1
            continue
        image = load_image(root / rel)
        if whole:
            crop = image
            report.whole_photo += 1
        else:
            hand = topmost_hand_crop(image, det.boxes, config)
            assert hand is not None  # det.boxes is non-empty here: crop_label found a box
            crop = hand
        split = splits[rel]
        name = Path(rel).with_suffix("").as_posix().replace("/", "__") + ".png"
        dest = out_dir / split / label / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(dest)
        rows.append(
            {
                "path": dest.relative_to(out_dir).as_posix(),
                "label": label,
                "split": split,
                "group": truth.group or rel,
                "source": f"{source}:{rel}",
                "crop": "whole_photo" if whole else "topmost_hand",
            }
        )
        report.written[split] += 1
    with (out_dir / MANIFEST).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split", "group", "source", "crop"])
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / CROP_CONFIG).write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
    (out_dir / "crop_report.txt").write_text(report.summary() + "\n", encoding="utf-8")
    return report


def folder_labels(root: Path, manifest: Path | None = None) -> dict[str, PhotoLabel]:
    """Class-per-folder photos (HaGRID crops): ``<root>/<label>/<photo>``.

    A ``manifest`` (``path,label`` and optionally a group column, see :data:`GROUP_COLUMNS`)
    replaces the folder scan; its group then keeps a video's or person's photos together in
    the split.
    """
    root = Path(root)
    out = {}
    if manifest is not None and Path(manifest).is_file():
        with Path(manifest).open(encoding="utf-8") as f:
            reader = csv.DictReader(f)
            group_column = next((c for c in GROUP_COLUMNS if c in (reader.fieldnames or [])), None)
            for row in reader:
                group = (row.get(group_column) or "").strip() if group_column else ""
                out[row["path"]] = PhotoLabel(label=row["label"], group=group or None)
        return out
    for path in sorted(root.glob("*/*")):
        if path.suffix.lower() in {".jpg", ".jpeg", ".png"}:
            out[path.relative_to(root).as_posix()] = PhotoLabel(label=path.parent.name)
    return out


def mcs2021_labels(root: Path, train_csv: Path | None = None) -> dict[str, PhotoLabel]:
    """The frames of a MachinesCanSee 2021 ``train.csv``, grouped by ``video_name``.

    The competition gives frame labels but no boxes: crops come from the detection cache
    (``gesture-train detect --layout mcs2021``), whose boxes are the pseudo-labels.
    """
    frames = read_train_csv(Path(root), train_csv)
    # Keys as the detection cache writes them (``./a.jpg`` is cached as ``a.jpg``).
    return {
        PurePosixPath(f.frame_path.replace("\\", "/")).as_posix(): PhotoLabel(
            label=f.label, group=f"video:{f.video_name}"
        )
        for f in frames
    }


def voc_labels(root: Path) -> dict[str, PhotoLabel]:
    """Photos with VOC boxes (SubhiH): per-box labels; the folder train/test is the split.

    The source's ``train`` photos are split again into train/val by capture session; its
    ``test`` photos stay test.
    """
    from gesture_recognition.training.converters.voc import session_group

    root = Path(root)
    out = {}
    for xml_path in sorted(root.rglob("*.xml")):
        image = xml_path.with_suffix(".jpg")
        if not image.is_file():
            continue
        ann = ET.parse(xml_path).getroot()
        boxes, names = [], []
        for obj in ann.iter("object"):
            bnd = obj.find("bndbox")
            if bnd is None:
                continue
            boxes.append([float(bnd.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax")])
            names.append((obj.findtext("name") or "").strip())
        rel = image.relative_to(root).as_posix()
        top = rel.split("/")[0]
        out[rel] = PhotoLabel(
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            box_labels=names,
            group=session_group(image.stem),
            split="test" if top == "test" else None,
        )
    return out
