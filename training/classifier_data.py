"""Crops for classifier training: the manifest, the transforms, the dataset and samplers.

Everything here reads images lazily (paths only in memory) and draws its randomness from
``(seed, epoch)`` so that resumed runs repeat what an uninterrupted run would have done.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch.utils.data import Dataset, Sampler

from gesture_recognition.boxes import CropConfig
from gesture_recognition.classifier_input import normalize, resize_crop
from gesture_recognition.images import load_image
from gesture_recognition.labels import LabelMap
from gesture_recognition.training.crops import CROP_CONFIG, MANIFEST, TIGHT_BOX
from gesture_recognition.training.served_view import ServedView
from gesture_recognition.training.splits import groups_on_several_sides

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class CropRecord:
    path: Path
    label: str  # canonical class name
    index: int  # class index in the label map
    group: str
    source: str
    # What kind of crop (the manifest's ``crop`` column): ``topmost_hand`` (cut by the serving
    # code), ``whole_photo``, or ``tight_box`` (a hand's tight box, shown as the server would
    # cut it: see ServedView).
    crop: str = ""


@dataclass
class CropManifest:
    splits: dict[str, list[CropRecord]]
    skipped_labels: Counter[str] = field(default_factory=Counter)
    skipped_other: Counter[str] = field(default_factory=Counter)

    def summary(self, label_map: LabelMap) -> str:
        kept = ", ".join(f"{s} {len(self.splits[s])}" for s in SPLITS)
        lines = [f"crops: {kept}"]
        if self.skipped_labels:
            total = sum(self.skipped_labels.values())
            detail = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped_labels.items()))
            lines.append(
                f"skipped {total} rows with labels not in label map {label_map.name!r}: {detail}"
            )
        if self.skipped_other:
            detail = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped_other.items()))
            lines.append(f"skipped other rows: {detail}")
        return "\n".join(lines)


def read_crop_manifest(
    crops_dir: Path, label_map: LabelMap, check_files: bool = True
) -> CropManifest:
    """Rows of ``<crops_dir>/manifest.csv`` grouped by split, mapped through the label map."""
    crops_dir = Path(crops_dir)
    path = crops_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {crops_dir}: cut the crops first")
    manifest = CropManifest(splits={s: [] for s in SPLITS})
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing_cols = {"path", "label", "split"} - set(reader.fieldnames or [])
        if missing_cols:
            raise ValueError(f"{path} lacks the column(s) {', '.join(sorted(missing_cols))}")
        for row in reader:
            label, split = row["label"].strip(), row["split"].strip()
            if not label_map.contains(label):
                manifest.skipped_labels[label] += 1
                continue
            if split not in SPLITS:
                manifest.skipped_other[f"split {split!r}"] += 1
                continue
            image = crops_dir / row["path"]
            if check_files and not image.is_file():
                manifest.skipped_other["missing image"] += 1
                continue
            name = label_map.canonical(label)
            manifest.splits[split].append(
                CropRecord(
                    path=image,
                    label=name,
                    index=label_map.classes.index(name),
                    group=row.get("group") or row["path"],
                    source=row.get("source") or "",
                    crop=row.get("crop") or "",
                )
            )
    return manifest


def leaked_groups(manifest: CropManifest) -> set[str]:
    """Groups (video, person, session) that appear in more than one split."""
    rows = [(str(r.path), r.group, split) for split, recs in manifest.splits.items() for r in recs]
    return groups_on_several_sides(
        {path: split for path, _, split in rows}, {path: group for path, group, _ in rows}
    )


def read_crop_config(crops_dir: Path) -> CropConfig | None:
    path = Path(crops_dir) / CROP_CONFIG
    if not path.is_file():
        return None
    return CropConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))


# ------------------------------------------------------------------------------ transforms


class EvalTransform:
    """uint8 ``[h, w, 3]`` crop -> ``[3, S, S]`` tensor, exactly as the server prepares it."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)

    def __call__(self, crop: NDArray[np.uint8]) -> torch.Tensor:
        return torch.from_numpy(normalize(resize_crop(crop, self.size), self.mean, self.std))


def train_augmentations(size: int) -> list[Any]:
    """The random part of the training transform, applied to the uint8 crop (PIL image).

    No vertical flip and small rotations only: ``like`` and ``dislike`` are the same hand upside
    down. Horizontal flips are fine: a gesture means the same with either hand.
    """
    from torchvision.transforms import InterpolationMode, v2

    return [
        # Rotate first so the crop below trims most of the corners the rotation fills black.
        v2.RandomRotation(15, interpolation=InterpolationMode.BILINEAR),
        v2.RandomResizedCrop(size, scale=(0.75, 1.0), ratio=(0.8, 1.25), antialias=True),
        v2.RandomHorizontalFlip(p=0.5),
        v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
    ]


class TrainTransform:
    """Augment the uint8 crop, then the serving resize/normalize."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        from torchvision.transforms import v2

        self.augmentations = train_augmentations(size)
        self.augment = v2.Compose(self.augmentations)
        self.finish = EvalTransform(size, mean, std)

    def __call__(self, crop: NDArray[np.uint8]) -> torch.Tensor:
        augmented = np.asarray(self.augment(Image.fromarray(crop)), dtype=np.uint8)
        return self.finish(augmented)


# ------------------------------------------------------------------------ data & sampling


class CropDataset(Dataset[tuple[torch.Tensor, int]]):
    """Crops read lazily from disk: only paths and labels are held in memory.

    ``served_view`` (if given) turns ``tight_box`` rows into the served crop geometry first.
    """

    def __init__(
        self,
        records: Sequence[CropRecord],
        transform: Callable[[NDArray[np.uint8]], torch.Tensor],
        served_view: ServedView | None = None,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.served_view = served_view

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        record = self.records[i]
        crop = load_image(record.path)
        if self.served_view is not None and record.crop == TIGHT_BOX:
            crop = self.served_view(crop)
        return self.transform(crop), record.index


class BalancedSampler(Sampler[int]):
    """Draws rows with replacement, each with probability proportional to 1 / its class count.

    Every rank draws the same sequence from ``(seed, epoch)`` and keeps every world_size-th
    entry, so under DDP the ranks see disjoint shares of one balanced draw.
    """

    def __init__(
        self,
        labels: Sequence[int],
        num_samples: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        counts = Counter(labels)
        self.weights = torch.tensor([1.0 / counts[y] for y in labels], dtype=torch.double)
        total = num_samples or len(labels)
        self.per_rank = math.ceil(total / world_size)
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        draws = torch.multinomial(
            self.weights, self.per_rank * self.world_size, replacement=True, generator=g
        )
        return iter(draws[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return self.per_rank


def class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """``N / (K * n_c)`` per class present; 1 for classes without training rows."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    present = counts > 0
    w = np.ones(num_classes, dtype=np.float32)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return torch.from_numpy(w)


class ShuffleSampler(Sampler[int]):
    """A permutation per epoch from ``(seed, epoch)``: reproducible across resumes."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n
