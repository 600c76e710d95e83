"""Softmax at temperature T and the distillation objective of Hinton, Vinyals & Dean (2015).

    L = w_soft * T^2 * KL(softmax_T(v) || softmax_T(z)) + w_hard * CE(z, y)

`z` are the student's logits, `v` the teacher's. The soft term uses the same T on both sides and
is computed in float32 (at large T the probabilities differ in the fourth decimal and fp16 loses
them). The T^2 factor keeps the soft gradient, which shrinks as 1/T^2, on the same scale as the
hard one when T changes. The hard term is at T = 1 and optional (a transfer set may be
unlabelled). Logit matching, the high-T limit, is `logit_matching_loss`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .labels import hard_cross_entropy

__all__ = [
    "softmax_t",
    "log_softmax_t",
    "soft_target_loss",
    "distillation_loss",
    "logit_matching_loss",
    "check_temperature",
    "check_weights",
    "check_logits_pair",
    "upcast",
]


def upcast(t: torch.Tensor) -> torch.Tensor:
    """float32 for half and bfloat16 (softmax at high T needs the digits), float64 kept (for
    gradcheck and float64 references)."""
    return t if t.dtype == torch.float64 else t.float()


def check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def check_weights(soft_weight: float, hard_weight: float) -> tuple[float, float]:
    ws, wh = float(soft_weight), float(hard_weight)
    for name, w in (("soft_weight", ws), ("hard_weight", wh)):
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {w!r}")
    if ws == 0 and wh == 0:
        raise ValueError("soft_weight and hard_weight are both 0: the loss would be constant")
    return ws, wh


def check_logits_pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"teacher and student disagree: teacher logits {tuple(teacher_logits.shape)}, "
            f"student logits {tuple(student_logits.shape)} (number of classes must match)"
        )


def softmax_t(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax of logits / T in float32 (T > 1 softens, T < 1 sharpens)."""
    return F.softmax(upcast(logits) / check_temperature(temperature), dim=-1)


def log_softmax_t(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return F.log_softmax(upcast(logits) / check_temperature(temperature), dim=-1)


def soft_target_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    reduction: str = "batchmean",
) -> torch.Tensor:
    """T^2 * KL(softmax_T(teacher) || softmax_T(student)), per example or averaged over the batch.

    KL rather than cross-entropy so that a perfect match logs 0; both have the same gradient in
    the student's logits, (q - p) / T before the T^2 factor. `batchmean` divides by the number of
    examples, not by examples x classes as torch's `mean` would.
    """
    t = check_temperature(temperature)
    check_logits_pair(student_logits, teacher_logits)
    # In float64: at high T, p and q agree to ~1/T^2 and the T^2 factor would amplify float32
    # rounding (1% off at T = 100, sign flips at T = 1000); the result keeps the input's dtype.
    log_q = F.log_softmax(student_logits.double() / t, dim=-1)
    log_p = F.log_softmax(teacher_logits.detach().double() / t, dim=-1)
    per_example = (log_p.exp() * (log_p - log_q)).sum(dim=-1) * (t * t)
    return _reduce(per_example.to(upcast(student_logits).dtype), reduction)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    soft_weight: float = 1.0,
    hard_weight: float = 0.0,
    reduction: str = "batchmean",
) -> torch.Tensor:
    """w_soft * T^2 * KL(p_T || q_T) + w_hard * CE(student, targets).

    `teacher_logits=None` gives plain cross-entropy training (soft weight ignored); `targets=None`
    drops the hard term (an unlabelled transfer set), and a target of -1 (labels.UNLABELLED)
    drops it for that row alone (a partially labelled one; the mean stays over all rows).
    Returns per-example losses with `reduction="none"`.
    """
    ws, wh = check_weights(soft_weight, hard_weight)
    total = torch.zeros(student_logits.shape[0], device=student_logits.device)
    used = False
    if teacher_logits is not None and ws > 0:
        total = total + ws * soft_target_loss(student_logits, teacher_logits, temperature, "none")
        used = True
    if targets is not None and wh > 0:
        # Label range is checked once per data set (data.check_labels), not per step.
        ce = hard_cross_entropy(student_logits, targets)
        total = total + wh * ce
        used = True
    if not used:
        raise ValueError("nothing to train on: no teacher logits with soft_weight > 0 and no "
                         "targets with hard_weight > 0")
    return _reduce(total, reduction)


def logit_matching_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, reduction: str = "batchmean"
) -> torch.Tensor:
    """(1 / 2N) * ||z - mean(z) - (v - mean(v))||^2 per example: the T -> inf limit of the
    T^2-scaled soft loss (Hinton et al. 2015, eq. 4), the L2 logit regression of Ba & Caruana.

    Logits are zero-meaned per example first: softmax ignores a shift, squared error does not.
    """
    check_logits_pair(student_logits, teacher_logits)
    z = upcast(student_logits)
    v = upcast(teacher_logits.detach())
    z = z - z.mean(dim=-1, keepdim=True)
    v = v - v.mean(dim=-1, keepdim=True)
    per_example = (z - v).pow(2).sum(dim=-1) / (2 * z.shape[-1])
    return _reduce(per_example, reduction)


def _reduce(per_example: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "batchmean" or reduction == "mean":
        return per_example.mean()
    if reduction == "sum":
        return per_example.sum()
    if reduction == "none":
        return per_example
    raise ValueError(f"reduction must be 'batchmean', 'sum' or 'none', got {reduction!r}")
