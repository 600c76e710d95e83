"""FitNets hints (Romero et al. 2015): a learned regressor maps a student layer's features
onto a teacher layer's, and the student learns to make them match.

    hint = mean over elements of (r(f_s) - f_t)^2, per example;   loss = hint_weight * hint
                                                                        + hard_weight * CE
The regressor is this method's own trainable part (the optimizer trains it, checkpoints save
it): a 1x1 convolution for feature maps (N, C, H, W) -- the student's map average-pooled to
the teacher's size if they differ -- and a linear map on the last axis otherwise ((N, D) or
token features (N, L, D)). Its sizes come from one probe batch (`setup`). The paper trains the
hint stage first and then KD; here the hint is one more term beside the hard labels, as most
libraries do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import hard_cross_entropy
from ..losses import upcast
from .base import Method, Outputs, check_nonneg

__all__ = ["FitNets"]


class FitNets(Method):
    name = "fitnets"

    def __init__(self, student_layer: str, teacher_layer: str, hint_weight: float = 1.0,
                 hard_weight: float = 1.0) -> None:
        super().__init__()
        for what, v in (("student_layer", student_layer), ("teacher_layer", teacher_layer)):
            if not isinstance(v, str) or not v:
                raise ValueError(f"fitnets: {what} must name a module, got {v!r}")
        self.student_layer, self.teacher_layer = student_layer, teacher_layer
        self.hint_weight = check_nonneg("hint_weight", hint_weight, "fitnets")
        self.hard_weight = check_nonneg("hard_weight", hard_weight, "fitnets")
        if self.hint_weight == 0 and self.hard_weight == 0:
            raise ValueError("fitnets: hint_weight and hard_weight are both 0")
        self.regressor: nn.Module | None = None

    def student_layers(self) -> list[str]:
        return [self.student_layer]

    def teacher_layers(self) -> list[str]:
        return [self.teacher_layer]

    def setup(self, student: Outputs, teacher: Outputs | None) -> None:
        fs = student.features[self.student_layer]
        ft = teacher.features[self.teacher_layer]
        if fs.dim() != ft.dim() or fs.dim() < 2:
            raise ValueError(f"fitnets: {self.student_layer!r} gives shape {tuple(fs.shape)} "
                             f"but {self.teacher_layer!r} gives {tuple(ft.shape)}; both need "
                             "the same rank: (N, C, H, W), (N, D) or (N, L, D)")
        if fs.dim() == 4:
            self.regressor = nn.Conv2d(fs.shape[1], ft.shape[1], kernel_size=1)
        else:
            if fs.dim() == 3 and fs.shape[1] != ft.shape[1]:
                raise ValueError(f"fitnets: sequence lengths differ ({fs.shape[1]} vs "
                                 f"{ft.shape[1]})")
            self.regressor = nn.Linear(fs.shape[-1], ft.shape[-1])

    def regress(self, fs: torch.Tensor, target_shape: torch.Size) -> torch.Tensor:
        if fs.dim() == 4 and fs.shape[-2:] != target_shape[-2:]:
            fs = F.adaptive_avg_pool2d(fs, target_shape[-2:])
        return self.regressor(fs.to(self.regressor.weight.dtype))

    def forward(self, student: Outputs, teacher: Outputs | None, batch) -> dict[str, torch.Tensor]:
        if self.regressor is None:
            raise RuntimeError("fitnets: setup() was not called (the trainer calls it)")
        ft = upcast(teacher.features[self.teacher_layer].detach())
        r = self.regress(student.features[self.student_layer], ft.shape)
        terms = {"hint": self.hint_weight * (r - ft).pow(2).flatten(1).mean(dim=1)}
        if self.hard_weight > 0 and batch.labels is not None:
            terms["hard"] = self.hard_weight * hard_cross_entropy(student.logits, batch.labels)
        return terms
