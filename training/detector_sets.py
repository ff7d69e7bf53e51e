"""Detector test sets and boxes from a cache, scored with the project's one matching code.

A set is the photos of one split with their true boxes (a YOLO dataset split, or an ultralytics
/ Roboflow ``images`` folder beside its ``labels``). Any labeller's boxes can be scored on it
from a detection cache (``training.detect_cache``): the served detector, an older one, or the
MediaPipe teacher, so every model is measured by the same ``detection_metrics.detection_ap``.

:func:`padding_sweep` picks the teacher's box padding: it grows the bare landmark rectangles
(a cache made with padding 0) by each candidate and scores them against true boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from gesture_recognition.boxes import box_iou
from gesture_recognition.images import shown_size
from gesture_recognition.training.detect_cache import predictions_for
from gesture_recognition.training.detection_metrics import detection_ap
from gesture_recognition.training.evaluate import (
    IMAGE_SUFFIXES,
    label_path_for,
    read_yolo_labels,
    split_images,
)

Prediction = tuple[NDArray[np.float32], NDArray[np.float32]]


@dataclass(frozen=True)
class DetectorSet:
    name: str
    images: list[Path]
    truths: list[NDArray[np.float32]]  # [M, 4] pixels, one per image
    sizes: list[tuple[int, int]]  # (width, height)

    @property
    def boxes(self) -> int:
        return sum(len(t) for t in self.truths)


def load_set(name: str, source: Path, split: str = "test", prefix: str = "") -> DetectorSet:
    """A set from a ``data.yaml`` (its ``split``) or from an ``images`` folder with labels;
    ``prefix`` keeps only the images whose file name starts with it (one source of a merged
    dataset, whose converter prefixes the names)."""
    source = Path(source)
    if source.suffix in (".yaml", ".yml"):
        images = split_images(source, split)
    else:
        images = sorted(
            p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
    images = [p for p in images if p.name.startswith(prefix)]
    if not images:
        raise ValueError(f"detector set {name}: no images in {source}")
    truths, sizes = [], []
    for path in images:
        with Image.open(path) as img:
            width, height = shown_size(img)  # load_image turns it upright too
        truths.append(read_yolo_labels(label_path_for(path), width, height))
        sizes.append((width, height))
    return DetectorSet(name, images, truths, sizes)


def grow(
    boxes: NDArray[np.float32], padding: float, width: int, height: int
) -> NDArray[np.float32]:
    """Boxes grown by ``padding`` of their width/height a side, clipped (the teacher's rule)."""
    from gesture_recognition.training.teacher import landmark_box

    out = [
        landmark_box(np.array([[b[0], b[1]], [b[2], b[3]]], np.float64), padding, width, height)
        for b in boxes
    ]
    return np.asarray(out, np.float32).reshape(-1, 4)


def score(
    predictions: Sequence[Prediction], truths: Sequence[NDArray[np.float32]], conf: float
) -> dict[str, Any]:
    """mAP50 / mAP50-95 over all boxes, precision / recall / mean matched IoU at ``conf``."""
    full = detection_ap(predictions, truths)
    kept = [(b[s >= conf], s[s >= conf]) for b, s in predictions]
    served = detection_ap(kept, truths)
    ious = []
    for (boxes, _), truth in zip(kept, truths, strict=True):
        if len(boxes) and len(truth):
            ious.extend(box_iou(truth, boxes).max(axis=1).tolist())
    return {
        "map50": full.map50,
        "map50_95": full.map50_95,
        "precision": served.final_precision,
        "recall": served.final_recall,
        "conf": conf,
        "mean_best_iou": float(np.mean(ious)) if ious else 0.0,
        "gt_boxes": full.num_gt,
        "detections": served.num_pred,
    }


def padding_sweep(
    sets: Sequence[tuple[DetectorSet, Path]], paddings: Sequence[float], conf: float = 0.5
) -> list[dict[str, Any]]:
    """Score the teacher's bare landmark boxes (each set with its padding-0 cache) grown by
    each padding."""
    rows = []
    for s, pad0_cache in sets:
        bare, _ = predictions_for(pad0_cache, s.images)
        for padding in paddings:
            grown = [
                (grow(b, padding, w, h), sc) for (b, sc), (w, h) in zip(bare, s.sizes, strict=True)
            ]
            rows.append({"set": s.name, "padding": padding, **score(grown, s.truths, conf)})
    return rows


def write_sweep(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """The sweep as a markdown table (one row per set and padding)."""
    lines = [
        "| set | padding | mean best IoU | mAP50 | mAP50-95 | precision | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['padding']:g} | {r['mean_best_iou']:.3f} | {r['map50']:.3f} | "
            f"{r['map50_95']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
