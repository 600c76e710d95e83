"""Where a run executes: device choice, the distributed rank and world size, RNG states (one
per rank), work that rank 0 does for everyone, and the per-epoch generator that shuffling and
augmentation draw from."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["dist_info", "resolve_device", "unwrap", "rng_state", "set_rng_state",
           "gather_rng_states", "restore_rng_states", "from_rank_zero", "epoch_generator"]


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


def gather_rng_states(world: int, device: torch.device) -> list[dict] | None:
    """Every rank's RNG state, indexed by rank, on rank 0 (None elsewhere). Each rank draws its
    own dropout masks, so a resume needs each rank's own state, not rank 0's. Every rank calls
    this: it is a collective."""
    if world == 1:
        return [rng_state()]
    out: list[Any] | None = [None] * world if dist.get_rank() == 0 else None
    with torch.cuda.device(device) if device.type == "cuda" else nullcontext():
        dist.gather_object(rng_state(), out, dst=0)
    return out


def restore_rng_states(saved: dict | list, saved_world: int | None, rank: int, world: int,
                       where: object) -> None:
    """Restore this rank's state from a checkpoint's `rng_state` (a list indexed by rank, from
    `saved_world` processes). A checkpoint from another number of processes is refused: its
    states would not line up with the ranks. One from before per-rank states holds rank 0's
    state alone (a dict); every rank restores that, as kdistill then did."""
    if isinstance(saved, dict):
        set_rng_state(saved)
        return
    if saved_world != world or len(saved) != world:
        raise ValueError(f"{where} was written by {saved_world} process(es) but this run has "
                         f"{world}: resume it with the same number of processes, or use "
                         "another output folder or no resume")
    set_rng_state(saved[rank])


def from_rank_zero(work: Callable[[], Any]) -> Any:
    """Run `work` on rank 0 alone and return its (picklable) result on every rank, e.g. to
    build a file once that the others then read. A failure on rank 0 is raised on every rank
    too (a ValueError as a ValueError, with the same message), so no rank waits forever."""
    rank, world = dist_info()
    if world == 1:
        return work()
    box: list[Any] = [None]
    if rank == 0:
        try:
            box[0] = ("ok", work())
        except Exception as exc:
            box[0] = ("error", isinstance(exc, ValueError), str(exc))
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    if box[0][0] == "ok":
        return box[0][1]
    _, is_value_error, message = box[0]
    if is_value_error:
        raise ValueError(message)
    raise RuntimeError(f"rank 0 failed: {message}")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Shuffling and augmentation draw from a generator seeded by (seed, epoch): identical on
    every rank, and the same after a resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)
