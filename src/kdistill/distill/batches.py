"""Training batches: index slices of in-memory tensors (the fast path, sharded by rank within
each global batch) or a user's DataLoader (its sampler shards), each with the cached teacher
logits of its examples and the global batch size the loss is divided by."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .adapters import Batch, batch_length, split_batch, take, to_device
from .augment import Augment
from .data import ArrayDataset
from .runtime import epoch_generator

__all__ = ["TrainBatch", "array_batches", "loader_batches", "probe_batch"]


@dataclass
class TrainBatch(Batch):
    cached: Any = None                   # cached teacher logits (or Outputs, view_cache.py)
    n_global: int = 0                    # examples in the global batch (all ranks)


def array_batches(x: torch.Tensor, y: torch.Tensor | None, t: torch.Tensor | None,
                  batch_size: int, augment: Augment | None, seed: int, epoch: int, rank: int,
                  world: int) -> Iterator[TrainBatch]:
    """This rank's share of each global batch of one shuffled epoch. Augmentation draws for
    the whole global batch on every rank, so N ranks see exactly what one process sees."""
    gen = epoch_generator(seed, epoch)
    n = len(x)
    perm = torch.randperm(n, generator=gen)
    for start in range(0, n, batch_size):
        glob = perm[start:start + batch_size]
        local = torch.tensor_split(torch.arange(len(glob)), world)[rank]
        if augment is None:
            idx = glob[local].to(x.device)
            xb = x[idx]
        else:
            gidx = glob.to(x.device)
            xb = take(augment(x[gidx], gen), local.to(x.device))
            idx = gidx[local.to(x.device)]
        yield TrainBatch(xb, None if y is None else y[idx], idx,
                         None if t is None else t[idx], len(glob))


def loader_batches(loader: Iterable, logits: torch.Tensor | None, device: torch.device,
                   augment: Augment | None, seed: int, epoch: int, world: int
                   ) -> Iterator[TrainBatch]:
    """Batches of a user's DataLoader (tensor, tuple or dict batches, see adapters); the
    `index` of each example picks its cached teacher logits."""
    gen = epoch_generator(seed, epoch)
    for raw in loader:
        b = split_batch(raw)
        inputs = to_device(b.inputs, device, non_blocking=True)
        labels = None if b.labels is None else _loader_labels(b.labels, device)
        cached = None
        if logits is not None:
            if b.index is None:
                raise ValueError("cached teacher logits with a DataLoader need each example's "
                                 "index in the batch: (x, y, index) or a dict with 'index' "
                                 "(kdistill.distill.cache.with_index wraps a Dataset)")
            cached = logits[torch.as_tensor(b.index).cpu().long()].to(device)
        if augment is not None:
            inputs = augment(inputs, gen)
        yield TrainBatch(inputs, labels, b.index, cached, batch_length(inputs) * world)


def _loader_labels(labels: Any, device: torch.device) -> torch.Tensor:
    """A DataLoader's labels on `device`; a negative one (-1 marks an unlabelled example only in
    an ArrayDataset built with partial_labels=True) is refused here, where the message is clear."""
    labels = torch.as_tensor(labels)
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"a training batch holds the label {int(labels.min())}: labels must "
                         "be >= 0 (partially labelled data, with -1 for unlabelled examples, "
                         "needs an ArrayDataset(..., partial_labels=True))")
    return labels.to(device).long()


def probe_batch(data: ArrayDataset | Iterable, logits: torch.Tensor | None,
                device: torch.device) -> TrainBatch:
    """A small batch to check shapes and hooks with, before any step."""
    if isinstance(data, ArrayDataset):
        return TrainBatch(data.x[:2].to(device), None, None,
                          None if logits is None else logits[:2].to(device), 2)
    try:
        first = next(iter(data))
    except StopIteration:
        raise ValueError("the training DataLoader is empty") from None
    except TypeError:
        raise ValueError(f"training data must be an ArrayDataset or an iterable of batches, "
                         f"got {type(data).__name__}") from None
    b = next(loader_batches([first], logits, device, None, 0, 0, 1))
    return b
