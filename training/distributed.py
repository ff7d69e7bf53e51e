"""Training on several processes or GPUs (``torchrun``): the process group, each rank's
device, and the few collectives the classifier's training loop needs.

Every rank trains on its share of the samples; every rank evaluates the whole validation set
with rank 0's batch-norm statistics (cheap, and simpler than gathering shards), rank 0's
macro-F1 is broadcast so all ranks take the same early-stopping decision, and only rank 0
writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistContext:
    """Join the process group when started by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def resolve_device(name: str, ctx: DistContext) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and ctx.distributed:
        name = f"cuda:{ctx.local_rank}"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device cuda asked for, but no CUDA GPU is available")
        torch.cuda.set_device(device)
    return device


def wrap_ddp(model: nn.Module, device: torch.device, ctx: DistContext) -> nn.Module:
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    # Each rank updated its batch-norm statistics on its own last batch; evaluate rank 0's.
    if ctx.distributed:
        import torch.distributed as dist

        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def from_rank0(value: float, device: torch.device, ctx: DistContext) -> float:
    # Early stopping must be decided identically on every rank or the collectives deadlock.
    if not ctx.distributed:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return float(t.item())
