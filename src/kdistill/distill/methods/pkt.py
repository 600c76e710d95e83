"""Probabilistic knowledge transfer (Passalis & Tefas 2018, "Learning Deep Representations with
Probabilistic Knowledge Transfer").

Each side's features of one named layer (flattened, L2-normalized per example) define, within
the batch, the cosine kernel K_ij = (cos(f_i, f_j) + 1) / 2 and the conditional probabilities
p_j|i = K_ij / sum_{k != i} K_ik for j != i (the paper's eq. 6 excludes k = i). Then
    pkt  = weight * (1 / n) * sum_i KL(P_teacher(.|i) || P_student(.|i))   a batch scalar
    loss = pkt + hard_weight * CE(z, y)
The logs take an eps of 1e-7 as the paper's code does. weight defaults to 1 (the paper trains
on the PKT loss alone); libraries that add it to CE on CIFAR commonly use 30000. The two layers
may differ in width. A batch of one or two has nothing to match (each row holds at most one
probability, which is 1): the term is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LayerPairMethod, Outputs, check_nonneg, flat_features, hard_term

__all__ = ["PKT", "pkt_loss"]


def _conditional(f: torch.Tensor) -> torch.Tensor:
    f = F.normalize(f, dim=1)
    k = (f @ f.T + 1) / 2
    k = k.masked_fill(torch.eye(len(f), dtype=torch.bool, device=f.device), 0.0)
    return k / k.sum(dim=1, keepdim=True).clamp_min(1e-12)


def pkt_loss(fs: torch.Tensor, ft: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(1 / n) sum_i KL(P_t(.|i) || P_s(.|i)) of (n, D_s) and (n, D_t) features; 0 for n < 2."""
    if len(fs) < 2:
        return fs.sum() * 0.0
    ps, pt = _conditional(fs), _conditional(ft)
    return (pt * (torch.log(pt + eps) - torch.log(ps + eps))).sum() / len(fs)


class PKT(LayerPairMethod):
    name = "pkt"

    def __init__(self, student_layer: str, teacher_layer: str, weight: float = 1.0,
                 hard_weight: float = 1.0) -> None:
        super().__init__()
        self.set_layers(student_layer, teacher_layer)
        self.weight = check_nonneg("weight", weight, "pkt")
        self.hard_weight = check_nonneg("hard_weight", hard_weight, "pkt")
        if self.weight == 0 and self.hard_weight == 0:
            raise ValueError("pkt: weight and hard_weight are both 0")

    def forward(self, student: Outputs, teacher: Outputs | None, batch) -> dict[str, torch.Tensor]:
        fs = flat_features(student, self.student_layer)
        ft = flat_features(teacher, self.teacher_layer, detach=True)
        terms = {"pkt": self.weight * pkt_loss(fs, ft)}
        terms.update(hard_term(self.hard_weight, student, batch))
        return terms
