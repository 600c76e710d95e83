"""Label checks and the partially labelled convention.

A transfer set may hold a few labelled examples and many unlabelled ones (Hinton et al. 2015:
the soft term on every example, the hard term only where a label exists). Such a set marks each
unlabelled example with the label `UNLABELLED` (-1) and says so when it is built
(`ArrayDataset(..., partial_labels=True)`): without that opt-in a -1 is an out-of-range label,
refused as before, so a stray -1 in a labelled set is never silently ignored.

The hard term is cross-entropy with `ignore_index=UNLABELLED`, per example (`hard_cross_entropy`):
an unlabelled row gives exactly 0 and no gradient. The trainer sums per-example terms and
divides by the global batch size, so the hard term is a mean over *all* rows of the batch, and
its effective weight scales with the labelled fraction (hard_weight / fraction restores the
fully labelled scale). A mean over labelled rows only would need the labelled count of the
global batch on every rank and would no longer be one value per example.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["UNLABELLED", "check_labels", "labelled_mask", "hard_cross_entropy",
           "check_fully_labelled"]

UNLABELLED = -1


def check_labels(y, num_classes: int, what: str = "labels", partial: bool = False) -> None:
    """Labels are integers (any width, torch or numpy) in [0, num_classes - 1], one per row;
    with `partial`, UNLABELLED (-1) is accepted too."""
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y))
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        dtype = str(y.dtype).replace("torch.", "")
        raise ValueError(f"{what}: labels must be integers, got {dtype}")
    if y.dim() != 1:
        raise ValueError(f"{what}: labels must be one integer per example, got shape "
                         f"{tuple(y.shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"{what}: num_classes must be an integer >= 2, got {num_classes!r}")
    low = UNLABELLED if partial else 0
    if len(y) and (int(y.min()) < low or int(y.max()) >= num_classes):
        hint = ""
        if not partial and int(y.min()) == UNLABELLED:
            hint = (f" ({UNLABELLED} marks an unlabelled example only in a set built with "
                    "partial_labels=True)")
        raise ValueError(
            f"{what}: labels must lie in [{low}, {num_classes - 1}], "
            f"found range [{int(y.min())}, {int(y.max())}]{hint}"
        )
    if num_classes < 2:
        raise ValueError(f"{what}: num_classes must be an integer >= 2, got {num_classes!r}")


def labelled_mask(y: torch.Tensor) -> torch.Tensor:
    """True where a row has a label."""
    return y != UNLABELLED


def check_fully_labelled(y: torch.Tensor, what: str) -> None:
    """Metrics over a set with unlabelled rows would silently describe a subset: refuse."""
    missing = int((~labelled_mask(y)).sum())
    if missing:
        raise ValueError(f"{what}: {missing} of {len(y)} examples are unlabelled "
                         f"({UNLABELLED}); an evaluation set must be fully labelled")


def hard_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-example CE(z, y) in float32 (float64 kept); 0, with no gradient, on UNLABELLED rows.
    On labelled rows it equals torch's default cross-entropy bit for bit."""
    z = logits if logits.dtype == torch.float64 else logits.float()
    return F.cross_entropy(z, labels, reduction="none", ignore_index=UNLABELLED,
                           label_smoothing=label_smoothing)
