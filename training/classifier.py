"""Train the gesture classifier (timm) on hand crops, then export it to ONNX.

Input: a crops folder as written by ``training.crops.cut_crops``: ``manifest.csv``
(``path,label,split,group,source``, paths relative to the folder) and, optionally,
``crop_config.json``. Source-dataset labels go through a :class:`LabelMap`; rows with labels
the map does not know are skipped and counted.

Design choices:

* Evaluation preprocessing *is* the serving code (``classifier_input.resize_crop`` +
  ``normalize``); training augments the uint8 crop and then runs the same two functions.
* Class balance: a balanced sampler (rows drawn with probability 1 / class count), not loss
  weights. Loss weights make every step's gradient scale depend on which rare crops the batch
  happens to hold, which is noisy with AdamW and small batches; oversampling keeps the loss a
  plain mean and shows the rare classes more *different augmentations* of their crops. The
  sampler shards its draws by rank, so the same class balance holds under DDP.
  ``balance="loss"`` (class-weighted cross-entropy) and ``"none"`` remain selectable.
* Images are read from disk per item, never held in memory: a dataset of any size trains.
* Determinism: every epoch reseeds torch and the sampler from ``(seed, epoch)``, so a run
  resumed after epoch k repeats the epochs an uninterrupted run would have done.
* DDP: launched by ``torchrun`` (``WORLD_SIZE > 1``), see ``training.distributed``.
* timm's helpers rather than our own: ``create_optimizer_v2`` (AdamW without decay on norm
  scales and biases), ``CosineLRScheduler`` (warm-up, cosine per step) and ``random_seed``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import random_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.boxes import CropConfig
from gesture_recognition.labels import LabelMap, load_label_map
from gesture_recognition.training.classification_metrics import (
    accuracy,
    confusion_matrix,
    macro_f1,
)
from gesture_recognition.training.classifier_checkpoint import BEST_CHECKPOINT
from gesture_recognition.training.classifier_config import ClassifierTrainConfig
from gesture_recognition.training.classifier_data import (
    SPLITS,
    BalancedSampler,
    CropDataset,
    CropManifest,
    EvalTransform,
    ServedView,
    ShuffleSampler,
    TrainTransform,
    class_weights,
    leaked_groups,
    read_crop_config,
    read_crop_manifest,
)
from gesture_recognition.training.crops import CROP_CONFIG, MANIFEST
from gesture_recognition.training.distributed import (
    DistContext,
    barrier,
    from_rank0,
    init_distributed,
    resolve_device,
    sync_buffers,
    wrap_ddp,
)
from gesture_recognition.training.pretrained import (
    create_classifier,
    freeze_blocks,
    model_mean_std,
)
from gesture_recognition.training.scene_context import SceneContext

LAST_CHECKPOINT = "last.pt"


@dataclass
class TrainedClassifier:
    model: nn.Module
    spec: ClassifierSpec
    checkpoint_path: Path
    history: list[dict[str, float]]
    metadata_path: Path | None = None
    onnx_path: Path | None = None
    verification: Any = None  # export.onnx_export.Verification
    test_metrics: dict[str, Any] | None = None


def seed_everything(seed: int, deterministic: bool) -> None:
    random_seed(seed)
    if deterministic:
        # warn_only: a few CUDA kernels have no deterministic version; they warn, not fail.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    progress: bool = False,
    desc: str = "val",
) -> dict[str, Any]:
    """Loss, accuracy, macro-F1 and confusion matrix of ``model`` over a loader."""
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total_loss, targets, preds = 0.0, [], []
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        total_loss += float(loss_fn(logits, y))
        targets.append(y.cpu().numpy())
        preds.append(logits.argmax(1).cpu().numpy())
    t = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    p = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    matrix = confusion_matrix(t, p, num_classes)
    return {
        "loss": total_loss / max(len(t), 1),
        "accuracy": accuracy(matrix),
        "macro_f1": macro_f1(matrix),
        "confusion_matrix": matrix.tolist(),
        "samples": len(t),
    }


# ------------------------------------------------------------------------------- training


def _loader(
    dataset: Dataset, cfg: ClassifierTrainConfig, sampler: Sampler | None, device: torch.device
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        shuffle=False,  # order comes from the (seeded, resumable) sampler
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
    )


def _train_sampler(
    cfg: ClassifierTrainConfig, labels: Sequence[int], ctx: DistContext
) -> Sampler[int]:
    if cfg.balance == "sampler":
        return BalancedSampler(
            labels, cfg.samples_per_epoch, seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size
        )
    if ctx.distributed:
        from torch.utils.data import TensorDataset
        from torch.utils.data.distributed import DistributedSampler

        # The sampler only needs the length: any dataset of len(labels) rows will do.
        rows = TensorDataset(torch.arange(len(labels)))
        return DistributedSampler(rows, ctx.world_size, ctx.rank, shuffle=True, seed=cfg.seed)
    return ShuffleSampler(len(labels), cfg.seed)


def train_classifier(cfg: ClassifierTrainConfig) -> TrainedClassifier:
    """Train, keep the best epoch by validation macro-F1, evaluate on test, export to ONNX.

    Writes ``<out_dir>/best.pt`` (state dict) + ``best.json`` (spec, history, metrics),
    ``<out_dir>/last.pt`` (everything needed to resume) and, with ``export``, the ONNX model
    and its JSON spec in ``export_dir`` (default ``<out_dir>/onnx``).
    """
    ctx = init_distributed()
    # seed_everything switches torch to deterministic algorithms process-wide; put it back.
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        run = _setup(cfg, ctx)
        state = _resume(run) if cfg.resume is not None else _TrainState()
        _fit(run, state)
        return _finish(run, state)
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
        if ctx.distributed:
            import torch.distributed as dist

            dist.destroy_process_group()


@dataclass
class _Run:
    """Everything one training run works with (built once by ``_setup``)."""

    cfg: ClassifierTrainConfig
    ctx: DistContext
    device: torch.device
    say: Callable[[str], None]
    manifest: CropManifest
    spec: ClassifierSpec
    meta: dict[str, Any]  # what best.json says about the data and the config
    eval_tf: EvalTransform
    eval_view: ServedView | None  # how tight_box rows are shown when evaluating
    frozen: list[nn.Module]  # kept in eval mode while training (pretrained statistics)
    model: nn.Module  # the bare model (what is saved and exported)
    net: nn.Module  # what is trained: the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: CosineLRScheduler
    loss_fn: nn.Module
    train_sampler: Any  # has set_epoch
    train_loader: DataLoader
    val_loader: DataLoader

    @property
    def best_path(self) -> Path:
        return self.cfg.out_dir / BEST_CHECKPOINT

    @property
    def last_path(self) -> Path:
        return self.cfg.out_dir / LAST_CHECKPOINT


@dataclass
class _TrainState:
    next_epoch: int = 0
    best_f1: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _setup(cfg: ClassifierTrainConfig, ctx: DistContext) -> _Run:
    say: Callable[[str], None] = tqdm.write if ctx.is_main else (lambda _msg: None)
    # The same seed on every rank: DDP starts from rank 0's weights anyway, but identical
    # initialisation keeps each rank reproducible on its own too.
    seed_everything(cfg.seed, cfg.deterministic)
    device = resolve_device(cfg.device, ctx)
    label_map = load_label_map(cfg.label_map)
    manifest = read_crop_manifest(cfg.crops_dir, label_map)
    say(manifest.summary(label_map))
    leaks = leaked_groups(manifest)
    if leaks:
        say(f"warning: {len(leaks)} group(s) appear in more than one split, e.g. {min(leaks)}")
    train_rows, val_rows = manifest.splits["train"], manifest.splits["val"]
    if not train_rows or not val_rows:
        raise ValueError(
            f"{cfg.crops_dir / MANIFEST} needs train and val rows for label map "
            f"{label_map.name!r} (has train {len(train_rows)}, val {len(val_rows)})"
        )
    absent = set(label_map.classes) - {r.label for r in train_rows}
    if absent:
        say(f"warning: no training crops for {', '.join(sorted(absent))}")

    model = create_classifier(cfg.arch, label_map.num_classes, cfg.pretrained, cfg.drop_rate)
    mean, std = model_mean_std(model)
    crop_config = read_crop_config(cfg.crops_dir)
    spec = ClassifierSpec(
        label_map=label_map,
        input_size=cfg.input_size,
        mean=mean,
        std=std,
        crop=crop_config or CropConfig(),
        architecture=cfg.arch,
    )
    eval_tf = EvalTransform(cfg.input_size, mean, std)
    served = cfg.tight_crops == "served"
    eval_view = ServedView.deterministic(spec.crop) if served else None
    train_labels = [r.index for r in train_rows]
    train_sampler = _train_sampler(cfg, train_labels, ctx)
    train_tf = TrainTransform(cfg.input_size, mean, std)
    context = SceneContext(cfg.context_scenes) if cfg.context_scenes else None
    if context is not None:
        say(f"context: {len(context)} boxed hands in {len(cfg.context_scenes)} scene folders")
    train_view = ServedView(context=context, context_share=cfg.context_share) if served else None
    train_set = CropDataset(train_rows, train_tf, train_view)
    train_loader = _loader(train_set, cfg, train_sampler, device)
    val_loader = _loader(CropDataset(val_rows, eval_tf, eval_view), cfg, None, device)

    frozen = freeze_blocks(model, cfg.freeze_blocks)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    # AdamW; norm scales and biases are not decayed (shrinking them only fights the
    # normalisation).
    optimizer = create_optimizer_v2(model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Per optimizer step: a linear warm-up, then a cosine down to min_lr_ratio * lr.
    steps_per_epoch = len(train_loader)
    warmup = max(1, round(cfg.warmup_epochs * steps_per_epoch))
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=max(1, cfg.epochs * steps_per_epoch - warmup),
        lr_min=cfg.lr * cfg.min_lr_ratio,
        warmup_t=warmup,
        warmup_lr_init=cfg.lr / warmup,
        warmup_prefix=True,
        t_in_epochs=False,
    )
    weight = class_weights(train_labels, label_map.num_classes) if cfg.balance == "loss" else None
    loss_fn = nn.CrossEntropyLoss(
        weight=None if weight is None else weight.to(device), label_smoothing=cfg.label_smoothing
    )
    meta = {
        "spec": spec.to_dict(),
        "config": cfg.to_dict(),
        "crop_config_source": CROP_CONFIG if crop_config else "default (no crop_config.json)",
        "manifest": {
            **{s: len(manifest.splits[s]) for s in SPLITS},
            "skipped_labels": dict(manifest.skipped_labels),
            "skipped_other": dict(manifest.skipped_other),
        },
        "world_size": ctx.world_size,
    }
    return _Run(
        cfg=cfg,
        ctx=ctx,
        device=device,
        say=say,
        manifest=manifest,
        spec=spec,
        meta=meta,
        eval_tf=eval_tf,
        eval_view=eval_view,
        frozen=frozen,
        model=model,
        net=wrap_ddp(model, device, ctx),
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        train_sampler=train_sampler,
        train_loader=train_loader,
        val_loader=val_loader,
    )


def _resume(run: _Run) -> _TrainState:
    """Model, optimiser, schedule and early-stopping state from a ``last.pt``."""
    assert run.cfg.resume is not None
    path = run.cfg.resume / LAST_CHECKPOINT if run.cfg.resume.is_dir() else run.cfg.resume
    saved = torch.load(path, map_location="cpu", weights_only=True)
    _check_resumable(saved, run.cfg, run.spec.label_map)
    # Loaded into the bare model: DDP wraps the same parameter tensors, on every rank alike.
    run.model.load_state_dict(saved["model"])
    try:
        run.optimizer.load_state_dict(saved["optimizer"])
    except ValueError as exc:  # timm's parameter groups differ from the hand-made ones before
        raise ValueError(f"cannot resume {path}: written by an older trainer ({exc})") from exc
    state = _TrainState(
        next_epoch=int(saved["epoch"]) + 1,
        best_f1=float(saved["best_f1"]),
        best_epoch=int(saved["best_epoch"]),
        bad_epochs=int(saved["bad_epochs"]),
        history=list(saved["history"]),
    )
    # The schedule is a function of the optimizer steps done.
    run.scheduler.step_update(state.next_epoch * len(run.train_loader))
    run.say(
        f"resumed from {path} after epoch {state.next_epoch} (best macro-F1 {state.best_f1:.4f})"
    )
    return state


def _fit(run: _Run, state: _TrainState) -> None:
    cfg, ctx = run.cfg, run.ctx
    if ctx.is_main:
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
    num_classes = run.spec.label_map.num_classes
    for epoch in range(state.next_epoch, cfg.epochs):
        if state.bad_epochs >= cfg.patience:
            break
        started = time.perf_counter()
        # Augmentation and dropout randomness from (seed, epoch, rank): resuming repeats it.
        torch.manual_seed(cfg.seed * 100_003 + epoch * 1_009 + ctx.rank)
        run.train_sampler.set_epoch(epoch)
        train_loss = _train_epoch(run, epoch)
        sync_buffers(run.model, ctx)
        val = evaluate(
            run.model, run.val_loader, num_classes, run.device, cfg.progress and ctx.is_main
        )
        val["macro_f1"] = from_rank0(val["macro_f1"], run.device, ctx)
        state.history.append(
            {
                "epoch": epoch,
                "lr": run.optimizer.param_groups[0]["lr"],
                "train_loss": train_loss,
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
                "val_macro_f1": val["macro_f1"],
                "seconds": time.perf_counter() - started,
            }
        )
        state.next_epoch = epoch + 1
        improved = val["macro_f1"] > state.best_f1
        if improved:
            state.best_f1, state.best_epoch, state.bad_epochs = val["macro_f1"], epoch, 0
        else:
            state.bad_epochs += 1
        run.say(
            f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, val loss "
            f"{val['loss']:.4f}, acc {val['accuracy']:.4f}, macro-F1 {val['macro_f1']:.4f}"
            + (" (best)" if improved else f" (no gain {state.bad_epochs}/{cfg.patience})")
        )
        if ctx.is_main:
            _save_epoch(run, state, val if improved else None)
    if state.bad_epochs >= cfg.patience and state.next_epoch < cfg.epochs:
        run.say(f"early stop: no better validation macro-F1 for {cfg.patience} epochs")
    barrier(ctx)


def _save_epoch(run: _Run, state: _TrainState, best_val: dict[str, Any] | None) -> None:
    """``best.pt``/``best.json`` when the epoch improved, ``last.pt`` always."""
    if best_val is not None:
        torch.save(run.model.state_dict(), run.best_path)
        meta = {
            **run.meta,
            "best_epoch": state.best_epoch,
            "best_val_macro_f1": state.best_f1,
            "best_val_confusion_matrix": best_val["confusion_matrix"],
            "history": state.history,
        }
        _write_json(run.best_path.with_suffix(".json"), meta)
    torch.save(
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "epoch": state.next_epoch - 1,
            "best_f1": state.best_f1,
            "best_epoch": state.best_epoch,
            "bad_epochs": state.bad_epochs,
            "history": state.history,
            "spec": run.spec.to_dict(),
            "config": run.cfg.to_dict(),
        },
        run.last_path,
    )


def _finish(run: _Run, state: _TrainState) -> TrainedClassifier:
    """Best weights back in, test metrics into best.json, ONNX export (rank 0 only)."""
    result = TrainedClassifier(
        model=run.model.eval(),
        spec=run.spec,
        checkpoint_path=run.best_path,
        history=state.history,
        metadata_path=run.best_path.with_suffix(".json"),
    )
    if not run.ctx.is_main:
        # Other ranks may not see rank 0's files (other nodes): they keep the last weights.
        return result
    if not run.best_path.is_file():
        raise RuntimeError(f"no {run.best_path}: resume into the out_dir that holds it")
    run.model.load_state_dict(torch.load(run.best_path, map_location=run.device, weights_only=True))
    run.model.eval()
    cfg, test_rows = run.cfg, run.manifest.splits["test"]
    if test_rows:
        test_set = CropDataset(test_rows, run.eval_tf, run.eval_view)
        loader = _loader(test_set, cfg, None, run.device)
        result.test_metrics = evaluate(
            run.model, loader, run.spec.label_map.num_classes, run.device, cfg.progress, "test"
        )
        run.say(
            f"test: acc {result.test_metrics['accuracy']:.4f}, "
            f"macro-F1 {result.test_metrics['macro_f1']:.4f} ({len(test_rows)} crops)"
        )
    meta_path = run.best_path.with_suffix(".json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["history"] = state.history
    meta["test_metrics"] = result.test_metrics
    _write_json(meta_path, meta)

    if cfg.export:
        from gesture_recognition.export.onnx_export import export_classifier

        val_set = CropDataset(run.manifest.splits["val"], run.eval_tf, run.eval_view)
        verify = verification_inputs(val_set, cfg.verify_samples)
        result.onnx_path, result.verification = export_classifier(
            run.model, run.spec, cfg.export_dir or cfg.out_dir / "onnx", verify_inputs=verify
        )
        run.say(
            f"exported {result.onnx_path}: max |ONNX - PyTorch| "
            f"{result.verification.max_abs_diff:.2e} on {result.verification.samples} val crops"
        )
    return result


def _train_epoch(run: _Run, epoch: int) -> float:
    cfg = run.cfg
    run.net.train()
    for module in run.frozen:
        module.eval()
    total, seen = 0.0, 0
    bar = tqdm(
        run.train_loader,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        leave=False,
        unit="batch",
        disable=not (cfg.progress and run.ctx.is_main),
    )
    updates = epoch * len(run.train_loader)
    for x, y in bar:
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        loss = run.loss_fn(run.net(x), y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        updates += 1
        run.scheduler.step_update(updates)
        total += loss.item() * len(y)
        seen += len(y)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / max(seen, 1)


def _check_resumable(state: dict[str, Any], cfg: ClassifierTrainConfig, labels: LabelMap) -> None:
    saved = ClassifierSpec.from_dict(state["spec"])
    if saved.architecture != cfg.arch or saved.label_map.classes != labels.classes:
        raise ValueError(
            f"cannot resume: checkpoint is {saved.architecture} for "
            f"{list(saved.label_map.classes)}, this run is {cfg.arch} for {list(labels.classes)}"
        )
    if saved.input_size != cfg.input_size:
        raise ValueError(
            f"cannot resume: checkpoint input size {saved.input_size}, config {cfg.input_size}"
        )


def verification_inputs(crops: CropDataset, limit: int) -> NDArray[np.float32]:
    """Up to ``limit`` real crops, preprocessed as the server does, as one ``[N, 3, S, S]``."""
    count = min(limit, len(crops))
    return np.stack([crops[i][0].numpy() for i in range(count)]).astype(np.float32)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
