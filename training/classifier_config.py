"""The gesture classifier's training configuration (``gesture-train train-classifier``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gesture_recognition.training.pretrained import DEFAULT_ARCH

Balance = Literal["sampler", "loss", "none"]
TightCrops = Literal["served", "stretch"]


@dataclass
class ClassifierTrainConfig:
    crops_dir: Path
    out_dir: Path
    label_map: str | Path = "mcs2021"
    arch: str = DEFAULT_ARCH
    pretrained: bool = True
    input_size: int = 224
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    drop_rate: float = 0.2
    balance: Balance = "sampler"
    patience: int = 5  # epochs without a better validation macro-F1 before stopping
    seed: int = 0
    deterministic: bool = True
    workers: int = 2
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: Path | None = None  # a last.pt (or the out_dir holding one) to continue from
    export: bool = True
    export_dir: Path | None = None  # default <out_dir>/onnx
    verify_samples: int = 32  # validation crops the ONNX export is checked on
    progress: bool = True
    # ``tight_box`` rows (ready-made tight hand crops): shown in the served crop geometry
    # (``served``, ServedView) or stretched to the input as they are (``stretch``).
    tight_crops: TightCrops = "served"
    # Boxed photos of people (``images/train`` folders of detector datasets): a share
    # ``context_share`` of the served views shows the tight crop over one of their hands, the
    # photo around it as margin (training.scene_context); empty: margins from the crop only.
    context_scenes: list[str] = field(default_factory=list)
    context_share: float = 0.5
    # Balanced draws per epoch (None: as many as training rows): a large set in shorter epochs,
    # so validation, early stopping and checkpoints come more often.
    samples_per_epoch: int | None = None
    # Blocks (after the stem) left as pretrained: their features are generic, and on a CPU
    # their backward pass is most of a step's cost at full resolution.
    freeze_blocks: int = 0
    # NHWC convolutions: ~1.5x faster training steps on this CPU (oneDNN), same results.
    channels_last: bool = True

    def __post_init__(self) -> None:
        self.crops_dir = Path(self.crops_dir)
        self.out_dir = Path(self.out_dir)
        if self.resume is not None:
            self.resume = Path(self.resume)
        if self.export_dir is not None:
            self.export_dir = Path(self.export_dir)
        if self.tight_crops not in ("served", "stretch"):
            raise ValueError(f"tight_crops must be served or stretch, got {self.tight_crops!r}")
        self.context_scenes = [str(p) for p in self.context_scenes]
        if self.context_scenes and self.tight_crops != "served":
            raise ValueError("context_scenes needs tight_crops='served' (they fill its margin)")
        if not 0.0 <= self.context_share <= 1.0:
            raise ValueError(f"context_share must be in [0, 1], got {self.context_share}")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {self.samples_per_epoch}")
        if self.samples_per_epoch is not None and self.balance != "sampler":
            raise ValueError("samples_per_epoch needs balance='sampler' (its balanced draws)")
        if self.freeze_blocks < 0:
            raise ValueError(f"freeze_blocks must be >= 0, got {self.freeze_blocks}")
        if self.balance not in ("sampler", "loss", "none"):
            raise ValueError(f"balance must be sampler, loss or none, got {self.balance!r}")
        for name in ("input_size", "epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
