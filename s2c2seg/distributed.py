"""Scale-out under ``torchrun``: shard the images by rank, all-reduce the confusion matrices.

``torchrun --nproc_per_node N -m s2c2seg eval ...`` sets ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` /
``MASTER_PORT`` for each process; :func:`init_from_env` reads them (it never writes the environment) and
starts a process group (NCCL when CUDA is available, gloo otherwise, or the backend named). Image ``i`` of the
(possibly truncated) split goes to rank ``i % N``; every rank accumulates its own integer confusion
matrices, a SUM all-reduce adds them, and rank 0 writes the record. Integer sums do not depend on the
order of the additions, so the result equals a single-process run exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["DistContext", "env_rank", "init_from_env", "shard", "all_reduce_sum", "all_gather_objects", "barrier", "finish"]


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    backend: str | None = None
    """The process-group backend (``gloo`` / ``nccl``), None for a single process."""
    owns_group: bool = False
    """Whether :func:`init_from_env` started the group (then :func:`finish` destroys it)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def to_json(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def env_rank() -> int:
    """This process's rank as torchrun set it (``RANK``; 0 outside torchrun), with or without a process group."""
    return _env_int("RANK", 0)


def init_from_env(backend: str | None = None) -> DistContext:
    """The process's place in a torchrun job (a single-process context when ``WORLD_SIZE`` is unset or 1)."""
    import torch.distributed as dist

    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent")
    if world == 1:
        return DistContext()
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build; run without torchrun")
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), dist.get_backend(), False)
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl":
        torch.cuda.set_device(_env_int("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return DistContext(rank, world, backend, True)


def shard(indices: Sequence[int], ctx: DistContext) -> list[int]:
    """The indices this rank evaluates: every ``world_size``-th, starting at ``rank``."""
    return list(indices)[ctx.rank::ctx.world_size]


def _device(ctx: DistContext) -> torch.device:
    if ctx.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all ranks (returned on ``tensor``'s device; input unchanged)."""
    if not ctx.active:
        return tensor.clone()
    import torch.distributed as dist

    buf = tensor.detach().to(_device(ctx)).clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(tensor.device)


def all_gather_objects(obj, ctx: DistContext) -> list:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` for a single process)."""
    if not ctx.active:
        return [obj]
    import torch.distributed as dist

    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        import torch.distributed as dist

        dist.barrier()


def finish(ctx: DistContext) -> None:
    """Destroy the process group if :func:`init_from_env` created it."""
    if ctx.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
