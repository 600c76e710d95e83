"""What the teacher caches share on disk: a teacher's fingerprint, `.npy` arrays written
atomically in chunks, memory-mapped on load and checked against the SHA-256 that the cache's
`meta.json` vouches for.

The order of a build is always: arrays first, then the meta that names them with their
checksums (`publish`). A crash between the two leaves a meta that does not match, so the next
run rebuilds; the caller holds the cache folder's file lock around the whole check-or-build.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..files import atomic_write, atomic_write_json, sha256_file
from .teachers import Teacher, fingerprint_module

__all__ = ["fingerprint_teacher", "read_meta", "check_npy", "write_npy", "load_npy",
           "publish"]

_CHUNK_BYTES = 64 << 20


def fingerprint_teacher(teacher: Teacher, teacher_key: str | None) -> str:
    """The weights of a module; for a callable without weights, the caller's `teacher_key`."""
    if isinstance(teacher, nn.Module):
        return fingerprint_module(teacher)
    if teacher_key:
        return hashlib.sha256(teacher_key.encode()).hexdigest()
    raise ValueError("a callable teacher has no weights to fingerprint: pass teacher_key")


def read_meta(meta_path: Path) -> dict | str:
    """The cache's metadata as a dict, or why it cannot be read."""
    try:
        have = json.loads(meta_path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "cache metadata unreadable"
    if not isinstance(have, dict):
        return "cache metadata is not a JSON object"
    return have


def check_npy(path: Path, sha256: object, shape: object, what: str) -> str | None:
    """Why the array at `path` cannot be trusted (checksum, readability, shape, NaN), or None."""
    try:
        if sha256_file(path) != sha256:
            return f"cached {what} do not match their checksum"
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return f"cached {what} unreadable"
    if list(arr.shape) != shape:
        return f"cached {what} have the wrong shape"
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return f"cached {what} hold NaN or infinite values"
    return None


def write_npy(path: Path, source: np.ndarray, dtype) -> dict:
    """Write `source` (any array, a memory map too) as `dtype`, atomically, a chunk of rows
    along the first axis at a time; returns the entry `publish` records for it."""
    dtype = np.dtype(dtype)

    def write(tmp: str) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=source.shape)
        rows = max(1, _CHUNK_BYTES // max(1, source[:1].nbytes)) if source.ndim else 1
        if source.ndim == 0 or len(source) == 0:
            out[...] = source
        for i in range(0, len(source) if source.ndim else 0, rows):
            out[i:i + rows] = source[i:i + rows]
        out.flush()
        del out

    atomic_write(path, write)
    return {"file": path.name, "shape": list(source.shape), "dtype": dtype.name,
            "sha256": sha256_file(path)}


def load_npy(path: Path) -> torch.Tensor:
    """The array as a tensor over a copy-on-write memory map: pages are read when used."""
    return torch.from_numpy(np.load(path, mmap_mode="c"))


def publish(meta_path: Path, meta: dict, write_arrays) -> dict:
    """Remove the old meta, let `write_arrays()` write the arrays (returning what the meta
    records of them), then write the meta that vouches for them; returns that meta."""
    if meta_path.exists():
        meta_path.unlink()
    meta = {**meta, **write_arrays()}
    atomic_write_json(meta_path, meta)
    return meta
