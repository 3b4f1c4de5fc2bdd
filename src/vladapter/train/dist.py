"""Distributed data parallel: the same command under `torchrun --nproc_per_node N`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; then each process joins the group (NCCL
on GPU, gloo on CPU) and trains its shard of every global batch. Without torchrun the
run is a single process and nothing here does anything. A process joins once and leaves
once (a process group re-created in the same process reuses torchrun's store and finds
the previous round's keys): `vladapter train --seeds` trains every seed in one group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    dev = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        # on GPU, gloo beside NCCL for CPU tensors: small host-side agreements (the stop flag
        # every step) then need no GPU synchronisation
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo", rank=rank, world_size=world,
                                device_id=dev if cuda else None)
    return DistInfo(rank, world, local, dev)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of a small tensor over ranks (the tensor itself when single-process)."""
    if info.enabled:
        values = values.to(info.device)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, info: DistInfo) -> bool:
    """Whether ``flag`` is set on any rank (all ranks get the same answer): a one-element
    all-reduce of a CPU tensor, cheap enough for every step."""
    if not info.enabled:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_int(value: int, info: DistInfo) -> int:
    """The main rank's ``value`` on every rank (a CPU tensor: no pickling)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64)
    dist.broadcast(t, src=0)
    return int(t.item())


def gather_tensors(value: torch.Tensor, info: DistInfo) -> list[torch.Tensor]:
    """Every rank's copy of a same-shaped tensor (e.g. RNG states), in rank order, on CPU."""
    if not info.enabled:
        return [value]
    local = value.to(info.device)
    out = [torch.empty_like(local) for _ in range(info.world_size)]
    dist.all_gather(out, local)
    return [t.cpu() for t in out]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
