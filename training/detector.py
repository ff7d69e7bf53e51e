"""Train the hand detector with ultralytics YOLO, offline, resumable.

The default (YOLO26n at 320 px) is small enough for CPU serving; the original pipeline's
YOLOv5x stays available as ``--model yolov5xu.yaml``, and ``--model yolo26n-lite0.yaml`` puts
an ImageNet-pretrained EfficientNet-Lite0 under YOLO26n's neck and head (detector_backbones).
Models are built from their ``*.yaml`` (no pretrained download exists here); any ``*.pt``
given must be a local checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gesture_recognition.training.detector_backbones import (
    frozen_backbone_layers,
    project_model,
    register_backbones,
    require_lite0_backbone,
)
from gesture_recognition.training.offline import configure_offline

DEFAULT_MODEL = "yolo26n.yaml"
DEFAULT_IMGSZ = 320
# ultralytics' augmentation hyperparameters (docs.ultralytics.com/modes/train, "Augmentation
# settings") that ``--aug KEY=VALUE`` may set; anything else is refused by name rather than
# passed on, so a typo cannot silently train with the defaults.
AUGMENTATION_KEYS = (
    "hsv_h",
    "hsv_s",
    "hsv_v",
    "degrees",
    "translate",
    "scale",
    "shear",
    "perspective",
    "flipud",
    "fliplr",
    "bgr",
    "mosaic",
    "mixup",
    "cutmix",
    "copy_paste",
    "erasing",
    "close_mosaic",
)


def parse_augmentation(items: list[str] | None) -> dict[str, float]:
    """``["degrees=10", "flipud=0.2"]`` -> ``{"degrees": 10.0, "flipud": 0.2}``, checked."""
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in AUGMENTATION_KEYS:
            raise ValueError(
                f"--aug {item!r}: expected KEY=VALUE with KEY one of {', '.join(AUGMENTATION_KEYS)}"
            )
        try:
            out[key] = float(value)
        except ValueError as exc:
            raise ValueError(f"--aug {item!r}: {value!r} is not a number") from exc
    return out


@dataclass(frozen=True)
class DetectorTrainConfig:
    data: Path
    model: str = DEFAULT_MODEL
    imgsz: int = DEFAULT_IMGSZ
    epochs: int = 100
    # Wall-clock budget in hours; ultralytics then fits its schedule to it (None: use epochs).
    hours: float | None = None
    batch: int = 16
    device: str = "cpu"  # "0" or "0,1,2,3" trains on GPUs (DDP across several)
    project: Path = Path("runs/detector")
    name: str = "train"
    seed: int = 0
    patience: int = 30
    workers: int = 2
    fraction: float = 1.0
    plots: bool = True
    # ultralytics augmentation hyperparameters (AUGMENTATION_KEYS); unset ones keep its defaults.
    augment: Mapping[str, float] = field(default_factory=dict)
    lr0: float | None = None  # None: ultralytics' choice (its "auto" optimiser picks one)
    # None: ultralytics' 3 epochs, whose bias learning rate starts at 0.1: right from random
    # weights, a jolt to a detector being fine-tuned (0 skips it).
    warmup_epochs: float | None = None
    # The first N layers of the model YAML keep their weights (ultralytics' ``freeze``); 1 holds
    # a pretrained backbone that the YAML builds as one layer (yolo26n-lite0.yaml's layer 0).
    freeze: int | None = None
    # yolo26n-lite0 only: the backbone's stem and first N of its 7 stages keep their weights,
    # the later stages are fine-tuned with the neck and head (``frozen_backbone_layers``).
    freeze_blocks: int | None = None

    def __post_init__(self) -> None:
        if self.freeze is not None and self.freeze_blocks is not None:
            raise ValueError(
                "give freeze (whole layers) or freeze_blocks (backbone stages), not both"
            )
        if self.freeze_blocks is not None:
            frozen_backbone_layers(self.freeze_blocks)  # range check before any work

    def ultralytics_freeze(self) -> int | list[str] | None:
        """The value of ultralytics' ``freeze`` argument, None for its default (nothing)."""
        if self.freeze_blocks is not None:
            return frozen_backbone_layers(self.freeze_blocks)
        return self.freeze


def _check_model_source(model: str) -> None:
    if model.endswith(".pt") and not Path(model).is_file():
        raise FileNotFoundError(
            f"{model} is not a local file; weights cannot be downloaded here. Start from a "
            "model definition such as yolo26n.yaml, or give the path of a checkpoint."
        )


def train_detector(cfg: DetectorTrainConfig) -> Path:
    """Train and return the path of the best checkpoint."""
    configure_offline()
    _check_model_source(cfg.model)
    if not Path(cfg.data).is_file():
        raise FileNotFoundError(f"no data.yaml at {cfg.data}; run `gesture-train convert` first")
    register_backbones()
    from ultralytics import YOLO

    model = YOLO(project_model(cfg.model))
    if cfg.freeze_blocks is not None:
        require_lite0_backbone(model.model)
    started = time.time()
    model.train(
        data=str(Path(cfg.data).resolve()),
        imgsz=cfg.imgsz,
        epochs=cfg.epochs,
        time=cfg.hours,
        batch=cfg.batch,
        device=cfg.device,
        project=str(Path(cfg.project).resolve()),
        name=cfg.name,
        exist_ok=True,
        seed=cfg.seed,
        deterministic=True,
        patience=cfg.patience,
        workers=cfg.workers,
        fraction=cfg.fraction,
        plots=cfg.plots,
        amp=cfg.device != "cpu",
        verbose=True,
        **dict(cfg.augment),
        **({} if cfg.lr0 is None else {"lr0": cfg.lr0, "optimizer": "AdamW"}),
        **({} if cfg.warmup_epochs is None else {"warmup_epochs": cfg.warmup_epochs}),
        **({} if (freeze := cfg.ultralytics_freeze()) is None else {"freeze": freeze}),
    )
    _record_time(Path(cfg.project) / cfg.name, time.time() - started)
    return Path(cfg.project) / cfg.name / "weights" / "best.pt"


def resume_detector(last_checkpoint: Path) -> Path:
    """Continue an interrupted run from its ``last.pt`` (epochs, optimiser and schedule)."""
    configure_offline()
    if not Path(last_checkpoint).is_file():
        raise FileNotFoundError(f"no checkpoint at {last_checkpoint}")
    register_backbones()  # the trainer rebuilds the network from the checkpoint's YAML
    from ultralytics import YOLO

    started = time.time()
    model = YOLO(str(last_checkpoint))
    model.train(resume=True)
    run_dir = Path(last_checkpoint).resolve().parents[1]
    _record_time(run_dir, time.time() - started)
    return run_dir / "weights" / "best.pt"


def _record_time(run_dir: Path, seconds: float) -> None:
    # Resumed runs add up; the model card reports the total.
    log = run_dir / "train_seconds.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as f:
        f.write(f"{seconds:.1f}\n")


def total_training_seconds(run_dir: Path) -> float:
    log = Path(run_dir) / "train_seconds.log"
    if not log.is_file():
        return 0.0
    return sum(float(line) for line in log.read_text().split() if line.strip())
