"""A small text model: the mean of learned embeddings of hashed word n-grams, then a linear
layer (fastText-like). A few thousand times fewer FLOPs than a 6-layer transformer; it exports
to ONNX as a gather, a masked mean and a matmul."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BagOfNgrams"]


class BagOfNgrams(nn.Module):
    """(N, L) int64 ids (0 = padding) -> (N, out_features). `out_features` is the number of
    classes for a classifier, or the teacher's embedding width for an embedding student."""

    def __init__(self, buckets: int = 2 ** 15, dim: int = 32, out_features: int = 5,
                 dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("buckets", buckets), ("dim", dim), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"bag-of-ngrams: {name} must be an integer >= 1, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"bag-of-ngrams: dropout must lie in [0, 1), got {dropout}")
        self.embed = nn.Embedding(buckets + 1, dim, padding_idx=0)
        nn.init.normal_(self.embed.weight, std=0.1)
        with torch.no_grad():
            self.embed.weight[0].zero_()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, out_features)

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids > 0).unsqueeze(-1).to(self.embed.weight.dtype)
        total = (self.embed(ids) * mask).sum(dim=1)
        return total / mask.sum(dim=1).clamp_min(1.0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pooled(ids.long())))
