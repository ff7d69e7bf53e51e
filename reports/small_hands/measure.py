"""Both arms of the small-hands rule (README.md): the served hands, and the served hands with a
second detector pass at 640 on photos where the pass at 320 finds no box at the served
threshold (the verifier then checks whichever boxes were found).

A measurement prototype on the shipped models (in process, the serving code's functions):

    python reports/small_hands/measure.py val   # the rule's data (validation only)
    python reports/small_hands/measure.py test  # the held-out photos, after the decision
    python reports/small_hands/measure.py confirm  # the confirmation on unused digit photos
    python reports/small_hands/measure.py tiles # the exploration: k x k test photos in one,
                                                # the detector's input side 320-640
    python reports/small_hands/measure.py empty # photos with no hand: the largest hand-free
                                                # strip of each validation photo

Prints a JSON summary; per-set numbers and per-photo answers go to ``--out``
(default runs/small_hands_<mode>.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    DetectorSpec,
    read_classifier_spec,
)
from gesture_recognition.decision import Decision, decide_hands
from gesture_recognition.hands import Hands, prepare_hands
from gesture_recognition.images import check_image_array, load_image
from gesture_recognition.pipeline import GesturePipeline, GestureResult, detect_hands
from gesture_recognition.runtime import ClassifierRunner, DetectorRunner
from gesture_recognition.training.detection_metrics import match_image
from gesture_recognition.training.detector_sets import load_set
from gesture_recognition.training.evaluate_photos import scene_split, score_photos
from gesture_recognition.training.zoomed_sets import zoom_out

HAGRID = Path("../shared/data/hagrid_crops")  # scene photos: evaluate_photos.scene_split
RETRY_IMGSZ = 640
SETS = {
    "val": {
        "subhih_roboflow": ("runs/datasets/hands_v1/data.yaml", "val"),
        "digits": ("runs/datasets/sld_teacher/data.yaml", "val"),
        "hagrid_scenes": ("runs/datasets/hagrid_teacher/data.yaml", "val"),
    },
    "test": {
        "roboflow": ("runs/datasets/roboflow_test/data.yaml", "test"),
        "subhih": ("runs/datasets/subhih_hands/data.yaml", "test"),
    },
    # The digit photos with a teacher box the detector never trained on (README: confirmation).
    "confirm": {"digits_fresh": ("runs/datasets/sld_teacher_fresh.yaml", "test")},
}
POOLED = {
    "val": ("subhih_roboflow", "hagrid_scenes"),
    "test": ("roboflow", "subhih"),
    "confirm": ("digits_fresh",),
}
ZOOMS = (1, 3, 4)


class Timed:
    """The detector network, timing its passes on the second pass's canvas."""

    def __init__(self, runner: DetectorRunner, retry_imgsz: int | None) -> None:
        self.runner = runner
        self.retry_imgsz = retry_imgsz
        self.retried: list[float] = []  # seconds of each second pass

    @property
    def spec(self) -> DetectorSpec:
        return self.runner.spec

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        start = time.perf_counter()
        rows = self.runner(batch)
        if max(batch.shape[2:]) == self.retry_imgsz:
            self.retried.append(time.perf_counter() - start)
        return rows


class Served:
    """The shipped pipeline's served hands, with an optional second pass at ``retry_imgsz``:
    the served code's own (``second_pass_imgsz`` in the detector's spec)."""

    def __init__(
        self, classifier_dir: Path, retry_imgsz: int | None, detector_dir: str = "models"
    ) -> None:
        self.pipe = GesturePipeline.from_dir(detector_dir)
        spec = read_classifier_spec(classifier_dir / CLASSIFIER_JSON)
        self.pipe.classifier = ClassifierRunner(classifier_dir / CLASSIFIER_ONNX, spec)
        self.base = self.pipe.detector.spec
        self.pipe.detector.spec = dataclasses.replace(self.base, second_pass_imgsz=retry_imgsz or 0)
        self.network = Timed(self.pipe.detector, retry_imgsz)
        self.retried = self.network.retried

    def detect(self, image: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        return detect_hands(self.network, image)  # type: ignore[arg-type]

    def hands(self, image: NDArray[np.uint8]) -> tuple[Hands, Decision]:
        image = check_image_array(image)
        boxes, scores = self.detect(image)
        classifier = self.pipe.classifier
        hands = prepare_hands(image, boxes, scores, classifier.spec, self.pipe.max_hands)
        logits, hand = classifier.logits_and_hand(hands.batch)
        keep, decision = decide_hands(logits, hand, classifier.spec)
        return (hands if keep is None else hands.take(keep)), decision

    def __call__(self, image: NDArray[np.uint8]) -> GestureResult:
        return GestureResult.of(*self.hands(image), self.pipe.labels)


def detector_rows(mode: str, arm: Served) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, (data_yaml, split) in SETS[mode].items():
        photos = load_set(name, Path(data_yaml), split)
        for k in ZOOMS:
            rng = np.random.default_rng(0)
            tp = fp = gt = 0
            for path, truth in zip(photos.images, photos.truths, strict=True):
                image, boxes = zoom_out(load_image(path), truth, k, rng)
                hands, _ = arm.hands(image)
                _, flags = match_image(hands.boxes, hands.scores, boxes, (0.5,))
                tp += int(flags[0].sum())
                fp += int((~flags[0]).sum())
                gt += len(boxes)
            rows[f"{name}/zoom_{k}"] = {"hands": gt, "found": tp, "false": fp}
    for k in ZOOMS:
        pooled = [rows[f"{name}/zoom_{k}"] for name in POOLED[mode]]
        fields = ("hands", "found", "false")
        rows[f"pooled/zoom_{k}"] = {f: sum(r[f] for r in pooled) for f in fields}
    for row in rows.values():
        row["recall"] = round(row["found"] / row["hands"], 4)
        row["precision"] = round(row["found"] / max(1, row["found"] + row["false"]), 4)
    return rows


def tiled(
    photos: Any, k: int, rng: np.random.Generator
) -> list[tuple[NDArray[np.uint8], NDArray[np.float32]]]:
    """k x k photos of a set (random order, each once) in one photo of the first one's size."""
    width, height = photos.sizes[0]
    cw, ch = width // k, height // k
    order = rng.permutation(len(photos.images))
    out = []
    for start in range(0, len(order) - k * k + 1, k * k):
        canvas = np.zeros((height, width, 3), np.uint8)
        boxes = []
        for j, idx in enumerate(order[start : start + k * k]):
            img = Image.fromarray(load_image(photos.images[idx]))
            scale = min(cw / img.width, ch / img.height)
            w, h = round(img.width * scale), round(img.height * scale)
            x0, y0 = (j % k) * cw, (j // k) * ch
            canvas[y0 : y0 + h, x0 : x0 + w] = np.asarray(
                img.resize((w, h), Image.Resampling.BILINEAR)
            )
            boxes.append(photos.truths[idx] * scale + np.array([x0, y0, x0, y0], np.float32))
        out.append((canvas, np.concatenate(boxes).astype(np.float32)))
    return out


def tiles_rows() -> dict[str, Any]:
    rows: dict[str, Any] = {}
    arm = Served(Path("models"), None)
    for name, (data_yaml, split) in SETS["test"].items():
        photos = load_set(name, Path(data_yaml), split)
        sizes = np.concatenate(
            [
                np.maximum(t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]) * 320 / max(s)
                for t, s in zip(photos.truths, photos.sizes, strict=True)
            ]
        )
        rows[f"{name}/hands_at_least_48px_at_320"] = f"{int((sizes >= 48).sum())} of {len(sizes)}"
        for imgsz in (320, 416, 480, 640) if name == "subhih" else (320,):
            arm.pipe.detector.spec = dataclasses.replace(arm.base, imgsz=imgsz)
            for k in (1, 2, 3, 4) if imgsz == 320 else (3, 4):
                tp = fp = gt = 0
                for image, boxes in tiled(photos, k, np.random.default_rng(0)):
                    hands, _ = arm.hands(image)
                    _, flags = match_image(hands.boxes, hands.scores, boxes, (0.5,))
                    tp, fp = tp + int(flags[0].sum()), fp + int((~flags[0]).sum())
                    gt += len(boxes)
                rows[f"{name}/input_{imgsz}/tiles_{k}"] = {
                    "hands": gt,
                    "recall": round(tp / gt, 3),
                    "precision": round(tp / max(1, tp + fp), 3),
                }
    return rows


def hand_free_strip(
    image: NDArray[np.uint8], boxes: NDArray[np.float32], min_share: float = 0.25
) -> NDArray[np.uint8] | None:
    """The largest strip of ``image`` beside, above or below every box (boxes grown by a
    quarter of their size, so no finger is left in), if it holds ``min_share`` of the photo
    and is at least 64 pixels each way; else None."""
    height, width = image.shape[:2]
    if not len(boxes):
        return image
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    pad = np.concatenate([size, size], 1) * 0.25 * np.array([-1, -1, 1, 1])
    x1, y1 = np.clip((boxes + pad)[:, :2].min(0), 0, None).astype(int)
    x2, y2 = (boxes + pad)[:, 2:].max(0).astype(int)
    strips = [image[:, :x1], image[:, x2:], image[:y1], image[y2:]]
    best = max(strips, key=lambda a: a.shape[0] * a.shape[1])
    h, w = best.shape[:2]
    if h * w < min_share * height * width or min(h, w) < 64:
        return None
    return np.ascontiguousarray(best)


def empty_rows() -> dict[str, Any]:
    """Served hands on hand-free strips of the validation photos, with and without the second
    pass: every served hand there is a false one."""
    rows: dict[str, Any] = {}
    for arm_name, retry in (("served", None), ("retry_640", RETRY_IMGSZ)):
        arm = Served(Path("models/hagrid"), retry)
        for name, (data_yaml, split) in SETS["val"].items():
            photos = load_set(name, Path(data_yaml), split)
            strips = [
                hand_free_strip(load_image(path), truth)
                for path, truth in zip(photos.images, photos.truths, strict=True)
            ]
            kept = [s for s in strips if s is not None]
            with_hand = false = 0
            for strip in kept:
                hands, _ = arm.hands(strip)
                false += len(hands.boxes)
                with_hand += len(hands.boxes) > 0
            rows[f"{name}/{arm_name}"] = {
                "strips": len(kept),
                "strips_with_a_served_hand": with_hand,
                "served_hands": false,
            }
        rows[f"second_passes/{arm_name}"] = len(arm.retried)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["val", "test", "confirm", "tiles", "empty"])
    parser.add_argument("--out")
    parser.add_argument("--detector-dir", default="models", help="a candidate detector's folder")
    parser.add_argument("--served-only", action="store_true", help="no second-pass arm")
    args = parser.parse_args()
    if args.mode in ("tiles", "empty"):
        rows = tiles_rows() if args.mode == "tiles" else empty_rows()
        print(json.dumps(rows, indent=1))
        return
    summary: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    arms = (
        (("served", None),) if args.served_only else (("served", None), ("retry_640", RETRY_IMGSZ))
    )
    for arm_name, retry in arms:
        if args.mode == "confirm":  # detector sets only: no gesture labels to score
            arm = Served(Path("models/hagrid"), retry, args.detector_dir)
        else:
            photos, label_map = scene_split(HAGRID, args.mode)
            classifier_dir = Path("models/hagrid" if args.mode == "val" else "models")
            arm = Served(classifier_dir, retry, args.detector_dir)
            result = score_photos(arm, photos, label_map)
            summary[f"scenes/{arm_name}"] = {
                "photos": len(photos),
                "right": round(result["accuracy"] * len(photos)),
                "photos_without_hand": result["photos_without_hand"],
                "second_passes": len(arm.retried),
            }
            answers[arm_name] = result["predictions"]
            arm.retried.clear()
        for key, row in detector_rows(args.mode, arm).items():
            summary[f"{key}/{arm_name}"] = row
        if arm.retried:
            summary[f"second_pass_ms/{arm_name}"] = {
                "passes": len(arm.retried),
                "median": round(1000 * float(np.median(arm.retried)), 1),
            }
    out = Path(args.out or f"runs/small_hands_{args.mode}.json")
    out.write_text(json.dumps({"summary": summary, "answers": answers}, indent=1), "utf-8")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
