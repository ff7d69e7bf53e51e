"""A hand verifier on the classifier's features: the second look MediaPipe Hands takes.

The detector learnt hands from few people, and its false boxes on other people's photos (red
things, cloths, faces) are what keep its precision behind MediaPipe Hands, whose landmark model
gives every box a hand-presence score. The classifier that runs on every box anyway learnt
hands from 30,000 HaGRID crops of thousands of people; its pooled features (the input of its
last layer) tell a hand from a non-hand well. So the verifier is a logistic regression on those
features, fitted on the crops the server itself would cut (``prepare_hands``) around

- the detector's boxes on its own training photos, down to a low score: a box on a true hand
  (IoU >= ``hand_iou``) is a hand, a box on no true hand (IoU < ``background_iou`` with every
  one) is not, a box in between (part of a hand, two hands) is left out;
- the true boxes themselves (hands), and a few random boxes on no hand (walls, faces, clothes);
- labelled hand crops of every gesture (``crops_dir``, e.g. HaGRID's 14 classes), shown in the
  served geometry over real photo context (``ServedView`` + ``SceneContext``, as the classifier
  trains). Without them the hands are only the detector's training photos' gestures, and on
  features that encode the gesture, "hand" becomes "one of those gestures": the first verifier
  kept none of the validation ``mute`` crops (``reports/verifier/``).

The classifier is frozen: its gestures do not change. The fitted layer is added to a copy of its
ONNX file as a second output ``hand`` (``[N, 1]``, a probability) and named in its JSON
(``ClassifierSpec.verifier``), whose threshold ``gesture-train threshold-sweep`` chooses on
validation data.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from tqdm import tqdm

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    ClassifierSpec,
    VerifierSpec,
    read_classifier_spec,
    write_spec,
)
from gesture_recognition.boxes import box_iou, expanded_crops
from gesture_recognition.classifier_input import crops_to_batch
from gesture_recognition.hands import prepare_hands, verified
from gesture_recognition.images import InvalidImageError, check_image_array, load_image
from gesture_recognition.pipeline import detect_hands, load_detector
from gesture_recognition.runtime import DetectorRunner, make_session
from gesture_recognition.training.crops import TIGHT_BOX
from gesture_recognition.training.evaluate import (
    label_path_for,
    load_classifier,
    read_crop_manifest,
    read_yolo_labels,
)
from gesture_recognition.training.flip_tta import add_flip, has_flip, strip_flip
from gesture_recognition.training.scene_context import SceneContext
from gesture_recognition.training.served_view import ServedView

HAND_OUTPUT = "hand"


@dataclass(frozen=True)
class VerifierConfig:
    min_score: float = 0.01  # detector boxes down to this score are mined
    max_boxes: int = 30  # per photo, the most confident
    hand_iou: float = 0.5
    background_iou: float = 0.1
    random_boxes: int = 2  # boxes on no hand per photo, sized like its hands
    l2: float = 0.01  # on the standardised features
    crops_per_class: int = 300  # hand crops of each label drawn from crops_dir's split
    threshold: float = 0.5  # written to the JSON; threshold-sweep chooses the served one
    seed: int = 0


@dataclass
class MinedCrops:
    features: NDArray[np.float32]  # [M, D]
    is_hand: NDArray[np.bool_]  # [M]
    counts: Counter[str]


def feature_tensor(model: onnx.ModelProto) -> str:
    """The pooled features: the input of the graph's last Gemm (timm's classifier layer)."""
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    if not gemms:
        raise ValueError("the classifier's ONNX graph has no Gemm (final linear layer)")
    return str(gemms[-1].input[0])


def feature_width(model: onnx.ModelProto) -> int:
    gemm = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    weights = {i.name: i for i in model.graph.initializer}
    if gemm.input[1] not in weights:
        raise ValueError(f"the final Gemm's weight {gemm.input[1]!r} is not an initializer")
    dims = list(weights[gemm.input[1]].dims)
    trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
    return int(dims[1] if trans_b else dims[0])


def with_feature_output(model: onnx.ModelProto) -> bytes:
    """The model with its pooled features as a second output, for mining."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    name = feature_tensor(model)
    probe.graph.output.append(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
    )
    return probe.SerializeToString()


def random_background_boxes(
    rng: np.random.Generator, truth: NDArray[np.float32], width: int, height: int, n: int
) -> NDArray[np.float32]:
    """Up to ``n`` boxes overlapping no true box, each the size of one of the photo's hands
    (or a tenth to a third of its shorter side when it has none)."""
    out: list[NDArray[np.float32]] = []
    for _ in range(n * 10):
        if len(out) == n:
            break
        if len(truth):
            ref = truth[rng.integers(len(truth))]
            w, h = float(ref[2] - ref[0]), float(ref[3] - ref[1])
        else:
            w = h = float(rng.uniform(0.1, 0.33) * min(width, height))
        if w < 8 or h < 8 or w >= width or h >= height:
            continue
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        box = np.array([[x, y, x + w, y + h]], np.float32)
        if len(truth) and box_iou(box, truth).max() > 0:
            continue
        out.append(box[0])
    return np.array(out, np.float32).reshape(-1, 4)


def mine(
    detector: DetectorRunner,
    classifier_onnx: Path,
    spec: ClassifierSpec,
    photos: Sequence[Path],
    cfg: VerifierConfig,
    threads: int | None = None,
) -> MinedCrops:
    """Served crops of hands and non-hands on boxed photos (YOLO labels beside them), through
    the frozen classifier: its pooled features and whether each is a hand."""
    session, feature = _pooled_session(classifier_onnx, threads)
    detector.spec = replace(detector.spec, conf_threshold=cfg.min_score)
    rng = np.random.default_rng(cfg.seed)
    features: list[NDArray[np.float32]] = []
    labels: list[NDArray[np.bool_]] = []
    counts: Counter[str] = Counter()
    for path in tqdm(photos, desc="verifier crops", unit="photo"):
        try:
            image = load_image(path)
        except (InvalidImageError, OSError):
            counts["unreadable_photo"] += 1
            continue
        height, width = image.shape[:2]
        truth = read_yolo_labels(label_path_for(path), width, height)
        found, _ = detect_hands(detector, image)
        found = found[: cfg.max_boxes]
        background = random_background_boxes(rng, truth, width, height, cfg.random_boxes)
        boxes = np.concatenate([found, truth, background]).astype(np.float32)
        if not len(boxes):
            continue
        overlap = box_iou(boxes, truth).max(axis=1) if len(truth) else np.zeros(len(boxes))
        hand = overlap >= cfg.hand_iou
        usable = hand | (overlap < cfg.background_iou)
        counts["ambiguous_boxes"] += int((~usable).sum())
        boxes, hand = boxes[usable], hand[usable]
        if not len(boxes):
            continue
        # The served crops (what prepare_hands cuts), in the boxes' own order.
        batch = crops_to_batch(
            expanded_crops(image, boxes, spec.crop), spec.input_size, spec.mean, spec.std
        )
        (pooled,) = session.run([feature], {spec.input_name: batch})
        features.append(np.asarray(pooled, np.float32).reshape(len(boxes), -1))
        labels.append(hand)
        counts["photos"] += 1
    if not features:
        raise ValueError("no boxed photo gave a crop to fit the verifier on")
    is_hand = np.concatenate(labels)
    counts["hands"], counts["not_hands"] = int(is_hand.sum()), int((~is_hand).sum())
    return MinedCrops(np.concatenate(features), is_hand, counts)


def _pooled_session(classifier_onnx: Path, threads: int | None) -> tuple[Any, str]:
    # The features of each crop as it is (a test-time flip would pair rows of two images).
    model = strip_flip(onnx.load(str(classifier_onnx)))
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "classifier_features.onnx"
        probe.write_bytes(with_feature_output(model))
        return make_session(probe, threads), feature_tensor(model)


def crop_rows(crops_dir: Path, split: str, per_class: int, seed: int) -> list[dict[str, str]]:
    """At most ``per_class`` rows of each label of a crops manifest's ``split``, drawn at
    random (seeded), in manifest order."""
    rows = read_crop_manifest(crops_dir, split)
    by_label: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_label.setdefault(row["label"], []).append(i)
    rng = np.random.default_rng(seed)
    chosen = sorted(
        int(i)
        for indices in by_label.values()
        for i in rng.choice(indices, min(per_class, len(indices)), replace=False)
    )
    if not chosen:
        raise ValueError(f"split {split!r} of {crops_dir} holds no crop")
    return [rows[i] for i in chosen]


def crop_features(
    classifier_onnx: Path,
    spec: ClassifierSpec,
    crops_dir: Path,
    rows: Sequence[dict[str, str]],
    view: ServedView,
    threads: int | None = None,
    batch_size: int = 64,
) -> NDArray[np.float32]:
    """Pooled features of labelled hand crops, ``tight_box`` ones shown through ``view`` (the
    served geometry); ``[len(rows), D]``."""
    session, feature = _pooled_session(classifier_onnx, threads)
    out = []
    for batch in crop_batches(crops_dir, rows, view, spec, batch_size):
        (pooled,) = session.run([feature], {spec.input_name: batch})
        out.append(np.asarray(pooled, np.float32).reshape(len(batch), -1))
    return np.concatenate(out)


def crop_batches(
    crops_dir: Path,
    rows: Sequence[dict[str, str]],
    view: ServedView,
    spec: ClassifierSpec,
    batch_size: int = 64,
) -> Iterator[NDArray[np.float32]]:
    """Classifier input batches of a crops manifest's rows, in order; ``tight_box`` crops shown
    through ``view`` (the served geometry)."""
    for start in tqdm(range(0, len(rows), batch_size), desc="hand crops", unit="batch"):
        images = []
        for row in rows[start : start + batch_size]:
            crop = load_image(Path(crops_dir) / row["path"])
            images.append(view(crop) if row.get("crop") == TIGHT_BOX else crop)
        yield crops_to_batch(images, spec.input_size, spec.mean, spec.std)


def kept_shares(
    hand: NDArray[np.float32], labels: Sequence[str], thresholds: Sequence[float]
) -> dict[float, dict[str, float]]:
    """Share of each label's crops whose ``hand`` probability is at or above each threshold."""
    names = np.asarray(labels)
    return {
        t: {
            str(label): float((hand[names == label] >= t).mean())
            for label in sorted(set(names.tolist()))
        }
        for t in thresholds
    }


def fit_logistic(
    features: NDArray[np.float32], is_hand: NDArray[np.bool_], l2: float
) -> tuple[NDArray[np.float32], float]:
    """Weights ``[D]`` and bias on the raw features: fitted on standardised ones (L2 ``l2``,
    the two classes weighted equally, L-BFGS), then folded back."""
    import torch

    if is_hand.all() or not is_hand.any():
        raise ValueError("the verifier needs crops of hands and of non-hands")
    x = torch.from_numpy(np.asarray(features, np.float32))
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    y = torch.from_numpy(is_hand.astype(np.float32))
    layer = torch.nn.Linear(x.shape[1], 1)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    pos_weight = (1 - y).sum() / y.sum()
    optimiser = torch.optim.LBFGS(layer.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(
                layer(x)[:, 0], y, pos_weight=pos_weight
            )
            + l2 * layer.weight.pow(2).sum()
        )
        loss.backward()
        return loss

    optimiser.step(closure)
    w = (layer.weight.detach()[0] / std).numpy().astype(np.float32)
    b = float(layer.bias.detach()[0] - (layer.weight.detach()[0] * mean / std).sum())
    return w, b


VERIFIER_NODES = ("verifier.score", "verifier.logit", HAND_OUTPUT)
VERIFIER_WEIGHTS = ("verifier.weight", "verifier.bias")


def strip_verifier(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` without the verifier ``add_verifier_output`` added (if any): the
    classifier as trained (a test-time flip around it stays)."""
    if has_flip(model):
        return add_flip(strip_verifier(strip_flip(model)))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    kept_nodes = [n for n in graph.node if not set(n.output) & set(VERIFIER_NODES)]
    kept_weights = [i for i in graph.initializer if i.name not in VERIFIER_WEIGHTS]
    kept_outputs = [o for o in graph.output if o.name != HAND_OUTPUT]
    del graph.node[:], graph.initializer[:], graph.output[:]
    graph.node.extend(kept_nodes)
    graph.initializer.extend(kept_weights)
    graph.output.extend(kept_outputs)
    return out


def add_verifier_output(
    model: onnx.ModelProto, weights: NDArray[np.float32], bias: float
) -> onnx.ModelProto:
    """A copy of ``model`` with a second output ``hand`` = sigmoid(features . w + b), [N, 1];
    a verifier it already has is replaced. It goes on the network as trained: a test-time flip
    around it is put back around both (the hand probability is then averaged too)."""
    if has_flip(model):
        return add_flip(add_verifier_output(strip_flip(model), weights, bias))
    out = strip_verifier(model)
    feature = feature_tensor(out)
    width = feature_width(out)
    if weights.shape != (width,):
        raise ValueError(f"verifier weights {weights.shape} do not fit {width} features")
    graph = out.graph
    graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(weights.reshape(width, 1), "verifier.weight"),
            onnx.numpy_helper.from_array(np.array([bias], np.float32), "verifier.bias"),
        ]
    )
    graph.node.extend(
        [
            onnx.helper.make_node("MatMul", [feature, "verifier.weight"], ["verifier.score"]),
            onnx.helper.make_node("Add", ["verifier.score", "verifier.bias"], ["verifier.logit"]),
            onnx.helper.make_node("Sigmoid", ["verifier.logit"], [HAND_OUTPUT]),
        ]
    )
    batch = graph.output[0].type.tensor_type.shape.dim[0]
    hand = onnx.helper.make_tensor_value_info(HAND_OUTPUT, onnx.TensorProto.FLOAT, [None, 1])
    hand.type.tensor_type.shape.dim[0].CopyFrom(batch)
    graph.output.append(hand)
    onnx.checker.check_model(out)
    return out


def separation(
    scores: NDArray[np.float32], is_hand: NDArray[np.bool_], threshold: float
) -> dict[str, Any]:
    kept = scores >= threshold
    return {
        "threshold": threshold,
        "hands": int(is_hand.sum()),
        "hands_kept": int((kept & is_hand).sum()),
        "not_hands": int((~is_hand).sum()),
        "not_hands_rejected": int((~kept & ~is_hand).sum()),
    }


def train_verifier(
    classifier_dir: Path,
    detector: DetectorRunner,
    train_photos: Sequence[Path],
    out_dir: Path,
    cfg: VerifierConfig,
    val_photos: Sequence[Path] = (),
    threads: int | None = None,
    crops_dir: Path | None = None,
    context_dirs: Sequence[Path] = (),
) -> dict[str, Any]:
    """Fit the verifier on ``train_photos`` (and the ``train`` hand crops of ``crops_dir``,
    shown over the scenes of ``context_dirs``) and write the classifier with it to ``out_dir``
    (ONNX + JSON; any other files of the folder are copied along, e.g. labels)."""
    import torch

    classifier_dir, out_dir = Path(classifier_dir), Path(out_dir)
    # A classifier that has a verifier gets it replaced (its features are the same).
    spec = read_classifier_spec(classifier_dir / CLASSIFIER_JSON)
    onnx_path = classifier_dir / CLASSIFIER_ONNX
    train = mine(detector, onnx_path, spec, train_photos, cfg, threads)
    features, is_hand = train.features, train.is_hand
    report: dict[str, Any] = {"config": asdict(cfg), "train": dict(train.counts)}
    if crops_dir is not None:
        context = SceneContext(list(context_dirs)) if context_dirs else None
        view = ServedView(context=context)
        torch.manual_seed(cfg.seed)  # ServedView draws from torch's generator
        rows = crop_rows(crops_dir, "train", cfg.crops_per_class, cfg.seed)
        hands = crop_features(onnx_path, spec, crops_dir, rows, view, threads)
        features = np.concatenate([features, hands])
        is_hand = np.concatenate([is_hand, np.ones(len(hands), bool)])
        report["train"]["hand_crops"] = len(hands)
        report["train"]["hand_crop_labels"] = dict(Counter(r["label"] for r in rows))
    weights, bias = fit_logistic(features, is_hand, cfg.l2)
    report["train_separation"] = separation(
        _probabilities(features, weights, bias), is_hand, cfg.threshold
    )
    if val_photos:
        val = mine(detector, onnx_path, spec, val_photos, cfg, threads)
        report["val"] = dict(val.counts)
        report["val_separation"] = separation(
            _probabilities(val.features, weights, bias), val.is_hand, cfg.threshold
        )
    if crops_dir is not None and val_photos:
        report["val_crops_kept"] = crops_kept(
            onnx_path, spec, crops_dir, weights, bias, cfg.threshold, threads
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve() != classifier_dir.resolve():
        for item in classifier_dir.iterdir():
            if item.is_file() and item.name not in (CLASSIFIER_ONNX, CLASSIFIER_JSON):
                shutil.copy2(item, out_dir / item.name)
    model = add_verifier_output(onnx.load(str(onnx_path)), weights, bias)
    onnx.save(model, str(out_dir / CLASSIFIER_ONNX))
    write_spec(
        replace(spec, verifier=VerifierSpec(cfg.threshold, HAND_OUTPUT)), out_dir / CLASSIFIER_JSON
    )
    (out_dir / "verifier_report.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return report


def crops_kept(
    classifier_onnx: Path,
    spec: ClassifierSpec,
    crops_dir: Path,
    weights: NDArray[np.float32],
    bias: float,
    threshold: float,
    threads: int | None = None,
    split: str = "val",
) -> dict[str, float]:
    """Share of each label's hand crops of ``split`` the verifier keeps at ``threshold``, shown
    as the classifier's evaluation shows them (``ServedView.deterministic``): every gesture
    must stay a hand."""
    rows = read_crop_manifest(crops_dir, split)
    view = ServedView.deterministic(spec.crop)
    hand = _probabilities(
        crop_features(classifier_onnx, spec, crops_dir, rows, view, threads), weights, bias
    )
    shares = kept_shares(hand, [r["label"] for r in rows], [threshold])[threshold]
    return {label: round(share, 4) for label, share in shares.items()}


def _probabilities(
    features: NDArray[np.float32], weights: NDArray[np.float32], bias: float
) -> NDArray[np.float32]:
    return (1.0 / (1.0 + np.exp(-(features @ weights + bias)))).astype(np.float32)


def served_hands(
    models_dir: Path, threads: int | None = None
) -> tuple[Callable[[NDArray[np.uint8]], tuple[NDArray[np.float32], NDArray[np.float32]]], float]:
    """What the server returns as hands for a models folder whose classifier has a verifier:
    the detector's boxes at its threshold that the verifier keeps, as a ``detect`` for
    ``evaluate_detector`` (with the served threshold to score them at)."""
    classifier = load_classifier(models_dir, threads)
    if classifier.spec.verifier is None:
        raise ValueError(f"the classifier in {models_dir} has no verifier")
    detector = load_detector(models_dir, threads)

    def detect(image: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        image = check_image_array(image)
        boxes, scores = detect_hands(detector, image)
        hands = prepare_hands(image, boxes, scores, classifier.spec, max(len(boxes), 1))
        _, hand = classifier.logits_and_hand(hands.batch)
        keep = verified(hand, classifier.spec)
        assert keep is not None
        return hands.boxes[keep], hands.scores[keep]

    return detect, detector.spec.conf_threshold
