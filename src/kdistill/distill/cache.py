"""The teacher-logit cache: run the teacher once over the transfer set, store its logits on
disk (memory-mapped on load), and reuse them only while a fingerprint of the teacher's weights,
the data and the transform still matches. Anything else rebuilds; nothing is silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..files import atomic_write, atomic_write_json
from .teachers import Teacher, fingerprint_module, fingerprint_tensor, run_teacher

__all__ = ["CacheResult", "cached_teacher_logits"]


@dataclass
class CacheResult:
    logits: torch.Tensor
    path: Path
    rebuilt: bool
    reason: str


def cached_teacher_logits(
    teacher: Teacher,
    x: torch.Tensor,
    cache_dir: str | os.PathLike,
    *,
    transform: str = "identity",
    teacher_key: str | None = None,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> CacheResult:
    """Teacher logits on `x`, from `cache_dir` if its fingerprint matches, else computed and
    written there (logits.npy, memory-mapped on load, plus meta.json).

    `transform` names any preprocessing applied to `x` before the teacher sees it; `teacher_key`
    identifies a callable teacher that has no weights to hash.
    """
    cache_dir = Path(cache_dir)
    if isinstance(teacher, nn.Module):
        teacher_fp = fingerprint_module(teacher)
    elif teacher_key:
        teacher_fp = hashlib.sha256(teacher_key.encode()).hexdigest()
    else:
        raise ValueError("a callable teacher has no weights to fingerprint: pass teacher_key")
    want = {
        "format": 1,
        "teacher": teacher_fp,
        "data": fingerprint_tensor(x),
        "transform": transform,
        "n": len(x),
    }
    meta_path, array_path = cache_dir / "meta.json", cache_dir / "logits.npy"
    reason = _mismatch(meta_path, array_path, want)
    if reason is None:
        arr = np.load(array_path, mmap_mode="c")
        return CacheResult(torch.from_numpy(arr), array_path, False, "fingerprint matches")

    logits = run_teacher(teacher, x, batch_size=batch_size, device=device, progress=progress)
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).any(dim=1).sum())
        raise ValueError(f"the teacher produced NaN or infinite logits on {bad} of {len(x)} inputs")
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The array first, then the meta that vouches for it: a crash between the two leaves a meta
    # that does not match, so the next run rebuilds.
    if meta_path.exists():
        meta_path.unlink()
    atomic_write(array_path, lambda tmp: _save_npy(tmp, logits.numpy()))
    atomic_write_json(meta_path, {**want, "shape": list(logits.shape)})
    arr = np.load(array_path, mmap_mode="c")
    return CacheResult(torch.from_numpy(arr), array_path, True, reason)


def _save_npy(tmp: str, arr: np.ndarray) -> None:
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=arr.shape)
    out[:] = arr
    out.flush()
    del out


def _mismatch(meta_path: Path, array_path: Path, want: dict) -> str | None:
    """Why the cache cannot be used, or None if it can."""
    if not meta_path.is_file() or not array_path.is_file():
        return "no cache yet"
    try:
        have = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return "cache metadata unreadable"
    for key, what in (("teacher", "teacher weights changed"), ("data", "data changed"),
                      ("transform", "transform changed"), ("format", "cache format changed"),
                      ("n", "data size changed")):
        if have.get(key) != want[key]:
            return what
    try:
        arr = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):
        return "cached logits unreadable"
    if list(arr.shape) != have.get("shape") or arr.shape[0] != want["n"]:
        return "cached logits have the wrong shape"
    return None
