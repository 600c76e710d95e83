"""DIST (Huang et al. 2022, "Knowledge Distillation from A Stronger Teacher"): match the
*relations* of the teacher's predictions, not the predictions themselves.

With p = softmax(z / T) (student) and q = softmax(v / T) (teacher), a batch of n rows and C
classes, and d(a, b) = 1 - Pearson(a, b):
    inter_i = d(p_i, q_i)                       per example (relations between classes)
    intra   = (1 / C) * sum_j d(p_:j, q_:j)     a batch scalar (relations between examples)
    loss    = beta * T^2 * inter + gamma * T^2 * intra + hard_weight * CE(z, y)
Defaults are the paper's ImageNet setting (beta = gamma = 1, T = 1, CE weight 1); on CIFAR-100
the paper's setting is T = 4 (with beta = gamma = 2 as usually reproduced). A batch of one has
no intra-class relation: that term is 0. A constant row or column (a uniform prediction) has
correlation 0 with anything, so its distance is 1 and its gradient finite.
"""

from __future__ import annotations

import torch

from ..losses import upcast
from .base import Method, Outputs, check_nonneg, check_positive, hard_term

__all__ = ["DIST", "pearson_distance"]


def pearson_distance(a: torch.Tensor, b: torch.Tensor, dim: int, eps: float = 1e-8
                     ) -> torch.Tensor:
    """1 - Pearson correlation of a and b along `dim`; the denominator is floored at eps (not
    offset), so the value is exact wherever both sides vary."""
    a = a - a.mean(dim=dim, keepdim=True)
    b = b - b.mean(dim=dim, keepdim=True)
    norms = (a.pow(2).sum(dim=dim) * b.pow(2).sum(dim=dim)).clamp_min(eps * eps).sqrt()
    return 1.0 - (a * b).sum(dim=dim) / norms


class DIST(Method):
    name = "dist"

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0,
                 hard_weight: float = 1.0) -> None:
        super().__init__()
        self.beta = check_nonneg("beta", beta, "dist")
        self.gamma = check_nonneg("gamma", gamma, "dist")
        self.temperature = check_positive("temperature", temperature, "dist")
        self.hard_weight = check_nonneg("hard_weight", hard_weight, "dist")
        if self.beta == 0 and self.gamma == 0 and self.hard_weight == 0:
            raise ValueError("dist: beta, gamma and hard_weight are all 0")

    def forward(self, student: Outputs, teacher: Outputs | None, batch) -> dict[str, torch.Tensor]:
        t = self.temperature
        p = torch.softmax(upcast(student.logits) / t, dim=-1)
        q = torch.softmax(upcast(teacher.logits.detach()) / t, dim=-1)
        inter = pearson_distance(p, q, dim=1)
        # one example has no relation between examples: 0, still attached to the graph
        intra = pearson_distance(p, q, dim=0).mean() if len(p) > 1 else p.sum() * 0.0
        terms = {"inter": self.beta * t * t * inter, "intra": self.gamma * t * t * intra}
        terms.update(hard_term(self.hard_weight, student, batch))
        return terms
