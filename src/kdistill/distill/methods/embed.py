"""Embedding distillation: a student that reproduces the teacher's output *vectors* (e.g. a
sentence encoder's embeddings), for users who need the same vectors at a fraction of the cost.

With s, t the student's and teacher's outputs (b, D) and s^, t^ their L2-normalized rows,
    match    = 1 - cos(s_i, t_i)                    per example  ("cosine"), or
               ||s_i - t_i||^2 / D                  per example  ("mse")
    relation = ||S^ S^T - T^ T^T||_F^2 / b^2        a batch scalar: the pairwise cosine
                                                    similarities, what retrieval reads
    loss     = match_weight * match + relation_weight * relation
The outputs must have the same width. No labels are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..losses import upcast
from .base import Method, Outputs, check_nonneg

__all__ = ["Embed", "similarity_relation"]


def similarity_relation(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two (b, b) cosine-similarity matrices."""
    sn, tn = F.normalize(s, dim=1), F.normalize(t, dim=1)
    return (sn @ sn.T - tn @ tn.T).pow(2).sum() / len(s) ** 2


class Embed(Method):
    name = "embed"

    def __init__(self, match: str = "cosine", match_weight: float = 1.0,
                 relation_weight: float = 1.0) -> None:
        super().__init__()
        if match not in ("cosine", "mse"):
            raise ValueError(f"embed: match must be 'cosine' or 'mse', got {match!r}")
        self.match = match
        self.match_weight = check_nonneg("match_weight", match_weight, "embed")
        self.relation_weight = check_nonneg("relation_weight", relation_weight, "embed")
        if self.match_weight == 0 and self.relation_weight == 0:
            raise ValueError("embed: match_weight and relation_weight are both 0")

    def forward(self, student: Outputs, teacher: Outputs | None, batch) -> dict[str, torch.Tensor]:
        s, t = upcast(student.logits), upcast(teacher.logits).detach()
        if s.shape != t.shape:
            raise ValueError(f"embed: student outputs {tuple(s.shape)} and teacher outputs "
                             f"{tuple(t.shape)} differ in shape")
        terms = {}
        if self.match_weight > 0:
            if self.match == "cosine":
                per = 1.0 - F.cosine_similarity(s, t, dim=1)
            else:
                per = (s - t).pow(2).mean(dim=1)
            terms["match"] = self.match_weight * per
        if self.relation_weight > 0:
            terms["relation"] = self.relation_weight * similarity_relation(s, t)
        return terms
