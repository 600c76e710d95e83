"""Adapters between the engine and real models and data: what a batch holds, how a model is
called on it, and where its logits are in what it returns.

A batch may be a tensor `x`; a tuple `(x,)`, `(x, y)` or `(x, y, index)`; or a dict (Hugging
Face style) whose `labels` (or `label`, `y`) and `index` keys are the targets and the example
positions and whose other keys are the model's inputs (`input_ids`, `attention_mask`, ...,
or one `x`). A model may return a tensor, a tuple (logits first), a dict or a Hugging Face
`ModelOutput` (`.logits`); `logits_key` names another key, or a function picks the logits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Batch", "split_batch", "call_model", "logits_of", "to_device", "batch_length",
           "take", "LABEL_KEYS", "INDEX_KEYS"]

LABEL_KEYS = ("labels", "label", "y")
INDEX_KEYS = ("index", "idx")
LogitsKey = str | Callable[[Any], torch.Tensor] | None


@dataclass
class Batch:
    """One batch as the engine sees it: the model inputs (a tensor or a dict of tensors), the
    labels (or None), the examples' positions in the data set (or None)."""

    inputs: Any
    labels: torch.Tensor | None = None
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return batch_length(self.inputs)


def split_batch(batch: Any) -> Batch:
    """Sort a loader's batch into inputs, labels and index (see the module docstring)."""
    if isinstance(batch, Batch):
        return batch
    if isinstance(batch, torch.Tensor):
        return Batch(batch)
    if isinstance(batch, Mapping):
        labels = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        index = next((batch[k] for k in INDEX_KEYS if k in batch), None)
        inputs = {k: v for k, v in batch.items() if k not in LABEL_KEYS + INDEX_KEYS}
        if not inputs:
            raise ValueError(f"a dict batch needs at least one input key besides labels and "
                             f"index; got keys {sorted(batch)}")
        if set(inputs) == {"x"}:
            inputs = inputs["x"]
        return Batch(inputs, labels, index)
    if isinstance(batch, (tuple, list)):
        if not 1 <= len(batch) <= 3:
            raise ValueError(f"a tuple batch is (x,), (x, y) or (x, y, index); got {len(batch)} "
                             "items")
        return Batch(batch[0], batch[1] if len(batch) > 1 else None,
                     batch[2] if len(batch) > 2 else None)
    raise ValueError(f"cannot read a batch of type {type(batch).__name__}: use a tensor, a "
                     "tuple (x, y[, index]) or a dict")


def to_device(obj: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """Move tensors (inside dicts, tuples and lists too) to `device`; float64 becomes float32,
    the dtype every model here computes in."""
    if isinstance(obj, torch.Tensor):
        if obj.dtype == torch.float64:
            obj = obj.float()
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device, non_blocking) for v in obj)
    return obj


def batch_length(inputs: Any) -> int:
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    if isinstance(inputs, Mapping):
        for v in inputs.values():
            if isinstance(v, torch.Tensor):
                return int(v.shape[0])
    if isinstance(inputs, (tuple, list)) and inputs:
        return batch_length(inputs[0])
    raise ValueError(f"cannot tell the batch size of inputs of type {type(inputs).__name__}")


def take(inputs: Any, index: torch.Tensor | slice) -> Any:
    """Rows `index` of every tensor in `inputs` (a tensor or a dict of tensors)."""
    if isinstance(inputs, torch.Tensor):
        return inputs[index]
    if isinstance(inputs, Mapping):
        return {k: (v[index] if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    raise ValueError(f"cannot index inputs of type {type(inputs).__name__}")


def call_model(model: Callable, inputs: Any) -> Any:
    """A dict of several inputs is passed as keyword arguments (`model(**batch)`), anything else
    positionally."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(inputs)


def logits_of(output: Any, key: LogitsKey = None) -> torch.Tensor:
    """The logits tensor in a model's output. `key`: a dict key / attribute name (default
    `logits`), or a function of the output."""
    if callable(key):
        out = key(output)
    elif isinstance(output, torch.Tensor):
        if key not in (None, "logits"):
            raise ValueError(f"the model returned a tensor, which has no key {key!r}")
        out = output
    elif isinstance(output, Mapping) or hasattr(output, "keys"):  # dict, ModelOutput
        name = key or "logits"
        if name not in output:
            raise ValueError(f"the model's output has no {name!r}; its keys: "
                             f"{sorted(output.keys())} (name the logits with logits_key)")
        out = output[name]
    elif isinstance(output, (tuple, list)) and output and key is None:
        out = output[0]
    elif key is not None and hasattr(output, key):
        out = getattr(output, key)
    else:
        raise ValueError(f"cannot find logits in a model output of type "
                         f"{type(output).__name__}: return a tensor, a tuple, a dict with "
                         f"'logits', or pass logits_key")
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the logits must be a tensor, got {type(out).__name__}")
    return out
