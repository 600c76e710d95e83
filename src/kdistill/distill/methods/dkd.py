"""Decoupled knowledge distillation (Zhao et al. 2022, "Decoupled Knowledge Distillation").

KD's soft term splits into a target-class part and a non-target part:
    TCKD = T^2 * KL(b_t || b_s),  b = (p_target, 1 - p_target)        (binary)
    NCKD = T^2 * KL(p^_t || p^_s), p^ = softmax over the non-target classes only
    loss = alpha * TCKD + beta * NCKD + hard_weight * CE(z, y)
Defaults are the paper's CIFAR-100 setting (alpha 1, beta 8, T 4, CE weight 1). The paper
also ramps the distillation terms linearly over its first 20 of 240 epochs: with beta 8 they
start as a gradient about 8T times CE's. `warmup_steps` > 0 is that ramp. (It only delays what
beta 8 does to the league's 800-800 MLP at lr 0.05: NaN logits by step 24 without the ramp, by
steps 270-370 with a 358-step one; dkd_ls, on z-scored logits, trains.) It counts training
steps (the method does not know the epoch): step k weighs the DKD terms min(k / warmup, 1);
the count is a buffer, so it is checkpointed and resumes where it stopped. Everything is
computed from log-softmax with masks, so a binary problem (one non-target class, NCKD = 0)
and saturated teachers give finite values, not the inf/NaN of a log of a difference. An
unlabelled example (an unlabelled batch, or an UNLABELLED row of a partially labelled one)
uses the teacher's top class as its target, and has no hard term. `standardize=True` z-scores both
sides' logits per example before the decomposition (Sun et al. 2024, as in KD); the hard term
keeps the raw logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..labels import hard_cross_entropy, labelled_mask
from ..losses import upcast
from .base import Method, Outputs, check_flag, check_nonneg, check_positive
from .kd import standardize_logits

__all__ = ["DKD", "dkd_terms", "dkd_target"]


def dkd_target(labels: torch.Tensor | None, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Each row's target class: its label where it has one, the teacher's top class elsewhere."""
    top = teacher_logits.detach().argmax(dim=-1)
    if labels is None:
        return top
    return torch.where(labelled_mask(labels), labels, top)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor, keep: torch.Tensor | None = None
        ) -> torch.Tensor:
    """Row-wise KL(p || q) from log-probabilities; entries outside `keep` contribute 0."""
    inner = log_p.exp() * (log_p - log_q)
    if keep is not None:
        inner = torch.where(keep, inner, torch.zeros_like(inner))
    return inner.sum(dim=-1)


def dkd_terms(z: torch.Tensor, v: torch.Tensor, target: torch.Tensor, temperature: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example (TCKD, NCKD), each already times T^2; computed in float64 (as KD's soft
    term, so the T^2 factor does not amplify rounding), returned in the logits' dtype."""
    t = float(temperature)
    out_dtype = upcast(z).dtype
    z, v = z.double() / t, v.detach().double() / t
    gt = F.one_hot(target.long(), z.shape[-1]).bool()
    log_ps, log_pt = F.log_softmax(z, dim=-1), F.log_softmax(v, dim=-1)

    def binary(log_p: torch.Tensor) -> torch.Tensor:
        target_part = log_p.masked_fill(~gt, float("-inf")).logsumexp(dim=-1)
        other_part = log_p.masked_fill(gt, float("-inf")).logsumexp(dim=-1)
        return torch.stack([target_part, other_part], dim=-1)

    tckd = _kl(binary(log_pt), binary(log_ps))
    log_ns = F.log_softmax(z.masked_fill(gt, float("-inf")), dim=-1)
    log_nt = F.log_softmax(v.masked_fill(gt, float("-inf")), dim=-1)
    nckd = _kl(log_nt, log_ns, keep=~gt)
    return (tckd * t * t).to(out_dtype), (nckd * t * t).to(out_dtype)


class DKD(Method):
    name = "dkd"

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0,
                 hard_weight: float = 1.0, standardize: bool = False, warmup_steps: int = 0,
                 ) -> None:
        super().__init__()
        m = self.name
        self.alpha = check_nonneg("alpha", alpha, m)
        self.beta = check_nonneg("beta", beta, m)
        self.temperature = check_positive("temperature", temperature, m)
        self.hard_weight = check_nonneg("hard_weight", hard_weight, m)
        if self.alpha == 0 and self.beta == 0 and self.hard_weight == 0:
            raise ValueError(f"{m}: alpha, beta and hard_weight are all 0")
        self.standardize = check_flag("standardize", standardize, m)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) \
                or warmup_steps < 0:
            raise ValueError(f"{m}: warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        self.warmup_steps = warmup_steps
        if warmup_steps:   # only then: runs without a warm-up keep their state and identity
            self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def describe(self) -> dict:
        """Without `standardize` when it is off and `warmup_steps` when 0: runs from before
        the options keep their identity (and resume)."""
        d = super().describe()
        if not self.standardize:
            del d["standardize"]
        if not self.warmup_steps:
            del d["warmup_steps"]
        return d

    def _ramp(self) -> torch.Tensor | float:
        """This step's weight of the DKD terms; a training step with gradients counts."""
        if not self.warmup_steps:
            return 1.0
        if self.training and torch.is_grad_enabled():
            self.steps_done += 1
        return (self.steps_done.double() / self.warmup_steps).clamp(max=1.0)

    def forward(self, student: Outputs, teacher: Outputs | None, batch) -> dict[str, torch.Tensor]:
        target = dkd_target(batch.labels, teacher.logits)
        z, v = student.logits, teacher.logits
        if self.standardize:
            z, v = standardize_logits(z), standardize_logits(v)
        tckd, nckd = dkd_terms(z, v, target, self.temperature)
        ramp = self._ramp()
        terms = {"tckd": (self.alpha * ramp) * tckd, "nckd": (self.beta * ramp) * nckd}
        if self.hard_weight > 0 and batch.labels is not None:
            terms["hard"] = self.hard_weight * hard_cross_entropy(student.logits, batch.labels)
        return terms
