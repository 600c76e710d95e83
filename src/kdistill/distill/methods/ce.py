"""Plain cross-entropy on the hard labels: the baseline student, and the teacher's own
training. The trainer uses it when there is no teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..losses import upcast
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
        return {"hard": F.cross_entropy(upcast(student.logits), batch.labels, reduction="none",
                                        label_smoothing=self.label_smoothing)}
