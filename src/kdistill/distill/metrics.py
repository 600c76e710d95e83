"""Classification metrics from logits: errors, accuracy, NLL and expected calibration error.
Rows labelled -1 (unlabelled, kdistill.distill.labels) are left out: the metrics describe the
labelled rows and `n` counts them. (`evaluate` refuses such a set outright.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .labels import labelled_mask

__all__ = ["classification_metrics", "expected_calibration_error"]


def expected_calibration_error(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins: sum_b |B|/n * |accuracy(B) - confidence(B)|."""
    conf, pred = probs.max(dim=1)
    correct = (pred == y).float()
    bins = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    ece = torch.zeros((), dtype=torch.float64)
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            gap = (correct[mask].mean() - conf[mask].mean()).abs().double()
            ece += gap * mask.double().mean()
    return float(ece)


def classification_metrics(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> dict:
    keep = labelled_mask(y)
    if not bool(keep.all()):
        if not bool(keep.any()):
            raise ValueError("classification metrics: every row is unlabelled (-1)")
        logits, y = logits[keep], y[keep]
    logits = logits.float()
    pred = logits.argmax(dim=1)
    errors = int((pred != y).sum())
    probs = F.softmax(logits, dim=1)
    return {
        "n": len(y),
        "errors": errors,
        "accuracy": 1.0 - errors / max(len(y), 1),
        "nll": float(F.cross_entropy(logits, y)),
        "ece": expected_calibration_error(probs, y, n_bins),
    }
