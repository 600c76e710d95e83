"""Where a run executes: device choice, the distributed rank and world size, RNG states, and
the per-epoch generator that shuffling and augmentation draw from."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["dist_info", "resolve_device", "unwrap", "rng_state", "set_rng_state",
           "epoch_generator"]


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' is this rank's CUDA device when there is one, else the CPU. Anything else must
    name a device that exists here (cpu, cuda, cuda:N, mps): one clear error otherwise."""
    if name == "auto":
        if torch.cuda.is_available():
            rank_local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", rank_local % torch.cuda.device_count())
        return torch.device("cpu")
    if not isinstance(name, (str, torch.device)) or not str(name).strip():
        raise ValueError(f"not a device: {name!r} (auto, cpu, cuda, cuda:1)")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"not a device: {name!r} (auto, cpu, cuda, cuda:1)") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} cannot train or evaluate (auto, cpu, cuda, cuda:1)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} was asked for but MPS is not available")
    return dev


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Shuffling and augmentation draw from a generator seeded by (seed, epoch): identical on
    every rank, and the same after a resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)
