"""Gesture-classifier training on a small crops folder cut from the real HaGRID crops."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gesture_recognition.artifacts import read_classifier_spec
from gesture_recognition.classifier_input import crops_to_batch
from gesture_recognition.images import load_image
from gesture_recognition.labels import load_label_map
from gesture_recognition.runtime import make_session
from gesture_recognition.training.classification_metrics import (
    accuracy,
    confusion_matrix,
    macro_f1,
)
from gesture_recognition.training.classifier import (
    ClassifierTrainConfig,
    DistContext,
    _train_sampler,
    train_classifier,
)
from gesture_recognition.training.classifier_checkpoint import load_trained_classifier
from gesture_recognition.training.classifier_data import (
    BalancedSampler,
    EvalTransform,
    TrainTransform,
    read_crop_manifest,
    train_augmentations,
)

MCS_SOURCES = ("no_gesture", "stop", "peace", "mute", "ok", "like", "dislike")
UNKNOWN_SOURCES = ("call", "fist")  # HaGRID classes outside the MachinesCanSee label map
PER_SPLIT = {"train": 3, "val": 1, "test": 1}  # crops of each label in each split


def make_crops_folder(
    hagrid_crops: Path,
    out: Path,
    per_split: dict[str, int],
    labels: tuple[str, ...] = MCS_SOURCES + UNKNOWN_SOURCES,
    crop_scale: float | None = 1.3,
) -> Path:
    """A crops folder as ``training.crops.cut_crops`` writes it, from real HaGRID crops.

    ``per_split`` says how many crops of each label go to each split (PNG, like the cutter).
    """
    rows = []
    for label in labels:
        photos = sorted((hagrid_crops / label).glob("*.jpg"))
        needed = sum(per_split.values())
        assert len(photos) >= needed, f"{label}: {len(photos)} photos, need {needed}"
        it = iter(photos)
        for split, count in per_split.items():
            for _ in range(count):
                photo = next(it)
                rel = f"{split}/{label}/{photo.stem}.png"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.open(photo).convert("RGB").save(out / rel)
                rows.append(
                    {
                        "path": rel,
                        "label": label,
                        "split": split,
                        "group": photo.stem,
                        "source": f"hagrid_crops:{label}/{photo.name}",
                    }
                )
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split", "group", "source"])
        writer.writeheader()
        writer.writerows(rows)
    if crop_scale is not None:
        config = {"scale": crop_scale, "square": True}
        (out / "crop_config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def crops_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crops")
    return make_crops_folder(shared_data / "hagrid_crops", out, {"train": 3, "val": 1, "test": 1})


def test_unknown_labels_are_skipped_and_counted(crops_dir: Path, tmp_path: Path) -> None:
    with (crops_dir / "manifest.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # A second manifest over the same images, plus two rows the reader must also refuse: an
    # unknown split and a file that is not there.
    for row in rows:
        row["path"] = str(crops_dir / row["path"])  # absolute paths survive the join too
    with (tmp_path / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({**rows[0], "path": "train/like/missing.png", "label": "like"})
        writer.writerow({**rows[0], "split": "holdout"})

    label_map = load_label_map("mcs2021")
    manifest = read_crop_manifest(tmp_path, label_map)
    expected = Counter(r["label"] for r in rows if not label_map.contains(r["label"]))
    assert set(expected) == set(UNKNOWN_SOURCES)
    assert manifest.skipped_labels == expected
    assert manifest.skipped_other == Counter({"missing image": 1, "split 'holdout'": 1})
    kept = sum(len(v) for v in manifest.splits.values())
    assert kept == len(rows) - sum(expected.values())
    # HaGRID's peace is the label map's victory, with victory's index.
    victory = [r for r in manifest.splits["train"] if "/peace/" in str(r.path)]
    assert victory and {(r.label, r.index) for r in victory} == {
        ("victory", label_map.classes.index("victory"))
    }
    assert f"skipped {sum(expected.values())} rows" in manifest.summary(label_map)


def test_train_transform_never_flips_vertically() -> None:
    from torchvision.transforms import v2

    augs = train_augmentations(64)
    assert not any(isinstance(t, v2.RandomVerticalFlip) for t in augs)
    assert any(isinstance(t, v2.RandomHorizontalFlip) for t in augs)
    rotations = [t for t in augs if isinstance(t, v2.RandomRotation)]
    assert rotations and all(max(abs(d) for d in t.degrees) <= 15 for t in rotations)

    # Behaviour, not only configuration: a crop bright on top stays bright on top...
    torch.manual_seed(0)
    transform = TrainTransform(64, (0.5,) * 3, (0.5,) * 3)
    top = np.zeros((120, 100, 3), np.uint8)
    top[:60] = 220
    for _ in range(50):
        x = transform(top)
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32
        assert x[:, :24].mean() > x[:, 40:].mean()
    # ...while a crop bright on the left does get mirrored some of the time.
    left = np.zeros((100, 120, 3), np.uint8)
    left[:, :60] = 220
    mirrored = 0
    for _ in range(50):
        x = transform(left)
        mirrored += int(x[:, :, :24].mean() < x[:, :, 40:].mean())
    assert 5 <= mirrored <= 45


def test_eval_transform_is_the_serving_preprocessing(crops_dir: Path) -> None:
    manifest = read_crop_manifest(crops_dir, load_label_map("hagrid"))
    records = manifest.splits["val"][:4]
    crops = [load_image(r.path) for r in records]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    transform = EvalTransform(72, mean, std)
    ours = torch.stack([transform(c) for c in crops]).numpy()
    served = crops_to_batch(crops, 72, mean, std)
    assert np.array_equal(ours, served)


def test_balanced_sampler_evens_out_classes_and_shards_by_rank() -> None:
    labels = [0] * 90 + [1] * 10
    sampler = BalancedSampler(labels, num_samples=4000, seed=3)
    draws = list(sampler)
    rare = sum(labels[i] == 1 for i in draws) / len(draws)
    assert 0.4 < rare < 0.6  # 10 % of the rows, about half of the draws
    assert list(sampler) == draws  # same epoch, same draw
    sampler.set_epoch(1)
    assert list(sampler) != draws
    ranks = [BalancedSampler(labels, 4000, seed=3, rank=r, world_size=2) for r in (0, 1)]
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == 2000
    merged = [i for pair in zip(*shards, strict=True) for i in pair]
    assert merged == draws


def test_metrics_on_a_hand_checked_example() -> None:
    m = confusion_matrix(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 1]), 4)
    assert m.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert accuracy(m) == pytest.approx(3 / 5)
    # F1: class 0 2/3, class 1 2*2/(4+2), class 2 0; class 3 never seen: left out.
    assert macro_f1(m) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


@pytest.mark.slow
def test_tiny_training_run_exports_a_matching_onnx(crops_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = ClassifierTrainConfig(
        crops_dir=crops_dir,
        out_dir=out,
        label_map="mcs2021",
        input_size=64,
        epochs=1,
        batch_size=8,
        workers=0,
        progress=False,
        verify_samples=5,
    )
    result = train_classifier(cfg)
    assert result.checkpoint_path == out / "best.pt" and result.checkpoint_path.is_file()
    assert len(result.history) == 1
    assert result.onnx_path is not None and result.onnx_path.is_file()
    # export_classifier compared PyTorch and ONNX Runtime on the real validation crops.
    assert result.verification.samples == 5
    assert result.verification.max_abs_diff <= 1e-4
    assert result.verification.top1_agreement == 1.0

    # The exported spec carries the crop folder's crop config and timm's normalisation.
    spec = read_classifier_spec(result.onnx_path.with_suffix(".json"))
    assert spec.crop.scale == pytest.approx(1.3)
    assert spec.input_size == 64 and spec.mean == (0.5, 0.5, 0.5)
    assert spec.label_map.classes == load_label_map("mcs2021").classes

    # The checkpoint reloads to the same network, and ONNX agrees with it on real crops.
    model, loaded_spec = load_trained_classifier(result.checkpoint_path)
    assert loaded_spec == spec
    val = read_crop_manifest(crops_dir, spec.label_map).splits["val"]
    batch = crops_to_batch([load_image(r.path) for r in val], 64, spec.mean, spec.std)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(batch)).numpy()
    (onnx_logits,) = make_session(result.onnx_path).run(None, {"input": batch})
    assert np.abs(torch_logits - onnx_logits).max() <= 1e-4

    meta = json.loads((out / "best.json").read_text(encoding="utf-8"))
    per_label = sum(PER_SPLIT.values())
    assert meta["manifest"]["skipped_labels"] == {k: per_label for k in UNKNOWN_SOURCES}
    assert meta["test_metrics"]["samples"] == len(MCS_SOURCES) * PER_SPLIT["test"]
    assert meta["crop_config_source"] == "crop_config.json"

    # Resuming continues at the next epoch with the saved history.
    resumed = train_classifier(
        ClassifierTrainConfig(**{**cfg.__dict__, "epochs": 2, "resume": out, "export": False})
    )
    assert [h["epoch"] for h in resumed.history] == [0, 1]
    assert resumed.onnx_path is None


def test_distributed_ranks_split_the_rows_between_them(tmp_path: Path) -> None:
    """Under torchrun without class balancing, each rank gets its own share of the rows."""
    cfg = ClassifierTrainConfig(tmp_path, tmp_path / "out", balance="none", seed=3)
    labels = [0, 1, 2, 0, 1, 2, 0]
    shares = [list(_train_sampler(cfg, labels, DistContext(rank=r, world_size=2))) for r in (0, 1)]
    assert [len(s) for s in shares] == [4, 4]  # 7 rows padded to 8 so the ranks stay in step
    assert set(shares[0]) | set(shares[1]) == set(range(len(labels)))
