"""Held-out evaluation of the trained models through the code that serves them.

Every number here is measured on the exported ONNX files with the serving pre- and
post-processing (``GesturePipeline``, ``ClassifierRunner`` + ``crops_to_batch``), so it
describes what the server answers, not what the PyTorch model did during training.

- :func:`evaluate_detector`: mAP50 / mAP50-95 of the ONNX detector on a YOLO ``data.yaml``
  split (our own COCO-style AP, see ``detection_metrics``), optionally cross-checked with
  ultralytics' ``val`` on the checkpoint.
- :func:`evaluate_classifier`: accuracy, macro-F1, per-class P/R/F1 and the confusion matrix
  on one split of a crop manifest.
- whole photos through detect -> crop -> classify -> decide: ``training.evaluate_photos``.

Each returns a JSON-serialisable dict that :func:`gesture_recognition.training.report.write_report`
turns into markdown, PNG plots and ``metrics.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml
from numpy.typing import NDArray
from tqdm import tqdm

from gesture_recognition.artifacts import CLASSIFIER_JSON, CLASSIFIER_ONNX, read_classifier_spec
from gesture_recognition.boxes import CropConfig, as_boxes
from gesture_recognition.classifier_input import crops_to_batch
from gesture_recognition.images import InvalidImageError, check_image_array, load_image
from gesture_recognition.labels import LabelMap
from gesture_recognition.pipeline import detect_hands, load_detector
from gesture_recognition.runtime import ClassifierRunner
from gesture_recognition.training.classification_metrics import confusion_matrix, per_class_f1
from gesture_recognition.training.crops import TIGHT_BOX
from gesture_recognition.training.detect_cache import predictions_for
from gesture_recognition.training.detection_metrics import DetectionAP, detection_ap
from gesture_recognition.training.mistakes import collect_errors
from gesture_recognition.training.served_view import ServedView

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# mAP is a property of the ranking, so it is measured down to the confidence ultralytics'
# val uses; the served threshold is then applied to the same detections for the
# operating-point numbers. Decoding only filters by score, so one detector pass gives both.
FULL_CURVE_CONF = 0.001
# Points kept of a PR curve in the results (the plot needs no more).
PR_CURVE_POINTS = 400

Detect = Callable[[NDArray[np.uint8]], tuple[NDArray[np.float32], NDArray[np.float32]]]


class ClassifierLike(Protocol):
    spec: Any

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]: ...


class PipelineLike(Protocol):
    def __call__(self, image: NDArray[np.uint8]) -> Any: ...


# ---------------------------------------------------------------------------------------------
# Shared helpers


def classification_summary(
    truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix.

    ``predicted`` may hold labels outside ``classes`` (the no-hand answer of a label map whose
    ``no_hand_label`` is not a class): they get their own confusion-matrix column and count as
    misses of the true class, but are not a class of the macro average.
    """
    classes = list(classes)
    unknown = sorted(set(truth) - set(classes))
    if unknown:
        raise ValueError(f"true labels outside the classes: {unknown}")
    extra = sorted(set(predicted) - set(classes))
    names = classes + extra
    index = {n: i for i, n in enumerate(names)}
    matrix = confusion_matrix(
        np.asarray([index[t] for t in truth], dtype=np.int64),
        np.asarray([index[p] for p in predicted], dtype=np.int64),
        len(names),
    )
    k = len(classes)
    tp = np.diag(matrix)[:k].astype(np.float64)
    predicted_count = matrix.sum(axis=0)[:k].astype(np.float64)
    support = matrix.sum(axis=1)[:k].astype(np.float64)
    precision = np.divide(tp, predicted_count, out=np.zeros(k), where=predicted_count > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = per_class_f1(matrix)[:k]
    # Classes absent from both truth and predictions would score 0/0: left out of the mean.
    seen = (support + predicted_count) > 0
    total = int(matrix.sum())
    return {
        "n": total,
        "accuracy": float(np.trace(matrix) / total) if total else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": {"labels": names, "rows_true_cols_predicted": matrix.tolist()},
    }


def timing(seconds: Sequence[float]) -> dict[str, float]:
    if not seconds:
        return {"mean_ms": 0.0, "median_ms": 0.0, "p95_ms": 0.0}
    ms = np.asarray(seconds) * 1000.0
    return {
        "mean_ms": float(ms.mean()),
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
    }


def threads_note(threads: int | None) -> str:
    n = threads if threads is not None else os.environ.get("GESTURE_ORT_THREADS") or "default"
    return (
        f"Latency: in-process ONNX Runtime on this machine's CPU ({os.cpu_count()} cores visible, "
        f"intra-op threads: {n}); file reading and JPEG decoding are not included."
    )


# ---------------------------------------------------------------------------------------------
# Detector


def read_data_yaml(data_yaml: str | Path) -> tuple[Path, dict[str, Any]]:
    """The dataset root and the parsed ``data.yaml`` (a relative ``path`` is taken from the
    yaml file's folder)."""
    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        raise FileNotFoundError(f"no such data.yaml: {data_yaml}")
    cfg = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{data_yaml} is not a YOLO data.yaml mapping")
    root = Path(cfg.get("path") or data_yaml.parent)
    if not root.is_absolute():
        root = (data_yaml.parent / root).resolve()
    return root, cfg


def split_images(data_yaml: str | Path, split: str) -> list[Path]:
    """Image files of one split: folders are searched recursively, ``.txt`` files list images."""
    images = [image for path in split_entries(data_yaml, split) for image in entry_images(path)]
    if not images:
        raise ValueError(f"split {split!r} of {data_yaml} holds no images")
    return images


def split_entries(data_yaml: str | Path, split: str) -> list[Path]:
    """The folders and ``.txt`` lists one split names, in order (repeats kept), joined to the
    yaml's root."""
    root, cfg = read_data_yaml(data_yaml)
    entry = cfg.get(split)
    if not entry:
        raise ValueError(f"{data_yaml} has no {split!r} split (it has: {sorted(cfg)})")
    entries = []
    for item in entry if isinstance(entry, list) else [entry]:
        path = Path(item) if Path(item).is_absolute() else root / item
        if not (path.is_dir() or (path.suffix == ".txt" and path.is_file())):
            raise FileNotFoundError(f"split {split!r} of {data_yaml}: {path} does not exist")
        entries.append(path)
    return entries


def entry_images(path: Path) -> list[Path]:
    """The images of one split entry: a folder (searched recursively) or a ``.txt`` list."""
    if path.is_dir():
        return sorted(
            p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
    images = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            p = Path(line)
            images.append(p if p.is_absolute() else (path.parent / p))
    return images


def label_path_for(image: Path) -> Path:
    """ultralytics' rule: the last ``/images/`` of the path becomes ``/labels/``, suffix .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = str(image)
    if sa not in text:
        return image.with_suffix(".txt")
    return Path(sb.join(text.rsplit(sa, 1))).with_suffix(".txt")


def read_yolo_labels(label_path: Path, width: int, height: int) -> NDArray[np.float32]:
    """Boxes ``[M, 4]`` in pixels from a YOLO txt (every class counts: the detector has one).

    A missing file is an image with no hands. Rows with more than five numbers are polygons
    (segmentation labels); their bounding box is used, as ultralytics does.
    """
    if not label_path.is_file():
        return np.zeros((0, 4), np.float32)
    boxes = []
    for n, line in enumerate(label_path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(v) for v in parts[1:]]
        except ValueError as exc:
            raise ValueError(f"{label_path}:{n}: not a YOLO label row: {line!r}") from exc
        if len(values) == 4:
            cx, cy, w, h = values
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        else:
            raise ValueError(f"{label_path}:{n}: not a YOLO label row: {line!r}")
        boxes.append([x1 * width, y1 * height, x2 * width, y2 * height])
    return as_boxes(np.asarray(boxes, np.float32).reshape(-1, 4))


def _downsample_curve(recall: NDArray, precision: NDArray) -> dict[str, list[float]]:
    if len(recall) > PR_CURVE_POINTS:
        idx = np.unique(np.linspace(0, len(recall) - 1, PR_CURVE_POINTS).round().astype(int))
        recall, precision = recall[idx], precision[idx]
    return {
        "recall": [round(float(v), 5) for v in recall],
        "precision": [round(float(v), 5) for v in precision],
    }


def _ap_dict(ap: DetectionAP) -> dict[str, Any]:
    return {
        "map50": ap.map50,
        "map75": ap.ap_at(0.75),
        "map50_95": ap.map50_95,
        "ap_per_iou": {f"{t:.2f}": float(v) for t, v in zip(ap.thresholds, ap.ap, strict=True)},
        "precision": ap.final_precision,
        "recall": ap.final_recall,
        "detections": ap.num_pred,
    }


def _ranking_note(served_conf: float, *, served_only: bool, cached: bool) -> str:
    """What the mAP columns ranked: the ONNX detector's boxes down to FULL_CURVE_CONF, a
    labeller's cached boxes, or only the served boxes (a ``detect`` that serves, e.g. the
    verifier's hands)."""
    if served_only:
        return (
            f"map50/map50_95 rank only the served boxes (score >= {served_conf:g}): there is no "
            "curve below the served threshold here."
        )
    if cached:
        return (
            "map50/map50_95 rank every box the labeller's cache holds; 'served' uses those "
            f"scoring >= {served_conf:g}."
        )
    return (
        f"map50/map50_95 rank all ONNX detections with score >= {FULL_CURVE_CONF}; 'served' "
        f"uses only the boxes the server keeps (score >= {served_conf:g})."
    )


def evaluate_detector(
    models_dir: str | Path | None,
    data_yaml: str | Path,
    split: str = "test",
    *,
    threads: int | None = None,
    checkpoint: str | Path | None = None,
    detect: Detect | None = None,
    served_conf: float | None = None,
    name: str = "detector",
    cache: Path | None = None,
    served_only: bool = False,
) -> dict[str, Any]:
    """mAP of the ONNX detector in ``models_dir`` on ``split`` of a YOLO dataset.

    ``map50`` / ``map50_95`` rank every detection the ONNX model outputs down to confidence
    0.001 (the usual definition, comparable with ultralytics' val); ``served`` repeats them on
    only the boxes the server keeps (score >= the detector's ``conf_threshold``) with the
    precision and recall at that operating point. ``checkpoint`` (a .pt) adds ultralytics'
    own ``val`` numbers as a cross-check. ``detect`` replaces the ONNX detector (tests);
    ``cache`` takes every photo's boxes from a detection cache instead (another labeller, e.g.
    the MediaPipe teacher: the same matching code scores it, its cached seconds are its latency).
    ``served_only``: ``detect`` returns only what is served (e.g. the hands the verifier keeps),
    so there is no full curve below ``served_conf`` and the report says so instead of warning.
    """
    images = split_images(data_yaml, split)
    detector_info: dict[str, Any] = {}
    cached: list[tuple[NDArray[np.float32], NDArray[np.float32]]] = []
    cached_seconds: list[float] = []
    if cache is not None:
        cached, cached_seconds = predictions_for(cache, images)
        detector_info = json.loads(Path(cache).read_text(encoding="utf-8"))["detector"]
        served_conf = 0.5 if served_conf is None else served_conf
    elif detect is None:
        runner = load_detector(models_dir, threads)
        detector_info = runner.spec.to_dict()
        if served_conf is None:
            served_conf = runner.spec.conf_threshold
        runner.spec = dataclasses.replace(
            runner.spec, conf_threshold=min(served_conf, FULL_CURVE_CONF)
        )

        def detect(image: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
            return detect_hands(runner, check_image_array(image))

    served_conf = 0.0 if served_conf is None else served_conf
    predictions, truths, seconds, read = [], [], [], []
    skipped: Counter[str] = Counter()
    for i, path in enumerate(tqdm(images, desc=f"detector on {split}", unit="img")):
        try:
            image = load_image(path)
        except (InvalidImageError, OSError):
            skipped["unreadable_image"] += 1
            continue
        height, width = image.shape[:2]
        read.append(path)
        truths.append(read_yolo_labels(label_path_for(path), width, height))
        if cache is not None:
            boxes, scores = cached[i]
        else:
            assert detect is not None
            start = time.perf_counter()
            boxes, scores = detect(image)
            seconds.append(time.perf_counter() - start)
        predictions.append((as_boxes(boxes), np.asarray(scores, np.float32).reshape(-1)))
    if not truths:
        raise ValueError(f"no readable image in split {split!r} of {data_yaml}")
    full = detection_ap(predictions, truths)
    kept = [(b[s >= served_conf], s[s >= served_conf]) for b, s in predictions]
    served = detection_ap(kept, truths)
    result: dict[str, Any] = {
        "kind": "detector",
        "name": name,
        "models_dir": str(models_dir) if models_dir is not None else None,
        "detector": detector_info,
        "data_yaml": str(data_yaml),
        "split": split,
        "images": len(truths),
        "images_with_hands": int(sum(len(t) > 0 for t in truths)),
        "gt_boxes": full.num_gt,
        "skipped": dict(skipped),
        **{k: v for k, v in _ap_dict(full).items() if k not in ("precision", "recall")},
        "served": {"conf_threshold": float(served_conf), **_ap_dict(served)},
        "pr_curve_iou50": _downsample_curve(full.recall, full.precision),
        "errors": collect_errors(read, kept, truths),
        "latency": timing(cached_seconds if cache is not None else seconds),
        "notes": [
            "AP: COCO-style 101-point interpolated AP, single class, greedy matching in score "
            "order; mAP50-95 averages IoU 0.50:0.05:0.95. Computed by this project on the "
            "exported ONNX detector with the serving letterbox and decoding.",
            _ranking_note(served_conf, served_only=served_only, cached=cache is not None),
            threads_note(threads) + " Detector only.",
        ],
    }
    lowest = min((float(sc.min()) for _, sc in predictions if len(sc)), default=None)
    truncated = lowest is not None and served_conf > FULL_CURVE_CONF and lowest >= served_conf
    if truncated and not served_only:
        result["notes"].append(
            f"WARNING: no detection scored below the served threshold {served_conf:g}: the ONNX "
            "graph seems to filter scores itself (an in-graph NMS exported with ultralytics' "
            "default conf 0.25), so map50/map50_95 are truncated there and the detector spec's "
            "conf_threshold cannot lower it. Export with conf=0.001 for the full curve."
        )
    if checkpoint is not None:
        imgsz = int(detector_info.get("imgsz", 320))
        result["ultralytics_val"] = ultralytics_val(checkpoint, data_yaml, split, imgsz)
        result["notes"].append(
            "ultralytics_val: YOLO(checkpoint).val on the PyTorch checkpoint (rectangular "
            "batches, its own letterbox), a cross-check; small differences are expected."
        )
    return result


def ultralytics_val(
    checkpoint: str | Path, data_yaml: str | Path, split: str, imgsz: int, batch: int = 8
) -> dict[str, float]:
    """ultralytics' own mAP of a ``.pt`` checkpoint on ``split`` (CPU, no plots, offline)."""
    from gesture_recognition.training.offline import configure_offline

    configure_offline()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        metrics = YOLO(str(checkpoint)).val(
            data=str(data_yaml),
            split=split,
            imgsz=imgsz,
            batch=batch,
            device="cpu",
            plots=False,
            workers=0,
            project=tmp,
            name="val",
            verbose=False,
        )
    box = metrics.box
    return {
        "map50": float(box.map50),
        "map50_95": float(box.map),
        "precision": float(box.mp),
        "recall": float(box.mr),
    }


# ---------------------------------------------------------------------------------------------
# Classifier on crops


def read_crop_manifest(crops_dir: str | Path, split: str | None = None) -> list[dict[str, str]]:
    manifest = Path(crops_dir) / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"no crop manifest at {manifest}")
    with manifest.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"path", "label", "split"} - set(rows[0] if rows else {})
    if rows and missing:
        raise ValueError(f"{manifest} lacks the columns {sorted(missing)}")
    return [r for r in rows if split is None or r["split"] == split]


def held_out_photos(
    crops_dir: str | Path, split: str = "test", source: str | None = None
) -> list[str]:
    """Photo paths (relative to their dataset root) behind one split of a crop manifest.

    The manifest's ``source`` column is ``<source>:<photo path>``; ``source`` filters on the
    prefix. Use it to score whole photos whose crops the classifier never trained on.
    """
    photos = set()
    for row in read_crop_manifest(crops_dir, split):
        prefix, _, rel = row.get("source", "").partition(":")
        if not rel:
            raise ValueError(f"manifest row without '<source>:<path>' source: {row}")
        if source is None or prefix == source:
            photos.add(rel)
    return sorted(photos)


def load_classifier(models_dir: str | Path | None, threads: int | None) -> ClassifierRunner:
    from gesture_recognition.artifacts import shipped_models_dir

    root = Path(models_dir) if models_dir is not None else shipped_models_dir()
    return ClassifierRunner(
        root / CLASSIFIER_ONNX, read_classifier_spec(root / CLASSIFIER_JSON), threads
    )


def evaluate_classifier(
    models_dir: str | Path | None,
    crops_dir: str | Path,
    split: str = "test",
    *,
    batch_size: int = 16,
    threads: int | None = None,
    classifier: ClassifierLike | None = None,
    name: str = "classifier",
) -> dict[str, Any]:
    """The ONNX classifier on the crops of one manifest split, with the serving preprocessing.

    Manifest labels are mapped through the classifier's label map (aliases included, and its
    merges: a MachinesCanSee classifier scores HaGRID's other gestures as ``no_gesture``); rows
    whose label it does not know are left out and counted. ``tight_box`` rows (ready-made tight
    hand crops) are shown in the served geometry (``ServedView.deterministic``), as training
    evaluates them.
    """
    crops_dir = Path(crops_dir)
    runner = classifier if classifier is not None else load_classifier(models_dir, threads)
    spec = runner.spec
    label_map: LabelMap = spec.label_map
    rows = read_crop_manifest(crops_dir, split)
    excluded: Counter[str] = Counter()
    items = []
    merged: Counter[str] = Counter()
    for row in rows:
        answer = label_map.answer_for(row["label"])
        if answer is None:
            excluded[f"label_not_in_label_map:{row['label']}"] += 1
            continue
        if not label_map.contains(row["label"]):
            merged[f"{row['label']}->{answer}"] += 1
        items.append((row["path"], answer, row.get("crop") == TIGHT_BOX))
    if not items:
        raise ValueError(
            f"split {split!r} of {crops_dir / 'manifest.csv'} has no crop with a label of the "
            f"classifier's label map {label_map.name!r} (excluded: {dict(excluded)})"
        )
    notes = [
        "Crops read from disk and turned into the classifier input by classifier_input."
        "crops_to_batch, the serving code; ONNX Runtime.",
    ]
    if merged:
        notes.append(
            "Labels answered through the label map's merges: "
            + ", ".join(f"{k} {v}" for k, v in sorted(merged.items()))
            + "."
        )
    view = ServedView.deterministic(spec.crop)
    if any(tight for _, _, tight in items):
        notes.append(
            "tight_box crops (a hand's tight box) shown as the server cuts a detector box: grown "
            f"x{spec.crop.scale} and squared, the margin filled with the crop's border pixels."
        )
    crop_cfg_path = crops_dir / "crop_config.json"
    if crop_cfg_path.is_file():
        cut_with = CropConfig.from_dict(json.loads(crop_cfg_path.read_text(encoding="utf-8")))
        if cut_with != spec.crop:
            notes.append(
                f"WARNING: crops were cut with {cut_with}, but the classifier serves with "
                f"{spec.crop}; these numbers may not match served crops."
            )
    truth, predicted, scores, seconds, paths = [], [], [], [], []
    with tqdm(total=len(items), desc=f"classifier on {split}", unit="crop") as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            crops = []
            for rel, label, tight in chunk:
                try:
                    crop = load_image(crops_dir / rel)
                except (InvalidImageError, OSError):
                    excluded["unreadable_crop"] += 1
                    continue
                crops.append(view(crop) if tight else crop)
                truth.append(label)
                paths.append(rel)
            batch = crops_to_batch(crops, spec.input_size, spec.mean, spec.std)
            t0 = time.perf_counter()
            logits = runner(batch)
            if len(crops):
                seconds.append((time.perf_counter() - t0) / len(crops))
            probs = _softmax_rows(logits)
            best = probs.argmax(axis=1)
            predicted += [label_map.classes[int(i)] for i in best]
            scores += [float(probs[i, b]) for i, b in enumerate(best)]
            bar.update(len(chunk))
    summary = classification_summary(truth, predicted, label_map.classes)
    return {
        "kind": "classifier",
        "name": name,
        "models_dir": str(models_dir) if models_dir is not None else None,
        "crops_dir": str(crops_dir),
        "split": split,
        "label_map": label_map.name,
        "architecture": getattr(spec, "architecture", None),
        "input_size": spec.input_size,
        **summary,
        "excluded": dict(excluded),
        "latency_per_crop": timing(seconds),
        "notes": notes,
        "predictions": [
            {"path": p, "truth": t, "predicted": q, "score": round(s, 5)}
            for p, t, q, s in zip(paths, truth, predicted, scores, strict=True)
        ],
    }


def _softmax_rows(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    from gesture_recognition.decision import softmax

    if len(logits) == 0:
        return np.zeros((0, 0), np.float32)
    return softmax(logits)
