"""The test-time flip inside a classifier graph (training/flip_tta.py): exactly the mean of the
network's answers on a crop and on its mirror image, names and shapes unchanged, removable,
kept around a verifier that train-verifier replaces, served by the pipeline as it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from gesture_recognition.artifacts import CLASSIFIER_JSON, CLASSIFIER_ONNX, read_classifier_spec
from gesture_recognition.decision import decide_hands
from gesture_recognition.hands import prepare_hands
from gesture_recognition.images import load_image
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.runtime import ClassifierRunner, make_session
from gesture_recognition.training import flip_tta
from gesture_recognition.training import verifier as ver
from gesture_recognition.training.cli import main
from tests.conftest import models_folder, sample_photos


def _outputs(path: Path, batch: np.ndarray) -> list[np.ndarray]:
    return list(make_session(path).run(["logits", "hand"], {"input": batch}))


@pytest.fixture(scope="module")
def flipped_dir(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flipped")
    source = repo_root / "models" / "hagrid"
    assert main(["flip-classifier", "--classifier-dir", str(source), "--out", str(out)]) == 0
    return out


def test_the_flipped_graph_answers_the_mean_over_the_mirror_image(
    repo_root: Path, flipped_dir: Path
) -> None:
    plain = repo_root / "models" / "hagrid" / CLASSIFIER_ONNX
    # An asymmetric batch: a left-right mirror changes it.
    batch = np.random.default_rng(0).random((3, 3, 160, 160), dtype=np.float32)
    mirrored = np.ascontiguousarray(batch[..., ::-1])
    assert not np.allclose(_outputs(plain, batch)[0], _outputs(plain, mirrored)[0], atol=1e-3)
    views = (_outputs(plain, batch), _outputs(plain, mirrored))
    expected = [(a + b) / 2 for a, b in zip(*views, strict=True)]
    got = _outputs(flipped_dir / CLASSIFIER_ONNX, batch)
    for want, have in zip(expected, got, strict=True):
        assert have.shape == want.shape
        np.testing.assert_allclose(have, want, atol=1e-5)
    # No hand in the photo: an empty batch in, empty outputs out.
    empty = _outputs(flipped_dir / CLASSIFIER_ONNX, np.zeros((0, 3, 160, 160), np.float32))
    assert [e.shape for e in empty] == [(0, 14), (0, 1)]


def test_the_flip_keeps_the_names_records_itself_and_comes_off(
    repo_root: Path, flipped_dir: Path
) -> None:
    original = onnx.load(str(repo_root / "models" / "hagrid" / CLASSIFIER_ONNX))
    flipped = onnx.load(str(flipped_dir / CLASSIFIER_ONNX))
    assert [i.name for i in flipped.graph.input] == ["input"]
    assert [o.name for o in flipped.graph.output] == ["logits", "hand"]
    assert flip_tta.has_flip(flipped) and not flip_tta.has_flip(original)
    assert flip_tta.strip_flip(flipped).SerializeToString() == original.SerializeToString()
    with pytest.raises(ValueError, match="already"):
        flip_tta.add_flip(flipped)
    spec = read_classifier_spec(flipped_dir / CLASSIFIER_JSON)
    shipped = read_classifier_spec(repo_root / "models" / "hagrid" / CLASSIFIER_JSON)
    assert spec.test_time_flip and not shipped.test_time_flip
    assert spec.to_dict() == {**shipped.to_dict(), "test_time_flip": True}


def test_opset_18_graphs_get_reduce_mean_axes_as_an_input(repo_root: Path, tmp_path: Path) -> None:
    model = onnx.load(str(repo_root / "models" / "hagrid" / CLASSIFIER_ONNX))
    model = onnx.version_converter.convert_version(model, 18)
    flipped = flip_tta.add_flip(model)
    means = [n for n in flipped.graph.node if n.op_type == "ReduceMean"]
    assert means and all(len(n.input) == 2 and not n.attribute[1:] for n in means)
    onnx.save(model, str(tmp_path / "plain.onnx"))
    onnx.save(flipped, str(tmp_path / "flipped.onnx"))
    batch = np.random.default_rng(1).random((2, 3, 160, 160), dtype=np.float32)
    mirrored = np.ascontiguousarray(batch[..., ::-1])
    plain = [_outputs(tmp_path / "plain.onnx", b) for b in (batch, mirrored)]
    got = _outputs(tmp_path / "flipped.onnx", batch)
    for i in range(2):
        np.testing.assert_allclose(got[i], (plain[0][i] + plain[1][i]) / 2, atol=1e-5)


def test_a_new_verifier_replaces_the_old_one_inside_the_flip(
    flipped_dir: Path, tmp_path: Path
) -> None:
    flipped = onnx.load(str(flipped_dir / CLASSIFIER_ONNX))
    weights = np.random.default_rng(2).normal(0, 0.01, 1280).astype(np.float32)
    rebuilt = ver.add_verifier_output(flipped, weights, 0.5)
    assert flip_tta.has_flip(rebuilt)
    assert [o.name for o in rebuilt.graph.output] == ["logits", "hand"]
    inner = flip_tta.strip_flip(rebuilt)
    assert len(ver.strip_verifier(inner).graph.node) == len(inner.graph.node) - 3
    onnx.save(rebuilt, str(tmp_path / "rebuilt.onnx"))
    onnx.save(inner, str(tmp_path / "inner.onnx"))
    probe = tmp_path / "features.onnx"
    probe.write_bytes(ver.with_feature_output(inner))
    batch = np.random.default_rng(3).random((2, 3, 160, 160), dtype=np.float32)
    mirrored = np.ascontiguousarray(batch[..., ::-1])
    feature = ver.feature_tensor(inner)
    # The verifier sees each view's own features; the served hand probability is their mean.
    hands = [
        1 / (1 + np.exp(-(make_session(probe).run([feature], {"input": b})[0] @ weights + 0.5)))
        for b in (batch, mirrored)
    ]
    _, hand = _outputs(tmp_path / "rebuilt.onnx", batch)
    np.testing.assert_allclose(hand[:, 0], (hands[0] + hands[1]) / 2, atol=1e-5)
    stripped = ver.strip_verifier(rebuilt)
    assert flip_tta.has_flip(stripped) and [o.name for o in stripped.graph.output] == ["logits"]


def test_the_pipeline_serves_a_flipped_classifier(
    repo_root: Path, flipped_dir: Path, tmp_path: Path
) -> None:
    models = models_folder(tmp_path / "models", repo_root / "models", flipped_dir)
    image = load_image(sample_photos()[0])
    served = GesturePipeline.from_dir(models, threads=1)
    result = served(image)
    assert len(result.hand_boxes) > 0
    # The same answer as the plain classifier's logits averaged over each crop's mirror image.
    plain = GesturePipeline.from_dir(repo_root / "models", threads=1)
    spec = read_classifier_spec(flipped_dir / CLASSIFIER_JSON)
    boxes, scores = plain.detect(image)
    hands = prepare_hands(image, boxes, scores, spec)
    views = [hands.batch, np.ascontiguousarray(hands.batch[..., ::-1])]
    plain_hagrid = ClassifierRunner(repo_root / "models/hagrid" / CLASSIFIER_ONNX, spec, 1)
    outputs = [plain_hagrid.logits_and_hand(v) for v in views]
    logits = (outputs[0][0] + outputs[1][0]) / 2
    hand = (outputs[0][1] + outputs[1][1]) / 2  # type: ignore[operator]
    _, decision = decide_hands(logits, hand, spec)
    assert result.gesture == decision.gesture
    np.testing.assert_allclose(result.probabilities, decision.probabilities, atol=1e-5)


def test_flip_classifier_refuses_bad_folders(flipped_dir: Path, tmp_path: Path) -> None:
    bad = ["flip-classifier", "--classifier-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main(bad) == 2  # no classifier there
    before = (flipped_dir / CLASSIFIER_ONNX).read_bytes()
    same = ["flip-classifier", "--classifier-dir", str(flipped_dir), "--out", str(flipped_dir)]
    assert main(same) == 2  # would overwrite the classifier it copies
    assert (flipped_dir / CLASSIFIER_ONNX).read_bytes() == before
