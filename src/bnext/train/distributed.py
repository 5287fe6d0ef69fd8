"""torch.distributed set-up for torchrun (DDP): NCCL on GPUs, gloo on CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from bnext.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


_LAUNCH_FIX = "launch with torchrun, which sets RANK, LOCAL_RANK and WORLD_SIZE, or unset them to train in one process"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not an integer: {_LAUNCH_FIX}") from None


def _read_launch_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment, checked before any rendezvous:
    a rank outside the world would wait there forever for peers that never come."""
    world, rank, local_rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1:
        raise UserError(f"WORLD_SIZE={world} must be at least 1: {_LAUNCH_FIX}")
    for name, value in (("RANK", rank), ("LOCAL_RANK", local_rank)):
        if not 0 <= value < world:
            raise UserError(f"{name}={value} is outside 0..{world - 1} (WORLD_SIZE={world}): {_LAUNCH_FIX}")
    return rank, world, local_rank


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment (or run alone).

    ``device``: ``"auto"`` / None (CUDA when present), ``"cpu"`` or ``"cuda"``. A CPU run
    under torchrun uses gloo even on a machine with GPUs.
    """
    rank, world, local_rank = _read_launch_env()
    if device not in (None, "auto", "cpu") and not str(device).startswith("cuda"):
        raise UserError(f"train.device must be auto, cpu or cuda, got {device!r}")
    use_cuda = torch.cuda.is_available() if device in (None, "auto") else str(device).startswith("cuda")
    if use_cuda:
        count = torch.cuda.device_count()
        if count == 0:
            raise UserError("train.device=cuda but no CUDA GPU is visible: use train.device=cpu (or auto)")
        if local_rank >= count:
            raise UserError(
                f"local rank {local_rank} has no GPU: this node has {count} CUDA device(s) but torchrun started "
                f"more processes; use --nproc_per_node={count} (or set train.device=cpu to train with gloo on CPU)"
            )
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank, torch_device)


def make_deterministic() -> None:
    """Deterministic kernels everywhere, so a resumed CUDA run repeats the straight run bit for bit.

    cuDNN picks fixed algorithms, cuBLAS gets the fixed workspace it needs for
    reproducible GEMMs (``CUBLAS_WORKSPACE_CONFIG``; must be set before the first
    cuBLAS call, so the trainer calls this before building anything), and any op
    without a deterministic kernel warns. Costs some GPU speed; CPU runs are exact anyway.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few numbers over all ranks (identity when alone)."""
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
