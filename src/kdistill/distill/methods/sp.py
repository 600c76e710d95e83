"""Similarity-preserving KD (Tung & Mori 2019, "Similarity-Preserving Knowledge Distillation").

With F the flattened features (b, D) of one named layer, G = F F^T is the batch's (b, b)
similarity matrix, and G~ is G with each row L2-normalized. Then
    sp   = gamma / b^2 * ||G~_s - G~_t||_F^2     a batch scalar
    loss = sp + hard_weight * CE(z, y)
gamma = 3000 is the paper's CIFAR-10 setting. The two layers may differ in width. An all-zero
row (dead features) normalizes to zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LayerPairMethod, Outputs, check_nonneg, flat_features, hard_term

__all__ = ["SP", "sp_loss"]


def sp_loss(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """(1 / b^2) ||G~_s - G~_t||_F^2 of (b, D_s) and (b, D_t) features."""
    gs = F.normalize(fs @ fs.T, dim=1)
    gt = F.normalize(ft @ ft.T, dim=1)
    return (gs - gt).pow(2).sum() / len(fs) ** 2


class SP(LayerPairMethod):
    name = "sp"

    def __init__(self, student_layer: str, teacher_layer: str, gamma: float = 3000.0,
                 hard_weight: float = 1.0) -> None:
        super().__init__()
        self.set_layers(student_layer, teacher_layer)
        self.gamma = check_nonneg("gamma", gamma, "sp")
        self.hard_weight = check_nonneg("hard_weight", hard_weight, "sp")
        if self.gamma == 0 and self.hard_weight == 0:
            raise ValueError("sp: gamma and hard_weight are both 0")

    def forward(self, student: Outputs, teacher: Outputs | None, batch) -> dict[str, torch.Tensor]:
        fs = flat_features(student, self.student_layer)
        ft = flat_features(teacher, self.teacher_layer, detach=True)
        terms = {"sp": self.gamma * sp_loss(fs, ft)}
        terms.update(hard_term(self.hard_weight, student, batch))
        return terms
