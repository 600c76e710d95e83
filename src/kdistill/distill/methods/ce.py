"""Plain cross-entropy on the hard labels: the baseline student, and the teacher's own
training. The trainer uses it when there is no teacher. On a partially labelled set the
unlabelled rows give 0 (a batch without a labelled row: a loss of 0, not NaN), and the mean is
over all rows, as every method's hard term (kdistill.distill.labels); a set without any label
is refused before training."""

from __future__ import annotations

import torch

from ..labels import hard_cross_entropy
from .base import Method, Outputs

__all__ = ["CrossEntropy"]


class CrossEntropy(Method):
    name = "ce"
    needs_teacher = False
    needs_labels = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"ce: label_smoothing must lie in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, student: Outputs, teacher: Outputs | None, batch) -> dict[str, torch.Tensor]:
        return {"hard": hard_cross_entropy(student.logits, batch.labels, self.label_smoothing)}
