"""Choose the served detector confidence threshold on validation data.

The threshold trades hands found against false boxes, and the end-to-end answer feels both: a
missed hand is a ``no_gesture`` answer, a false box is one more hand that can win the decision.
So the sweep scores, at each candidate threshold, (a) every validation detector set (recall and
precision at IoU 0.5, the project's one matching code) and (b) the whole recogniser on
validation scenes (labelled photos no model trained on), and :func:`choose` takes the threshold
with the best scene accuracy among those whose precision stays at or above a floor on every
detector set (ties: the higher threshold, fewer false boxes).

The detector runs once per photo at the lowest candidate; each threshold then filters those
boxes, as the served decoder would (``decode_detections`` keeps ``score >= threshold``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gesture_recognition.decision import decide, softmax
from gesture_recognition.hands import prepare_hands
from gesture_recognition.images import load_image
from gesture_recognition.labels import LabelMap
from gesture_recognition.pipeline import detect_hands
from gesture_recognition.runtime import ClassifierRunner, DetectorRunner
from gesture_recognition.training.detector_sets import DetectorSet, score
from gesture_recognition.training.evaluate_photos import Photo, photo_labels

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3)


@dataclass(frozen=True)
class SweepResult:
    thresholds: tuple[float, ...]
    detector_rows: list[dict[str, Any]]  # one per set and threshold
    scene_rows: list[dict[str, Any]]  # one per threshold
    scenes: int


def parse_thresholds(text: str) -> tuple[float, ...]:
    values = tuple(sorted({float(v) for v in text.split(",") if v.strip()}))
    if not values or not all(0.0 < v < 1.0 for v in values):
        raise ValueError(f"thresholds must be numbers in (0, 1), got {text!r}")
    return values


def trained_photos(image_dirs: Iterable[str | Path]) -> set[Path]:
    """The source photos behind training folders (``write_yolo_dataset`` links each training
    image to its source photo, so the resolved links name the photos a detector saw)."""
    out: set[Path] = set()
    for folder in image_dirs:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"training image folder {folder} not found")
        out.update(p.resolve() for p in folder.iterdir() if p.is_file())
    return out


def validation_scenes(
    root: str | Path,
    label_map: LabelMap,
    held_out: LabelMap | None = None,
    exclude_photos: set[Path] | frozenset[Path] = frozenset(),
) -> list[Photo]:
    """Labelled photos of ``root`` (HaGRID layout) whose label ``label_map`` knows, minus the
    classes of the test photos (those ``held_out`` knows) and the photos a model trained on."""
    root = Path(root).resolve()
    photos = []
    for rel, raw in sorted(photo_labels(root).items()):
        path = root / rel
        if held_out is not None and held_out.contains(raw):
            continue
        if not label_map.contains(raw) or path.resolve() in exclude_photos:
            continue
        photos.append(Photo(rel, path, label_map.canonical(raw)))
    if not photos:
        raise ValueError(f"no validation scene left in {root}")
    return photos


def _with_threshold(detector: DetectorRunner, threshold: float) -> DetectorRunner:
    detector.spec = replace(detector.spec, conf_threshold=threshold)
    return detector


def sweep_detector_set(
    detector: DetectorRunner, data: DetectorSet, thresholds: Sequence[float]
) -> list[dict[str, Any]]:
    _with_threshold(detector, min(thresholds))
    predictions = [
        detect_hands(detector, load_image(p))
        for p in tqdm(data.images, desc=f"detecting, {data.name}", unit="img")
    ]
    return [{"set": data.name, **score(predictions, data.truths, t)} for t in thresholds]


def sweep_scenes(
    detector: DetectorRunner,
    classifier: ClassifierRunner,
    photos: Sequence[Photo],
    thresholds: Sequence[float],
) -> list[dict[str, Any]]:
    """End-to-end accuracy and photos without a hand at each threshold.

    The hands found at the lowest threshold are classified once; a higher threshold keeps a
    subset of them (each crop depends on its own box only, and the ``max_hands`` cap keeps the
    most confident), so its decision is the rule applied to those rows of the probabilities.
    """
    label_map = classifier.spec.label_map
    _with_threshold(detector, min(thresholds))
    right = dict.fromkeys(thresholds, 0)
    no_hand = dict.fromkeys(thresholds, 0)
    for photo in tqdm(photos, desc="end to end, validation scenes", unit="photo"):
        image = load_image(photo.path)
        hands = prepare_hands(image, *detect_hands(detector, image), classifier.spec)
        probs = (
            softmax(classifier(hands.batch))
            if len(hands.batch)
            else np.zeros((0, label_map.num_classes), np.float32)
        )
        for t in thresholds:
            keep = hands.scores >= t
            right[t] += decide(probs[keep], label_map).gesture == photo.truth
            no_hand[t] += not keep.any()
    n = len(photos)
    return [
        {"conf": t, "accuracy": right[t] / n, "no_hand": no_hand[t], "photos": n}
        for t in thresholds
    ]


def choose(result: SweepResult, min_precision: float) -> float | None:
    """The threshold with the best scene accuracy whose precision is at least
    ``min_precision`` on every detector set; ties go to the higher threshold. None: none
    qualifies."""
    ok = [
        t
        for t in result.thresholds
        if all(r["precision"] >= min_precision for r in result.detector_rows if r["conf"] == t)
    ]
    accuracy = {r["conf"]: r["accuracy"] for r in result.scene_rows}
    if not ok:
        return None
    return max(ok, key=lambda t: (accuracy.get(t, 0.0), t))


def write_report(
    result: SweepResult, chosen: float | None, min_precision: float, path: Path, title: str
) -> Path:
    lines = [f"# {title}", ""]
    lines += [
        f"End to end on {result.scenes} validation scenes (photos no model trained on):",
        "",
        "| threshold | accuracy | photos without a hand |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['conf']:.2f} | {r['accuracy']:.3f} | {r['no_hand']} |" for r in result.scene_rows
    ]
    lines += [
        "",
        "Detector validation sets (IoU 0.5):",
        "",
        "| set | threshold | recall | precision | detections | boxes |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['set']} | {r['conf']:.2f} | {r['recall']:.3f} | {r['precision']:.3f} "
        f"| {r['detections']} | {r['gt_boxes']} |"
        for r in result.detector_rows
    ]
    verdict = f"**Chosen: {chosen:.2f}**" if chosen is not None else "**No threshold qualifies**"
    lines += [
        "",
        f"{verdict}: the best end-to-end accuracy among the thresholds whose precision is at "
        f"least {min_precision:.2f} on every detector set (ties: the higher threshold).",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
