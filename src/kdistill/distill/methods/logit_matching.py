"""Logit matching (Ba & Caruana 2014; Hinton et al. 2015, eq. 4, the T -> infinity limit of the
T^2-scaled soft term): squared error between zero-meaned student and teacher logits,
(1 / 2N) * ||(z - mean z) - (v - mean v)||^2 per example, plus an optional hard term."""

from __future__ import annotations

import torch

from ..labels import hard_cross_entropy
from ..losses import logit_matching_loss
from .base import Method, Outputs, check_nonneg

__all__ = ["LogitMatching"]


class LogitMatching(Method):
    name = "logit_matching"

    def __init__(self, soft_weight: float = 1.0, hard_weight: float = 0.0) -> None:
        super().__init__()
        self.soft_weight = check_nonneg("soft_weight", soft_weight, "logit_matching")
        self.hard_weight = check_nonneg("hard_weight", hard_weight, "logit_matching")
        if self.soft_weight == 0 and self.hard_weight == 0:
            raise ValueError("logit_matching: soft_weight and hard_weight are both 0")

    def forward(self, student: Outputs, teacher: Outputs | None, batch) -> dict[str, torch.Tensor]:
        terms = {}
        if self.soft_weight > 0:
            terms["soft"] = self.soft_weight * logit_matching_loss(
                student.logits, teacher.logits, reduction="none")
        if self.hard_weight > 0 and batch.labels is not None:
            terms["hard"] = self.hard_weight * hard_cross_entropy(student.logits, batch.labels)
        if not terms:
            raise ValueError("logit_matching: soft_weight is 0 and this batch has no labels")
        return terms
