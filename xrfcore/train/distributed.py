"""DDP plumbing for `torchrun`: init from env vars, shard in-memory data by rank, rank-0 duties.

Without torchrun (no WORLD_SIZE > 1 in the environment) everything is a single process."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    owns_group: bool = False   # this code started the process group (and ends it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(use_cuda: bool) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, ...): nccl on
    CUDA, gloo on CPU. Returns a single-process DistInfo when not launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, dist.get_backend(), False)
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(rank, world, local, backend, True)


def shutdown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def shard_indices(n: int, rank: int, world: int, epoch: int, seed: int, shuffle: bool = True) -> np.ndarray:
    """This rank's sample indices for one epoch, like DistributedSampler: one permutation shared by
    all ranks (seeded by seed and epoch), padded by wrapping to a multiple of world, rank::world."""
    if n <= 0:
        raise ValueError("no training spectra")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    per_rank = -(-n // world)
    total = per_rank * world
    if total > n:
        order = np.resize(order, total)  # wraps around, as DistributedSampler pads
    return order[rank:total:world]


def all_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a scalar tensor over ranks (identity in a single process)."""
    if not info.enabled:
        return value
    v = value.detach().clone().float()
    dist.all_reduce(v, op=dist.ReduceOp.SUM)
    return v / info.world_size


def broadcast_flag(flag: bool, info: DistInfo, device) -> bool:
    """True on every rank when rank 0 says so (e.g. a cancel seen by rank 0 only)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
