"""Classifier training options for HaGRID's tight hand crops: the served view of ``tight_box``
rows, balanced epochs of a chosen size, frozen pretrained blocks, channels-last; and the
HaGRID classifier derived into the MachinesCanSee label map (``derive-classifier``).

The tiny run trains on real ``hagrid_hand_crops`` imported by ``import-crops`` (CPU, seconds).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from gesture_recognition.artifacts import read_classifier_spec
from gesture_recognition.boxes import CropConfig
from gesture_recognition.classifier_input import crops_to_batch
from gesture_recognition.images import load_image
from gesture_recognition.labels import load_label_map
from gesture_recognition.runtime import make_session
from gesture_recognition.training.classifier import (
    ClassifierTrainConfig,
    DistContext,
    TrainedClassifier,
    _train_sampler,
    train_classifier,
)
from gesture_recognition.training.classifier_data import CropDataset, CropRecord
from gesture_recognition.training.cli import main
from gesture_recognition.training.crop_import import import_crops, merge_crop_folders
from gesture_recognition.training.crops import TIGHT_BOX
from gesture_recognition.training.pretrained import create_classifier, freeze_blocks
from gesture_recognition.training.served_view import ServedView

from .hagrid_hand_crops import link_crops, real_rows
from .tiny_yolo_data import tiny_yolo_data

LABELS = ("like", "palm", "peace")
PER_SPLIT = {"train": 4, "val": 2, "test": 1}


@pytest.fixture(scope="module")
def tight_crops(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real HaGRID hand crops (tight boxes) in train/val/test, via import-crops + merge-crops."""
    real, rows = real_rows(shared_data)
    base = tmp_path_factory.mktemp("tight")
    folders = []
    for split, count in PER_SPLIT.items():
        src = base / f"src_{split}"
        chosen = []
        for label in LABELS:
            offset = list(PER_SPLIT).index(split) * 10
            chosen += [r for r in rows if r["label"] == label][offset : offset + count]
        link_crops(real, chosen, src)
        import_crops(src, base / f"part_{split}", load_label_map("hagrid"), "hhc", split=split)
        folders.append(base / f"part_{split}")
    merge_crop_folders(folders, base / "crops")
    return base / "crops"


def test_options_are_checked(tmp_path: Path) -> None:
    bad_options: list[dict[str, object]] = [
        {"tight_crops": "squash"},
        {"samples_per_epoch": 0},
        {"freeze_blocks": -1},
        {"context_share": 1.5},
        {"context_scenes": [tmp_path], "tight_crops": "stretch"},  # no margin to fill
    ]
    for bad in bad_options:
        with pytest.raises(ValueError):
            ClassifierTrainConfig(tmp_path, tmp_path / "out", **bad)  # type: ignore[arg-type]


def test_samples_per_epoch_is_the_balanced_epoch_size(tmp_path: Path) -> None:
    labels = [0] * 30 + [1] * 3
    cfg = ClassifierTrainConfig(tmp_path, tmp_path / "out", samples_per_epoch=10)
    sampler = _train_sampler(cfg, labels, DistContext())
    assert len(sampler) == 10 and len(list(sampler)) == 10
    default = ClassifierTrainConfig(tmp_path, tmp_path / "out")
    assert len(_train_sampler(default, labels, DistContext())) == len(labels)
    halves = [_train_sampler(cfg, labels, DistContext(rank=r, world_size=2)) for r in (0, 1)]
    assert [len(h) for h in halves] == [5, 5]


def test_crop_dataset_shows_only_tight_boxes_in_the_served_view(tight_crops: Path) -> None:
    with (tight_crops / "manifest.csv").open(newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    path = tight_crops / row["path"]
    crop = load_image(path)
    records = [
        CropRecord(path, "like", 0, "g", "s", crop=TIGHT_BOX),
        CropRecord(path, "like", 0, "g", "s", crop="topmost_hand"),
    ]
    view = ServedView.deterministic(CropConfig())
    data = CropDataset(records, lambda image: torch.from_numpy(image.copy()), view)
    tight, _ = data[0]
    cut, _ = data[1]
    side = round(max(crop.shape[:2]) * 1.2)
    assert tuple(tight.shape) == (side, side, 3) and np.array_equal(tight.numpy(), view(crop))
    assert np.array_equal(cut.numpy(), crop)  # crops cut by the serving code stay as they are
    plain = CropDataset(records, lambda image: torch.from_numpy(image.copy()))
    assert np.array_equal(plain[0][0].numpy(), crop)  # tight_crops="stretch"


def test_freeze_blocks_checks_the_model() -> None:
    model = create_classifier("tf_efficientnet_lite0", 3, pretrained=False)
    with pytest.raises(ValueError, match="blocks"):
        freeze_blocks(model, len(model.blocks) + 1)
    assert freeze_blocks(model, 0) == []
    frozen = freeze_blocks(model, 2)
    assert frozen == [model.conv_stem, model.bn1, model.blocks[0], model.blocks[1]]
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.blocks[2].parameters())
    with pytest.raises(ValueError, match="EfficientNet"):
        freeze_blocks(torch.nn.Sequential(torch.nn.Linear(2, 2)), 1)


@pytest.fixture(scope="module")
def tiny_run(tight_crops: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedClassifier:
    """One tiny HaGRID training run on the tight crops, half of them shown over the hands of two
    real boxed photos (the two tests below share it)."""
    scenes = tiny_yolo_data(tmp_path_factory.mktemp("scenes")).parent / "images" / "train"
    cfg = ClassifierTrainConfig(
        crops_dir=tight_crops,
        out_dir=tmp_path_factory.mktemp("tiny") / "run",
        context_scenes=[str(scenes)],
        label_map="hagrid",
        input_size=64,
        epochs=1,
        batch_size=4,
        workers=0,
        progress=False,
        verify_samples=3,
        tight_crops="served",
        samples_per_epoch=8,
        freeze_blocks=2,
        channels_last=True,
    )
    return train_classifier(cfg)


@pytest.mark.slow
def test_tiny_run_with_tight_crops_frozen_blocks_and_short_epochs(
    tiny_run: TrainedClassifier,
) -> None:
    result = tiny_run
    out = result.checkpoint_path.parent
    assert len(result.history) == 1 and result.checkpoint_path.is_file()
    assert result.onnx_path is not None
    # The ONNX export was checked against PyTorch on served views of validation crops.
    assert result.verification.samples == 3 and result.verification.max_abs_diff <= 1e-4
    assert result.test_metrics is not None
    assert result.test_metrics["samples"] == len(LABELS) * PER_SPLIT["test"]
    # No crop_config.json: the spec takes the served default crop.
    spec = read_classifier_spec(result.onnx_path.with_suffix(".json"))
    assert spec.crop == CropConfig() and spec.label_map.name == "hagrid"

    # samples_per_epoch: 8 draws of batch 4 are two optimiser steps.
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    steps = {float(v["step"]) for v in last["optimizer"]["state"].values()}
    assert steps == {2.0}
    assert last["config"]["freeze_blocks"] == 2 and last["config"]["samples_per_epoch"] == 8
    assert last["config"]["context_scenes"][0].endswith("images/train")

    # The stem and the first two blocks are still the pretrained ones, batch-norm statistics
    # included; the blocks after them did train.
    trained = torch.load(result.checkpoint_path, map_location="cpu", weights_only=True)
    fresh = create_classifier("tf_efficientnet_lite0", len(load_label_map("hagrid").classes))
    start = fresh.state_dict()
    frozen = [k for k in start if k.startswith(("conv_stem.", "bn1.", "blocks.0.", "blocks.1."))]
    assert frozen and all(torch.equal(trained[k], start[k]) for k in frozen)
    block2 = [k for k in start if k.startswith("blocks.2.")]
    assert any(not torch.equal(trained[k], start[k]) for k in block2 if k.endswith(".weight"))
    assert any(not torch.equal(trained[k], start[k]) for k in block2 if "running_mean" in k)


@pytest.mark.slow
def test_derive_classifier_serves_the_hagrid_model_in_mcs2021(
    tiny_run: TrainedClassifier, tight_crops: Path, tmp_path: Path
) -> None:
    hagrid_onnx = tiny_run.onnx_path
    assert hagrid_onnx is not None
    out = tmp_path / "mcs"
    argv = ["derive-classifier", "--checkpoint", str(tiny_run.checkpoint_path), "--out", str(out)]
    assert main(argv) == 0
    spec = read_classifier_spec(out / "gesture_classifier.json")
    hagrid, mcs = load_label_map("hagrid"), load_label_map("mcs2021")
    assert spec.label_map == mcs and spec.input_size == 64
    # Same crops, same preprocessing: the merged model's softmax is the summed probabilities.
    with (tight_crops / "manifest.csv").open(newline="", encoding="utf-8") as f:
        paths = [tight_crops / r["path"] for r in csv.DictReader(f)][:4]
    batch = crops_to_batch([load_image(p) for p in paths], 64, spec.mean, spec.std)
    (fine,) = make_session(hagrid_onnx).run(None, {"input": batch})
    (coarse,) = make_session(out / "gesture_classifier.onnx").run(None, {"input": batch})
    assert coarse.shape == (4, mcs.num_classes)

    def softmax(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    np.testing.assert_allclose(softmax(coarse), softmax(fine) @ mcs.merge_matrix(hagrid), atol=1e-5)
    # A target map without a merge from hagrid is refused in one line.
    assert main([*argv[:-2], "--out", str(tmp_path / "x"), "--label-map", "finger_count"]) == 2
