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

With a classifier that has a hand verifier (``gesture-train train-verifier``), the operating
point is a pair: the detector threshold and the verifier's, whose served hands are the boxes at
or above the first whose ``hand`` probability is at or above the second (``None``: the verifier
off). The classifier then runs on the detector sets' boxes too, once per photo.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from gesture_recognition.decision import decide, softmax
from gesture_recognition.hands import Hands, prepare_hands
from gesture_recognition.images import load_image
from gesture_recognition.pipeline import detect_hands
from gesture_recognition.runtime import ClassifierRunner, DetectorRunner
from gesture_recognition.training.detector_sets import DetectorSet, score
from gesture_recognition.training.evaluate import read_crop_manifest
from gesture_recognition.training.evaluate_photos import Photo
from gesture_recognition.training.served_view import ServedView
from gesture_recognition.training.verifier import crop_batches, kept_shares

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3)


Point = tuple[float, float | None]  # detector threshold, verifier threshold (None: off)


@dataclass(frozen=True)
class SweepResult:
    thresholds: tuple[float, ...]
    detector_rows: list[dict[str, Any]]  # one per set and point
    scene_rows: list[dict[str, Any]]  # one per point
    scenes: int
    verifier_thresholds: tuple[float | None, ...] = (None,)
    # Share of each label's validation hand crops each verifier threshold keeps (empty: not
    # measured); a threshold under the floor for any label is not eligible.
    crops_kept: dict[float, dict[str, float]] = field(default_factory=dict)

    @property
    def points(self) -> list[Point]:
        return [(t, v) for t in self.thresholds for v in self.verifier_thresholds]


def _point(row: dict[str, Any]) -> Point:
    return row["conf"], row.get("verifier")


def parse_verifier_thresholds(text: str) -> tuple[float | None, ...]:
    """``off,0.3,0.5`` -> (None, 0.3, 0.5): ``off`` serves every box the detector keeps."""
    values: set[float | None] = set()
    for item in (v.strip() for v in text.split(",")):
        if item == "off":
            values.add(None)
        elif item:
            value = float(item)
            if not 0.0 < value < 1.0:
                raise ValueError(f"verifier thresholds must be 'off' or in (0, 1), got {item!r}")
            values.add(value)
    if not values:
        raise ValueError(f"no verifier threshold in {text!r}")
    return tuple(sorted(values, key=lambda v: -1.0 if v is None else v))


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


def _with_threshold(detector: DetectorRunner, threshold: float) -> DetectorRunner:
    detector.spec = replace(detector.spec, conf_threshold=threshold)
    return detector


def _verify(
    classifier: ClassifierRunner,
    image: NDArray[np.uint8],
    boxes: NDArray[np.float32],
    scores: NDArray[np.float32],
) -> tuple[Hands, NDArray[np.float32], NDArray[np.float32]]:
    """The served hands of the boxes, their logits and their ``hand`` probabilities."""
    hands = prepare_hands(image, boxes, scores, classifier.spec)
    logits, hand = classifier.logits_and_hand(hands.batch)
    if hand is None:
        raise ValueError("verifier thresholds need a classifier with a verifier")
    return hands, logits, hand


def sweep_detector_set(
    detector: DetectorRunner,
    data: DetectorSet,
    thresholds: Sequence[float],
    classifier: ClassifierRunner | None = None,
    verifier_thresholds: Sequence[float | None] = (None,),
) -> list[dict[str, Any]]:
    _with_threshold(detector, min(thresholds))
    verifying = any(v is not None for v in verifier_thresholds)
    if verifying and classifier is None:
        raise ValueError("verifier thresholds need the classifier")
    found: list[tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]] = []
    for path in tqdm(data.images, desc=f"detecting, {data.name}", unit="img"):
        image = load_image(path)
        boxes, scores = detect_hands(detector, image)
        if verifying:
            assert classifier is not None
            hands, _, hand = _verify(classifier, image, boxes, scores)
            boxes, scores = hands.boxes, hands.scores
        else:
            hand = np.ones(len(boxes), np.float32)
        found.append((boxes, scores, hand))
    rows = []
    for v in verifier_thresholds:
        predictions = [(b, s) if v is None else (b[h >= v], s[h >= v]) for b, s, h in found]
        rows += [
            {"set": data.name, **score(predictions, data.truths, t), "verifier": v}
            for t in thresholds
        ]
    return rows


def sweep_scenes(
    detector: DetectorRunner,
    classifier: ClassifierRunner,
    photos: Sequence[Photo],
    thresholds: Sequence[float],
    verifier_thresholds: Sequence[float | None] = (None,),
) -> list[dict[str, Any]]:
    """End-to-end accuracy and photos without a hand at each operating point.

    The hands found at the lowest threshold are classified once; a higher threshold keeps a
    subset of them (each crop depends on its own box only, and the ``max_hands`` cap keeps the
    most confident), so its decision is the rule applied to those rows of the probabilities;
    the verifier's threshold drops rows the same way.
    """
    label_map = classifier.spec.label_map
    _with_threshold(detector, min(thresholds))
    verifying = any(v is not None for v in verifier_thresholds)
    points = [(t, v) for t in thresholds for v in verifier_thresholds]
    right = dict.fromkeys(points, 0)
    no_hand = dict.fromkeys(points, 0)
    for photo in tqdm(photos, desc="end to end, validation scenes", unit="photo"):
        image = load_image(photo.path)
        boxes, scores = detect_hands(detector, image)
        if verifying:
            hands, logits, hand = _verify(classifier, image, boxes, scores)
        else:
            hands = prepare_hands(image, boxes, scores, classifier.spec)
            logits, hand = classifier(hands.batch), np.ones(len(hands.batch), np.float32)
        probs = softmax(logits) if len(logits) else np.zeros((0, label_map.num_classes), np.float32)
        for t, v in points:
            keep = (hands.scores >= t) & (True if v is None else hand >= v)
            right[t, v] += decide(probs[keep], label_map).gesture == photo.truth
            no_hand[t, v] += not keep.any()
    n = len(photos)
    return [
        {
            "conf": t,
            "verifier": v,
            "accuracy": right[t, v] / n,
            "no_hand": no_hand[t, v],
            "photos": n,
        }
        for t, v in points
    ]


def sweep_crops(
    classifier: ClassifierRunner,
    crops_dir: Path,
    verifier_thresholds: Sequence[float | None],
    split: str = "val",
    batch_size: int = 64,
) -> dict[float, dict[str, float]]:
    """Share of each label's hand crops (``split`` of an import-crops folder, shown as the
    classifier's evaluation shows them) that each verifier threshold keeps: every gesture must
    stay a hand."""
    rows = read_crop_manifest(crops_dir, split)
    view = ServedView.deterministic(classifier.spec.crop)
    hand_parts = []
    for batch in crop_batches(crops_dir, rows, view, classifier.spec, batch_size):
        _, hand = classifier.logits_and_hand(batch)
        if hand is None:
            raise ValueError("--crops measures a verifier: the classifier has none")
        hand_parts.append(hand)
    return kept_shares(
        np.concatenate(hand_parts),
        [r["label"] for r in rows],
        [v for v in verifier_thresholds if v is not None],
    )


def choose(result: SweepResult, min_precision: float, min_crops_kept: float = 0.0) -> Point | None:
    """The operating point with the best scene accuracy whose precision is at least
    ``min_precision`` on every detector set (and whose verifier keeps at least
    ``min_crops_kept`` of every label's validation hand crops, when measured); ties go to the
    higher smallest precision, then the higher detector threshold, then the higher verifier
    threshold. None: none qualifies."""
    smallest: dict[Point, float] = {}
    for r in result.detector_rows:
        point = _point(r)
        smallest[point] = min(smallest.get(point, 1.0), r["precision"])

    def keeps_hands(v: float | None) -> bool:
        shares = result.crops_kept.get(v, {}) if v is not None else {}
        return all(share >= min_crops_kept for share in shares.values())

    ok = [p for p in result.points if smallest.get(p, 1.0) >= min_precision and keeps_hands(p[1])]
    accuracy = {_point(r): r["accuracy"] for r in result.scene_rows}
    if not ok:
        return None
    return max(
        ok,
        key=lambda p: (
            accuracy.get(p, 0.0),
            smallest.get(p, 1.0),
            p[0],
            -1.0 if p[1] is None else p[1],
        ),
    )


def point_text(point: Point) -> str:
    conf, verifier = point
    return f"{conf:.2f}" + ("" if verifier is None else f" + verifier {verifier:.2f}")


def _verifier_cell(row: dict[str, Any]) -> str:
    v = row.get("verifier")
    return "off" if v is None else f"{v:.2f}"


def write_report(
    result: SweepResult,
    chosen: Point | None,
    min_precision: float,
    path: Path,
    title: str,
    min_crops_kept: float = 0.0,
) -> Path:
    verifying = result.verifier_thresholds != (None,)
    v_head, v_rule = ("| verifier ", "|---") if verifying else ("", "")

    def v_cell(row: dict[str, Any]) -> str:
        return f"| {_verifier_cell(row)} " if verifying else ""

    lines = [f"# {title}", ""]
    lines += [
        f"End to end on {result.scenes} validation scenes (photos no model trained on):",
        "",
        f"| threshold {v_head}| accuracy | photos without a hand |",
        f"|---{v_rule}|---|---|",
    ]
    lines += [
        f"| {r['conf']:.2f} {v_cell(r)}| {r['accuracy']:.3f} | {r['no_hand']} |"
        for r in result.scene_rows
    ]
    lines += [
        "",
        "Detector validation sets (IoU 0.5"
        + ("; the served hands: boxes the verifier keeps" if verifying else "")
        + "):",
        "",
        f"| set | threshold {v_head}| recall | precision | detections | boxes |",
        f"|---|---{v_rule}|---|---|---|---|",
    ]
    lines += [
        f"| {r['set']} | {r['conf']:.2f} {v_cell(r)}| {r['recall']:.3f} | {r['precision']:.3f} "
        f"| {r['detections']} | {r['gt_boxes']} |"
        for r in result.detector_rows
    ]
    if result.crops_kept:
        labels = sorted({label for shares in result.crops_kept.values() for label in shares})
        lines += [
            "",
            "Validation hand crops the verifier keeps, per label:",
            "",
            "| verifier | " + " | ".join(labels) + " | lowest |",
            "|---" * (len(labels) + 2) + "|",
        ]
        for v, shares in sorted(result.crops_kept.items()):
            cells = " | ".join(f"{shares.get(label, float('nan')):.3f}" for label in labels)
            lines.append(f"| {v:.2f} | {cells} | {min(shares.values()):.3f} |")
    verdict = (
        f"**Chosen: {point_text(chosen)}**" if chosen is not None else "**No threshold qualifies**"
    )
    guard = (
        f", and whose verifier keeps at least {min_crops_kept:.2f} of every label's validation "
        "hand crops"
        if result.crops_kept
        else ""
    )
    ties = (
        "ties: the higher smallest precision, the higher threshold, the higher verifier threshold"
        if verifying
        else "ties: the higher smallest precision, then the higher threshold"
    )
    lines += [
        "",
        f"{verdict}: the best end-to-end accuracy among the operating points whose precision is "
        f"at least {min_precision:.2f} on every detector set{guard} ({ties}).",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
