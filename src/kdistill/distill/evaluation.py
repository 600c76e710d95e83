"""Predictions and metrics of a model (in eval mode) over any labelled data: an ArrayDataset,
or a DataLoader of tuple or dict batches. An evaluation set must be fully labelled: a partially
labelled one (-1 rows, kdistill.distill.labels) is refused, since its metrics would silently
describe only its labelled part."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .adapters import LogitsKey, call_model, logits_of, split_batch, to_device
from .data import ArrayDataset
from .labels import check_fully_labelled
from .metrics import classification_metrics
from .teachers import run_teacher

__all__ = ["predict_logits", "evaluate"]


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2048,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    return run_teacher(model, x, batch_size=batch_size, device=device)


@torch.no_grad()
def _loader_logits(model: nn.Module, loader: Iterable, device, logits_key: LogitsKey
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    was = model.training
    model.eval()
    logits, labels = [], []
    try:
        for raw in loader:
            b = split_batch(raw)
            if b.labels is None:
                raise ValueError("evaluation data has no labels")
            out = call_model(model, to_device(b.inputs, device))
            logits.append(logits_of(out, logits_key).float().cpu())
            labels.append(torch.as_tensor(b.labels).long().cpu())
    finally:
        model.train(was)
    if not logits:
        raise ValueError("evaluation data is empty")
    y = torch.cat(labels)
    check_fully_labelled(y, "evaluation data")
    return torch.cat(logits), y


def evaluate(model: nn.Module, data: ArrayDataset | Iterable, batch_size: int = 2048,
             device: torch.device | str = "cpu", logits_key: LogitsKey = None) -> dict:
    """Errors, accuracy, NLL and ECE of `model` in eval mode on a labelled data set."""
    if isinstance(data, ArrayDataset):
        if data.y is None:
            raise ValueError(f"{data.name} has no labels to evaluate against")
        if data.partial_labels:
            check_fully_labelled(data.y, data.name)
        if logits_key is None:
            logits = predict_logits(model, data.x, batch_size, device)
        else:
            logits, _ = _loader_logits(model, [(data.x[i:i + batch_size],
                                                data.y[i:i + batch_size])
                                               for i in range(0, len(data), batch_size)],
                                       device, logits_key)
        if logits.shape[1] != data.num_classes:
            raise ValueError(f"model outputs {logits.shape[1]} classes but {data.name} has "
                             f"{data.num_classes}")
        return classification_metrics(logits, data.y.cpu().long())
    logits, labels = _loader_logits(model, data, device, logits_key)
    return classification_metrics(logits, labels)
