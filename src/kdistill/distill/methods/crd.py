"""Contrastive representation distillation (Tian, Krishnan & Isola 2020, "Contrastive
Representation Distillation").

Linear embeddings g_s, g_t map one named layer of each side (flattened) to `feat_dim`
dimensions, L2-normalized. A memory bank per side, (num_examples, feat_dim), holds each
example's last embedding. For an example i of the batch and its student embedding u, the
critic scores the teacher's embedding of i (the positive) and K teacher-bank entries of other
examples drawn uniformly (the negatives), with the NCE model of the paper (eq. 18-19):
    P(x) = exp(<u, x> / tau) / Z,   h(x) = P(x) / (P(x) + K / M)       M = num_examples
    nce_s(i) = -log h(positive) - sum_k log(1 - h(negative_k))
and symmetrically nce_t(i) for the teacher embedding against the student bank. Z is estimated
once, on the first batch, as M * mean(exp(score / tau)) over all its scores (one Z per side),
and then kept (a buffer, so it survives a resume). After each training step the banks move
toward the batch's embeddings: bank[i] <- normalize(momentum * bank[i] + (1 - momentum) * e_i).
    loss = crd_weight * (nce_s + nce_t) + hard_weight * CE(z, y)        per example
Defaults are the paper's CIFAR-100 setting: feat_dim 128, K = 16384 (capped at M - 1),
tau = 0.07 (the authors' released value), momentum 0.5, crd_weight 0.8, CE weight 1. The
positive is the current batch's embedding of the other side, as in the paper's critic
h(T, S) (its score trains both embeddings; the banks hold no gradient); the K negatives are
shared by both sides. The banks start as random unit vectors (seeded: every run starts from
the same banks). Batches must carry each example's `index` (its position in the data set).
Under several processes each keeps its own banks and its own Z (not synchronized).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import LayerPairMethod, Outputs, check_nonneg, check_positive, flat_features, hard_term

__all__ = ["CRD", "crd_nce", "sample_negatives"]


def sample_negatives(index: torch.Tensor, k: int, num_examples: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, k) indices drawn uniformly, with replacement, from the examples other than each
    row's own `index`."""
    r = torch.randint(0, num_examples - 1, (len(index), k), device=index.device,
                      generator=generator)
    return r + (r >= index.unsqueeze(1)).long()


def crd_nce(anchor: torch.Tensor, positive: torch.Tensor, bank: torch.Tensor,
            negatives: torch.Tensor, temperature: float, num_examples: int,
            z: float | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example NCE loss of `anchor` (n, d) against its `positive` (n, d) and the bank rows
    `negatives` (n, K), and the Z it used (estimated from these scores when `z` is None)."""
    pos = (anchor * positive).sum(dim=1, keepdim=True)
    if bank.shape[0] <= negatives.numel():
        # all scores (n, M), then pick: a copy of the bank (M, d) is cheaper than gathering
        # (n, K, d) rows; a copy, since the caller updates the bank in place before backward
        neg = (anchor @ bank.T.clone()).gather(1, negatives)
    else:
        neg = torch.einsum("nkd,nd->nk", bank[negatives], anchor)
    logits = torch.cat([pos, neg], dim=1) / temperature       # log of exp(score / tau)
    if z is None:
        z = (torch.logsumexp(logits.detach().flatten(), 0) - math.log(logits.numel())).exp() \
            * num_examples
    log_p = logits - torch.log(torch.as_tensor(z, dtype=logits.dtype, device=logits.device))
    log_noise = math.log(negatives.shape[1] / num_examples)   # log(K * P_noise)
    # log h = -softplus(log_noise - log_p);  log(1 - h) = -softplus(log_p - log_noise)
    loss = F.softplus(log_noise - log_p[:, 0]) + F.softplus(log_p[:, 1:] - log_noise).sum(1)
    return loss, torch.as_tensor(z, dtype=logits.dtype)


class CRD(LayerPairMethod):
    name = "crd"

    def __init__(self, student_layer: str, teacher_layer: str, num_examples: int,
                 feat_dim: int = 128, num_negatives: int = 16384, temperature: float = 0.07,
                 momentum: float = 0.5, crd_weight: float = 0.8, hard_weight: float = 1.0,
                 ) -> None:
        super().__init__()
        self.set_layers(student_layer, teacher_layer)
        for what, v, least in (("num_examples", num_examples, 2), ("feat_dim", feat_dim, 1),
                               ("num_negatives", num_negatives, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"crd: {what} must be an integer >= {least}, got {v!r}")
        self.num_examples, self.feat_dim, self.num_negatives = num_examples, feat_dim, \
            num_negatives
        self.temperature = check_positive("temperature", temperature, "crd")
        self.momentum = check_nonneg("momentum", momentum, "crd")
        if self.momentum >= 1:
            raise ValueError(f"crd: momentum must lie in [0, 1), got {momentum!r}")
        self.crd_weight = check_nonneg("crd_weight", crd_weight, "crd")
        self.hard_weight = check_nonneg("hard_weight", hard_weight, "crd")
        if self.crd_weight == 0 and self.hard_weight == 0:
            raise ValueError("crd: crd_weight and hard_weight are both 0")
        g = torch.Generator().manual_seed(0)
        for side in ("student", "teacher"):
            bank = F.normalize(torch.randn(num_examples, feat_dim, generator=g), dim=1)
            self.register_buffer(f"{side}_bank", bank)
            self.register_buffer(f"{side}_z", torch.zeros(()))      # 0: not estimated yet
        self.embed_s: nn.Module | None = None
        self.embed_t: nn.Module | None = None
        self._index_checked = False
        self._z_ready = False      # a cache of "student_z > 0" (read once, then no sync)

    def setup(self, student: Outputs, teacher: Outputs | None) -> None:
        ds = flat_features(student, self.student_layer).shape[1]
        dt = flat_features(teacher, self.teacher_layer).shape[1]
        self.embed_s = nn.Linear(ds, self.feat_dim)
        self.embed_t = nn.Linear(dt, self.feat_dim)

    def embed(self, student: Outputs, teacher: Outputs) -> tuple[torch.Tensor, torch.Tensor]:
        if self.embed_s is None:
            raise RuntimeError("crd: setup() was not called (the trainer calls it)")
        w = self.embed_s.weight
        fs = flat_features(student, self.student_layer).to(w.dtype)
        ft = flat_features(teacher, self.teacher_layer, detach=True).to(w.dtype)
        return F.normalize(self.embed_s(fs), dim=1), F.normalize(self.embed_t(ft), dim=1)

    def forward(self, student: Outputs, teacher: Outputs | None, batch) -> dict[str, torch.Tensor]:
        index = batch.index
        if index is None:
            raise ValueError("crd: batches must carry each example's index in the data set "
                             "(a tensor `index`), for the memory banks")
        index = index.to(self.student_bank.device).long()
        if not self._index_checked:
            lo, hi = int(index.min()), int(index.max())
            if lo < 0 or hi >= self.num_examples:
                raise ValueError(f"crd: an index of {hi if lo >= 0 else lo} is outside the "
                                 f"data set of num_examples={self.num_examples}")
            self._index_checked = True
        es, et = self.embed(student, teacher)
        k = min(self.num_negatives, self.num_examples - 1)
        negatives = sample_negatives(index, k, self.num_examples)
        self._z_ready = self._z_ready or bool(self.student_z > 0)
        unset = not self._z_ready
        nce_s, z_s = crd_nce(es, et, self.teacher_bank, negatives, self.temperature,
                             self.num_examples, None if unset else self.student_z)
        nce_t, z_t = crd_nce(et, es, self.student_bank, negatives, self.temperature,
                             self.num_examples, None if unset else self.teacher_z)
        if self.training:
            with torch.no_grad():
                if unset:
                    self.student_z.fill_(float(z_s))
                    self.teacher_z.fill_(float(z_t))
                for bank, e in ((self.student_bank, es), (self.teacher_bank, et)):
                    moved = self.momentum * bank[index] + (1 - self.momentum) * e.to(bank.dtype)
                    bank[index] = F.normalize(moved, dim=1)
        terms = {"crd": self.crd_weight * (nce_s + nce_t)}
        terms.update(hard_term(self.hard_weight, student, batch))
        return terms
