"""Distributed data parallel through ``torchrun``: a process per device, NCCL on GPUs, gloo on CPU.

``torchrun --nproc_per_node N -m training.cli fit CONFIG`` (or ``upscale-train`` under torchrun)
sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; without them everything runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from upscaler.engine.load import pick_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank if chosen.index is None else chosen.index)
        torch.cuda.set_device(chosen)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=chosen if backend == "nccl" else None)
    return Dist(rank, world, local_rank, chosen)


def teardown(info: Dist) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: Dist) -> None:
    if info.enabled:
        dist.barrier()


def any_true(info: Dist, flag: bool) -> bool:
    """Whether ``flag`` is set on any process (every process gets the same answer)."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean(info: Dist, values: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics over processes (for logging)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], device=info.device, dtype=torch.float64)
    dist.all_reduce(tensor)
    return {k: float(v) / info.world for k, v in zip(keys, tensor.tolist(), strict=True)}
