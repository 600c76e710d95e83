"""The teacher-logit cache: run the teacher once over the transfer set, store its logits on
disk (memory-mapped on load), and reuse them only while a fingerprint of the teacher's weights,
the data, the transform and the stored bytes still matches. Anything else rebuilds; nothing is
silently reused.

The data may be a tensor, an ArrayDataset, a map-style Dataset or a DataLoader in a fixed
order (tensor, tuple or dict batches); row i of the cache belongs to example i. To train from
the cache with a DataLoader, its batches carry each example's `index`: `with_index(dataset)`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from ..files import file_lock
from .adapters import LogitsKey, batch_length, call_model, logits_of, split_batch, to_device
from .cache_files import check_npy, fingerprint_teacher, load_npy, publish, read_meta, write_npy
from .data import ArrayDataset
from .teachers import Teacher

__all__ = ["CacheResult", "cached_teacher_logits", "with_index", "IndexedDataset",
           "fingerprint_data", "fingerprint_training_data"]

CACHE_FORMAT = 2


@dataclass
class CacheResult:
    logits: torch.Tensor
    path: Path
    rebuilt: bool
    reason: str


class IndexedDataset(Dataset):
    """A map-style dataset whose items also say where they are: dict items gain an `index`
    key; an (x, y) item becomes {"x": x, "labels": y, "index": i}."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict:
        item = self.dataset[i]
        if isinstance(item, Mapping):
            return {**item, "index": i}
        if isinstance(item, (tuple, list)):
            out = {"x": item[0], "index": i}
            if len(item) > 1:
                out["labels"] = item[1]
            return out
        return {"x": item, "index": i}


def with_index(dataset: Dataset) -> IndexedDataset:
    return IndexedDataset(dataset)


def _input_batches(data: Any, batch_size: int) -> Iterator[Any]:
    """The model inputs of every example, in order, in batches."""
    if isinstance(data, ArrayDataset):
        data = data.x
    if isinstance(data, torch.Tensor):
        for i in range(0, len(data), batch_size):
            yield data[i:i + batch_size]
        return
    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler):
            raise ValueError("the teacher cache needs its data in a fixed order: use a "
                             "DataLoader with shuffle=False (or pass the Dataset)")
        loader: Iterable = data
    elif isinstance(data, Dataset) and hasattr(data, "__len__"):
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    else:
        raise ValueError(f"cannot cache teacher logits over {type(data).__name__}: pass a "
                         "tensor, an ArrayDataset, a Dataset or a DataLoader")
    for raw in loader:
        yield split_batch(raw).inputs


def _hash_inputs(h, inputs: Any) -> None:
    if isinstance(inputs, torch.Tensor):
        t = inputs.detach().cpu().contiguous()
        h.update(f"{t.dtype}|{tuple(t.shape[1:])}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(inputs, Mapping):
        for k in sorted(inputs):
            h.update(str(k).encode())
            _hash_inputs(h, inputs[k])
    else:
        h.update(repr(inputs).encode())


def fingerprint_data(data: Any, batch_size: int = 4096) -> tuple[str, int]:
    """(SHA-256 over every input's dtype, shape and bytes in order, number of examples)."""
    h = hashlib.sha256(b"kdistill-data")
    n = 0
    for inputs in _input_batches(data, batch_size):
        _hash_inputs(h, inputs)
        n += batch_length(inputs)
    return h.hexdigest(), n


def fingerprint_training_data(data: Any) -> str:
    """What a run trains on, for its identity: the inputs and labels of an ArrayDataset, or
    every item of a DataLoader's map-style Dataset in the dataset's own order (so a shuffling
    loader has one fingerprint). Other iterables are named by type only."""
    h = hashlib.sha256(b"kdistill-train")
    if isinstance(data, ArrayDataset):
        _hash_inputs(h, data.x)
        if data.y is not None:
            _hash_inputs(h, data.y)
        if data.partial_labels:  # absent otherwise: older fingerprints stay valid
            h.update(b"partial_labels")
        h.update(str(data.num_classes).encode())
        return h.hexdigest()
    dataset = getattr(data, "dataset", None)
    if isinstance(dataset, Dataset) and hasattr(dataset, "__len__"):
        for raw in DataLoader(dataset, batch_size=4096, shuffle=False):
            b = split_batch(raw)
            _hash_inputs(h, {"inputs": b.inputs, "labels": b.labels})
        return h.hexdigest()
    return f"unhashed {type(data).__name__}"


@torch.no_grad()
def _run_over(teacher: Teacher, data: Any, batch_size: int, device, progress: bool,
              logits_key: LogitsKey) -> torch.Tensor:
    was = teacher.training if isinstance(teacher, nn.Module) else None
    if isinstance(teacher, nn.Module):
        teacher.eval()
        first = next(teacher.parameters(), None)
        device = first.device if first is not None else device
    chunks = []
    batches: Iterable = _input_batches(data, batch_size)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, desc="teacher", unit="batch", leave=False)
    try:
        for inputs in batches:
            out = call_model(teacher, to_device(inputs, device))
            chunks.append(logits_of(out, logits_key).float().cpu())
    finally:
        if was:
            teacher.train()
    if not chunks:
        raise ValueError("cannot run a teacher on an empty data set")
    return torch.cat(chunks)


def cached_teacher_logits(
    teacher: Teacher,
    data: Any,
    cache_dir: str | os.PathLike,
    *,
    transform: str = "identity",
    teacher_key: str | None = None,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    progress: bool = False,
    logits_key: LogitsKey = None,
) -> CacheResult:
    """Teacher logits on every example of `data`, from `cache_dir` if everything still matches,
    else computed and written there (logits.npy, memory-mapped on load, plus meta.json).

    `transform` names any preprocessing the data set applies that its bytes do not show;
    `teacher_key` identifies a callable teacher that has no weights to hash.
    """
    cache_dir = Path(cache_dir)
    teacher_fp = fingerprint_teacher(teacher, teacher_key)
    data_fp, n = fingerprint_data(data)
    want = {"format": CACHE_FORMAT, "teacher": teacher_fp, "data": data_fp,
            "transform": transform, "n": n}
    # One process at a time checks, builds and maps this cache: two builders with different
    # teachers would otherwise read each other's logits.
    with file_lock(cache_dir / ".lock"):
        return _load_or_build(teacher, data, cache_dir, want, batch_size, device, progress,
                              logits_key)


def _load_or_build(teacher, data, cache_dir: Path, want: dict, batch_size: int, device,
                   progress: bool, logits_key: LogitsKey) -> CacheResult:
    n = want["n"]
    meta_path, array_path = cache_dir / "meta.json", cache_dir / "logits.npy"
    reason = _mismatch(meta_path, array_path, want)
    if reason is None:
        return CacheResult(load_npy(array_path), array_path, False, "fingerprint matches")

    logits = _run_over(teacher, data, batch_size, device, progress, logits_key)
    if len(logits) != n:
        raise ValueError(f"the teacher gave {len(logits)} rows of logits for {n} examples")
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).any(dim=1).sum())
        raise ValueError(f"the teacher produced NaN or infinite logits on {bad} of {n} inputs")
    cache_dir.mkdir(parents=True, exist_ok=True)

    def write_arrays() -> dict:
        entry = write_npy(array_path, logits.numpy(), np.float32)
        return {"shape": entry["shape"], "sha256": entry["sha256"]}

    publish(meta_path, want, write_arrays)
    return CacheResult(load_npy(array_path), array_path, True, reason)


def _mismatch(meta_path: Path, array_path: Path, want: dict) -> str | None:
    """Why the cache cannot be used, or None if it can."""
    if not meta_path.is_file() or not array_path.is_file():
        return "no cache yet"
    have = read_meta(meta_path)
    if isinstance(have, str):
        return have
    for key, what in (("format", "cache format changed"), ("teacher", "teacher weights changed"),
                      ("data", "data changed"), ("transform", "transform changed"),
                      ("n", "data size changed")):
        if have.get(key) != want[key]:
            return what
    reason = check_npy(array_path, have.get("sha256"), have.get("shape"), "logits")
    if reason is None and have["shape"][:1] != [want["n"]]:
        return "cached logits have the wrong shape"
    return reason
