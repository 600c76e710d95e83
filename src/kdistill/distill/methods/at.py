"""Attention transfer (Zagoruyko & Komodakis 2017, "Paying More Attention to Attention").

For each pair j of named layers, the activation-based attention map of a feature map A of shape
(N, C, *spatial) is Q = mean over channels of |A|^p (p = 2; the paper sums over channels, which
the normalization below cancels), flattened per example. Then, per example,
    at  = (beta / 2) * sum_j mean over positions of (Q_s / ||Q_s||_2 - Q_t / ||Q_t||_2)^2
    loss = at + hard_weight * CE(z, y)
This is the paper's convention "beta = 1000 divided by the number of elements in the attention
map", with the squared L2 distance (smooth at a perfect match) rather than the plain norm of
eq. 2. Vectors (N, D) count as one channel over D positions. Where the two maps differ in
size, the larger attention map is average-pooled (adaptively) to the smaller one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..losses import upcast
from .base import Method, Outputs, check_layer, check_nonneg, check_positive, hard_term

__all__ = ["AT", "attention_map"]


def attention_map(f: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """(N, C, *spatial) -> (N, *spatial): mean over channels of |f|^p; (N, D) -> |f|^p."""
    f = upcast(f)
    if f.dim() < 2:
        raise ValueError(f"at: a feature map needs a batch axis and more, got shape "
                         f"{tuple(f.shape)}")
    a = f.abs().pow(p)
    return a if f.dim() == 2 else a.mean(dim=1)


def _pool_to(q: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if tuple(q.shape[1:]) == size:
        return q
    pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
    if len(size) not in pool:
        raise ValueError(f"at: cannot pool attention maps of shape {tuple(q.shape)}")
    return pool[len(size)](q.unsqueeze(1), size).squeeze(1)


def _names(what: str, value, method: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, Sequence) or not names:
        raise ValueError(f"{method}: {what} must name a module or a list of modules, got "
                         f"{value!r}")
    return tuple(check_layer(what, v, method) for v in names)


class AT(Method):
    name = "at"

    def __init__(self, student_layer: str | Sequence[str], teacher_layer: str | Sequence[str],
                 beta: float = 1000.0, p: float = 2.0, hard_weight: float = 1.0) -> None:
        super().__init__()
        self.student_layer = _names("student_layer", student_layer, "at")
        self.teacher_layer = _names("teacher_layer", teacher_layer, "at")
        if len(self.student_layer) != len(self.teacher_layer):
            raise ValueError(f"at: {len(self.student_layer)} student layers but "
                             f"{len(self.teacher_layer)} teacher layers; they pair up")
        self.beta = check_nonneg("beta", beta, "at")
        self.p = check_positive("p", p, "at")
        self.hard_weight = check_nonneg("hard_weight", hard_weight, "at")
        if self.beta == 0 and self.hard_weight == 0:
            raise ValueError("at: beta and hard_weight are both 0")

    def student_layers(self) -> list[str]:
        return list(self.student_layer)

    def teacher_layers(self) -> list[str]:
        return list(self.teacher_layer)

    def pair_loss(self, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        """Per-example mean squared difference of the normalized attention maps of one pair."""
        qs, qt = attention_map(fs, self.p), attention_map(ft.detach(), self.p)
        if qs.dim() != qt.dim():
            raise ValueError(f"at: feature maps of shapes {tuple(fs.shape)} and "
                             f"{tuple(ft.shape)} do not pair up (different ranks)")
        size = tuple(min(a, b) for a, b in zip(qs.shape[1:], qt.shape[1:]))
        qs = F.normalize(_pool_to(qs, size).flatten(1), dim=1)
        qt = F.normalize(_pool_to(qt, size).flatten(1), dim=1)
        return (qs - qt).pow(2).mean(dim=1)

    def forward(self, student: Outputs, teacher: Outputs | None, batch) -> dict[str, torch.Tensor]:
        total = sum(self.pair_loss(student.features[s], teacher.features[t])
                    for s, t in zip(self.student_layer, self.teacher_layer))
        terms = {"at": (self.beta / 2) * total}
        terms.update(hard_term(self.hard_weight, student, batch))
        return terms
