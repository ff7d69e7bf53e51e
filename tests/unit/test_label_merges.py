"""Label-map merges: the HaGRID classifier answered in the MachinesCanSee map.

The hagrid map must be exactly the labels of the real ``hagrid_hand_crops`` manifest, and the
mcs2021 merge must name every one of them; the merged network (``classifier_merge``) must give
the summed probabilities.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.labels import LabelMap, load_label_map
from gesture_recognition.training.classifier_merge import MergedClassifier, merge_classifier

MCS_GESTURES = {"stop": "stop", "peace": "victory", "mute": "mute", "ok": "ok", "like": "like"}


def manifest_labels(root: Path) -> set[str]:
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as f:
        return {row["label"] for row in csv.DictReader(f)}


def test_hagrid_map_is_the_hand_crops_labels(shared_data: Path) -> None:
    hagrid = load_label_map("hagrid")
    assert set(hagrid.classes) == manifest_labels(shared_data / "hagrid_hand_crops")
    assert list(hagrid.classes) == sorted(hagrid.classes)  # a stable, documented order
    # Every label of the 19-class scene photos is known too (the rest via other_gesture).
    scenes = manifest_labels(shared_data / "hagrid_crops")
    assert all(hagrid.contains(label) for label in scenes)
    assert {hagrid.canonical(x) for x in scenes - set(hagrid.classes)} == {"other_gesture"}


def test_mcs2021_merge_names_every_hagrid_class() -> None:
    hagrid, mcs = load_label_map("hagrid"), load_label_map("mcs2021")
    matrix = mcs.merge_matrix(hagrid)
    assert matrix.shape == (hagrid.num_classes, mcs.num_classes) and matrix.dtype == np.float32
    assert np.array_equal(matrix.sum(axis=1), np.ones(hagrid.num_classes))
    for i, name in enumerate(hagrid.classes):
        target = mcs.classes[int(matrix[i].argmax())]
        expected = MCS_GESTURES.get(name, name if name == "dislike" else "no_gesture")
        assert target == expected, name
    # Every MachinesCanSee class is reachable: no column a merged classifier can never answer.
    assert (matrix.sum(axis=0) > 0).all()
    # Probabilities stay probabilities.
    probs = np.random.default_rng(0).dirichlet(np.ones(hagrid.num_classes), size=5)
    assert np.allclose((probs @ matrix).sum(axis=1), 1.0)


def test_answer_for_classes_aliases_and_merges() -> None:
    mcs = load_label_map("mcs2021")
    assert mcs.answer_for("stop") == "stop"
    assert mcs.answer_for("peace") == "victory"  # alias
    assert mcs.answer_for("palm") == "no_gesture"  # merge from hagrid
    assert mcs.answer_for("stop_inverted") == "no_gesture"
    assert mcs.answer_for("other_gesture") == "no_gesture"
    assert mcs.answer_for("3-hand") is None
    assert load_label_map("hagrid").answer_for("victory") is None  # no merge the other way


def test_merge_errors_name_what_is_missing() -> None:
    hagrid, mcs = load_label_map("hagrid"), load_label_map("mcs2021")
    with pytest.raises(ValueError, match="no merge from 'mcs2021'"):
        hagrid.merge_matrix(mcs)
    partial = LabelMap.from_dict({**mcs.to_dict(), "merges": {"hagrid": {"stop": "stop"}}})
    with pytest.raises(ValueError, match="palm"):
        partial.merge_matrix(hagrid)
    with pytest.raises(ValueError, match="not a class"):
        LabelMap.from_dict({"classes": ["a", "b"], "merges": {"x": {"c": "nope"}}})
    with pytest.raises(ValueError, match="merges"):
        LabelMap.from_dict({"classes": ["a"], "merges": {"x": ["a"]}})


def test_merges_survive_json(tmp_path: Path) -> None:
    mcs = load_label_map("mcs2021")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(mcs.to_dict()), encoding="utf-8")
    again = load_label_map(path)
    assert again == mcs and again.merges["hagrid"]["palm"] == "no_gesture"
    # A map without merges writes none (older readers see the old format).
    assert "merges" not in load_label_map("finger_count").to_dict()


class Fixed(nn.Module):
    """Logits given in advance, whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[: len(x)]


def test_merged_classifier_sums_probabilities() -> None:
    hagrid, mcs = load_label_map("hagrid"), load_label_map("mcs2021")
    logits = torch.randn(4, hagrid.num_classes, generator=torch.Generator().manual_seed(0))
    spec = ClassifierSpec(label_map=hagrid, input_size=32)
    merged, merged_spec = merge_classifier(Fixed(logits), spec, mcs)
    assert isinstance(merged, MergedClassifier) and not merged.training
    assert merged_spec.label_map == mcs and merged_spec.input_size == spec.input_size
    assert merged_spec.mean == spec.mean and merged_spec.crop == spec.crop
    out = merged(torch.zeros(4, 3, 32, 32))
    assert out.shape == (4, mcs.num_classes)
    expected = torch.softmax(logits, 1).numpy() @ mcs.merge_matrix(hagrid)
    # The server softmaxes the output: softmax(log p) == p when p sums to one.
    np.testing.assert_allclose(torch.softmax(out, 1).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(out.exp().numpy(), expected, atol=1e-6)
    # palm (a hagrid class) adds to no_gesture, not to stop.
    palm = torch.full((1, hagrid.num_classes), -20.0)
    palm[0, hagrid.index("palm")] = 20.0
    answer = MergedClassifier(Fixed(palm), mcs.merge_matrix(hagrid))(torch.zeros(1, 3, 8, 8))
    assert mcs.classes[int(answer.argmax())] == "no_gesture"


def test_uniform_prior_averages_each_group() -> None:
    """The balanced training draws 8 of 14 classes into no_gesture: the sum starts it at 8/14;
    the uniform prior divides each group by its size (Bayes' rule with 1/7 a served class)."""
    hagrid, mcs = load_label_map("hagrid"), load_label_map("mcs2021")
    summed, uniform = mcs.merge_matrix(hagrid), mcs.merge_matrix(hagrid, "uniform")
    assert np.array_equal(uniform > 0, summed > 0)
    np.testing.assert_allclose(uniform.sum(axis=0), np.ones(mcs.num_classes), atol=1e-6)
    assert uniform[hagrid.index("palm"), mcs.index("no_gesture")] == pytest.approx(1 / 8)
    # like at 0.4, the other 0.6 spread over six classes merged into no_gesture.
    probs = np.zeros(hagrid.num_classes)
    probs[hagrid.index("like")] = 0.4
    for name in ("call", "fist", "one", "rock", "palm", "other_gesture"):
        probs[hagrid.index(name)] = 0.1
    assert mcs.classes[int((probs @ summed).argmax())] == "no_gesture"
    assert mcs.classes[int((probs @ uniform).argmax())] == "like"
    with pytest.raises(ValueError, match="merge prior must be one of"):
        mcs.merge_matrix(hagrid, "even")


def test_remerge_served_changes_only_the_prior(tmp_path: Path) -> None:
    import onnxruntime as ort

    from gesture_recognition.artifacts import CLASSIFIER_JSON, CLASSIFIER_ONNX
    from gesture_recognition.artifacts import read_classifier_spec as read_spec
    from gesture_recognition.export.onnx_export import export_classifier
    from gesture_recognition.training.classifier_merge import remerge_served

    hagrid, mcs = load_label_map("hagrid"), load_label_map("mcs2021")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 14)
    ).eval()
    merged, spec = merge_classifier(net, ClassifierSpec(label_map=hagrid, input_size=16), mcs)
    export_classifier(merged, spec, tmp_path / "sum", max_batch=4)
    assert read_spec(tmp_path / "sum" / CLASSIFIER_JSON).merge_prior == "training"

    remerge_served(tmp_path / "sum", "uniform", tmp_path / "uniform")
    remerge_served(tmp_path / "uniform", "training", tmp_path / "back")
    assert read_spec(tmp_path / "uniform" / CLASSIFIER_JSON).merge_prior == "uniform"
    x = np.random.default_rng(1).normal(size=(3, 3, 16, 16)).astype(np.float32)

    def served(folder: str) -> np.ndarray:
        session = ort.InferenceSession(str(tmp_path / folder / CLASSIFIER_ONNX))
        logits = session.run(None, {"input": x})[0]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    fine = torch.softmax(net(torch.from_numpy(x)), 1).detach().numpy()
    mean = fine @ mcs.merge_matrix(hagrid, "uniform")
    np.testing.assert_allclose(served("uniform"), mean / mean.sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(served("back"), served("sum"), atol=1e-6)

    plain = tmp_path / "plain"
    export_classifier(net, ClassifierSpec(label_map=hagrid, input_size=16), plain, max_batch=4)
    with pytest.raises(ValueError, match="not a classifier served through a merge"):
        remerge_served(plain, "uniform", tmp_path / "x")


def test_merge_prior_in_the_spec_json() -> None:
    mcs = load_label_map("mcs2021")
    spec = ClassifierSpec(label_map=mcs, input_size=32, merge_prior="uniform")
    assert ClassifierSpec.from_dict(spec.to_dict()).merge_prior == "uniform"
    assert "merge_prior" not in ClassifierSpec(label_map=mcs).to_dict()  # older files: none
    with pytest.raises(ValueError, match="merge_prior must be one of"):
        ClassifierSpec.from_dict({**spec.to_dict(), "merge_prior": "even"})
