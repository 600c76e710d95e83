"""Hinton, Vinyals & Dean (2015): match the teacher's softened distribution.

    soft = T^2 * KL(softmax(v / T) || softmax(z / T)),   hard = CE(z, y) at T = 1
    loss = soft_weight * soft + hard_weight * hard      (hard only where labels exist)

On a partially labelled set the soft term covers every row and the hard term is 0 on the
unlabelled ones (a mean over the whole batch: kdistill.distill.labels says why).

With `standardize=True` both sides' logits are z-scored per example first (Sun et al. 2024,
"Logit Standardization in Knowledge Distillation"), so the student matches the teacher's
logit *relations* rather than their scale; T then acts on standardized logits.
"""

from __future__ import annotations

import torch

from ..labels import hard_cross_entropy
from ..losses import soft_target_loss, upcast
from .base import Method, Outputs, check_flag, check_nonneg, check_positive

__all__ = ["KD", "standardize_logits"]


def standardize_logits(z: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(z - mean) / std per example (population std); a constant row maps to zeros."""
    z = upcast(z)
    centered = z - z.mean(dim=-1, keepdim=True)
    return centered / (centered.pow(2).mean(dim=-1, keepdim=True).sqrt() + eps)


def _weighted(weight: float, term: torch.Tensor) -> torch.Tensor:
    """weight * term; a weight of 1 adds no op (x * 1.0 == x exactly, and so is its gradient)."""
    return term if weight == 1.0 else weight * term


class KD(Method):
    name = "kd"

    def __init__(self, temperature: float = 4.0, soft_weight: float = 1.0,
                 hard_weight: float = 0.1, standardize: bool = False) -> None:
        super().__init__()
        m = self.name
        self.temperature = check_positive("temperature", temperature, m)
        self.soft_weight = check_nonneg("soft_weight", soft_weight, m)
        self.hard_weight = check_nonneg("hard_weight", hard_weight, m)
        if self.soft_weight == 0 and self.hard_weight == 0:
            raise ValueError(f"{m}: soft_weight and hard_weight are both 0: the loss would be "
                             "constant")
        self.standardize = check_flag("standardize", standardize, m)

    def forward(self, student: Outputs, teacher: Outputs | None, batch) -> dict[str, torch.Tensor]:
        z, v = student.logits, teacher.logits
        if self.standardize:
            z, v = standardize_logits(z), standardize_logits(v)
        terms = {}
        if self.soft_weight > 0:
            terms["soft"] = _weighted(self.soft_weight,
                                      soft_target_loss(z, v, self.temperature, "none"))
        if self.hard_weight > 0 and batch.labels is not None:
            terms["hard"] = _weighted(self.hard_weight,
                                      hard_cross_entropy(student.logits, batch.labels))
        if not terms:
            raise ValueError(f"{self.name}: soft_weight is 0 and this batch has no labels: "
                             "nothing to learn from")
        return terms
