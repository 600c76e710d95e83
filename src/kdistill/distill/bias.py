"""Automatic output-bias fix by prior matching (SPEC §2.4).

A student distilled on a transfer set that lacks some classes learns output biases that are far
too low for those classes. The paper fixed this with an offset tuned on the test set. Here the
offsets are chosen without labels: shift the biases until the student's mean predicted
distribution on unlabelled data equals a target prior (training label frequencies, or the
teacher's mean prediction on the same data).

Pure numpy; this module imports nothing else from kdistill.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "label_prior",
    "teacher_prior",
    "mean_prediction",
    "match_prior",
    "match_prior_single",
    "oracle_offset",
]

_SUM_TOL = 1e-6


_TINY = np.finfo(np.float64).tiny


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _logsumexp(u: np.ndarray) -> np.ndarray:
    m = u.max(axis=1)
    return m + np.log(np.exp(u - m[:, None]).sum(axis=1))


def _check_logits(logits: np.ndarray | Sequence) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (n, num_classes) with n >= 1 and "
                         f"num_classes >= 2, got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or infinite values")
    return z


def _check_prior(target_prior: np.ndarray | Sequence, num_classes: int) -> np.ndarray:
    pi = np.asarray(target_prior, dtype=np.float64)
    if pi.shape != (num_classes,):
        raise ValueError(f"target_prior must have shape ({num_classes},) to match the logits, "
                         f"got {pi.shape}")
    if not np.all(np.isfinite(pi)):
        raise ValueError("target_prior contains NaN or infinite values")
    if np.any(pi <= 0):
        bad = int(np.flatnonzero(pi <= 0)[0])
        raise ValueError(f"target_prior must be strictly positive; class {bad} has {pi[bad]!r}")
    if abs(pi.sum() - 1.0) > _SUM_TOL:
        raise ValueError(f"target_prior must sum to 1, sums to {pi.sum():.8g}")
    return pi / pi.sum()


ClassesLike = int | Sequence[int] | np.ndarray


def _check_classes(classes: ClassesLike | None, num_classes: int) -> np.ndarray:
    if classes is None:
        return np.arange(num_classes)
    k = np.atleast_1d(np.asarray(classes))
    if k.size == 0:
        raise ValueError("classes must name at least one class")
    if k.ndim != 1 or not np.issubdtype(k.dtype, np.integer):
        raise ValueError(f"classes must be integer class indices, got {np.asarray(classes)!r}")
    if k.min() < 0 or k.max() >= num_classes:
        bad = int(k[(k < 0) | (k >= num_classes)][0])
        raise ValueError(f"class index {bad} out of range for {num_classes} classes")
    if np.unique(k).size != k.size:
        raise ValueError(f"classes contains duplicates: {k.tolist()}")
    return np.sort(k)


def label_prior(labels: np.ndarray | Sequence[int], num_classes: int,
                smoothing: float = 0.0) -> np.ndarray:
    """Class frequencies of integer labels, option (a) of SPEC §2.4.

    `smoothing` adds a pseudo-count to every class so that a class absent from `labels`
    still gets a positive prior (match_prior rejects zeros).
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if y.min() < 0 or y.max() >= num_classes:
        bad = int(y[(y < 0) | (y >= num_classes)][0])
        raise ValueError(f"label {bad} out of range for {num_classes} classes")
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    counts = np.bincount(y, minlength=num_classes).astype(np.float64) + smoothing
    return counts / counts.sum()


def teacher_prior(teacher_outputs: np.ndarray | Sequence, from_logits: bool = False) -> np.ndarray:
    """The teacher's mean predicted distribution (at T = 1) on unlabelled data, option (b).

    Needs no labels at all; matching it is the best bias-only fit of the student to the teacher.
    """
    if from_logits:
        return _softmax(_check_logits(teacher_outputs)).mean(axis=0)
    p = np.asarray(teacher_outputs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"teacher probabilities must have shape (n, num_classes), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("teacher probabilities contain NaN or infinite values")
    if np.any(p < 0):
        raise ValueError("teacher probabilities must be non-negative")
    if np.max(np.abs(p.sum(axis=1) - 1.0)) > 1e-3:
        raise ValueError("teacher probability rows must sum to 1 "
                         "(pass from_logits=True for logits)")
    pi = p.mean(axis=0)
    return pi / pi.sum()


def mean_prediction(logits: np.ndarray | Sequence,
                    offsets: np.ndarray | Sequence | None = None) -> np.ndarray:
    """Mean of softmax(logits + offsets) over examples: the quantity prior matching fixes."""
    z = _check_logits(logits)
    if offsets is not None:
        b = np.asarray(offsets, dtype=np.float64)
        if b.shape != (z.shape[1],):
            raise ValueError(f"offsets must have shape ({z.shape[1]},), got {b.shape}")
        z = z + b
    return _softmax(z).mean(axis=0)


def _bias_hessian(q: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Hessian of mean_x logsumexp(z + b) in b[free]: mean_x diag(q) - q q^T.

    The diagonal q_c (1 - q_c) is formed from the sum of the other classes where q_c is the
    row's largest, because 1 - q_c cancels to 0 for a confident student.
    """
    n = q.shape[0]
    top = q.argmax(axis=1)
    one_minus = 1.0 - q
    others = q.copy()
    others[np.arange(n), top] = 0.0
    one_minus[np.arange(n), top] = others.sum(axis=1)
    qf = q[:, free]
    hess = -(qf.T @ qf) / n
    hess[np.diag_indices_from(hess)] = (qf * one_minus[:, free]).mean(axis=0)
    return hess


def _newton_update(z: np.ndarray, b: np.ndarray, q: np.ndarray, pi: np.ndarray,
                   free: np.ndarray) -> np.ndarray | None:
    """One damped Newton step on F(b) = mean_x logsumexp(z + b) - pi[free] . b[free].

    The step is capped at 20 in logit units (F can be nearly flat, giving huge raw steps) and
    halved until F decreases (Armijo) or its slope along the step is <= 0 (F is convex, so it
    then decreased too). Changes of F are formed as mean_x log sum_c q_c exp(t s_c), which keeps
    them accurate. Returns None when no descent step is found.
    """
    pihat = q.mean(axis=0)
    grad = pihat[free] - pi[free]
    step = np.zeros_like(b)
    try:
        step[free] = -np.linalg.solve(_bias_hessian(q, free), grad)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(step)):
        return None
    largest = np.max(np.abs(step))
    if largest > 20.0:
        step *= 20.0 / largest
    slope0 = float(grad @ step[free])
    if slope0 >= 0:
        return None
    log_q = z + b - _logsumexp(z + b)[:, None]
    t = 1.0
    while t > 1e-12:
        change = float(np.mean(_logsumexp(log_q + t * step)))
        change -= t * float(pi[free] @ step[free])
        if change <= 1e-4 * t * slope0:
            return b + t * step
        if (_softmax(z + b + t * step).mean(axis=0)[free] - pi[free]) @ step[free] <= 0:
            return b + t * step
        t *= 0.5
    return None


def match_prior(logits: np.ndarray | Sequence,
                target_prior: np.ndarray | Sequence,
                classes: ClassesLike | None = None,
                tol: float = 1e-4,
                max_iter: int = 10_000,
                method: str = "newton") -> np.ndarray:
    """Offsets b to add to the output bias so that mean softmax(logits + b) matches the prior.

    The offsets minimize the convex F(b) = mean_x logsumexp(z(x) + b) - sum_{c in K} pi_c b_c,
    whose gradient is pihat - pi, so at the answer pihat_c = pi_c for the chosen classes K.
    Iterations stop when max_{c in K} |log(pi_c / pihat_c)| < tol (SPEC §2.4).

    method="em": SPEC §2.4's multiplicative update b_c += log(pi_c / pihat_c). Each step
    minimizes a Jensen upper bound of F, so F never rises, but it needs thousands of steps when
    the student is confident (F is then flat). method="newton" (default): Newton steps on F
    with a backtracking line search (falling back to the EM step where no Newton step is
    usable); same stopping rule and answer, usually in under 20 steps, at the cost of a
    |K| x |K| Hessian per step.

    With `classes` a strict subset K, the classes outside K stay at offset 0 (the paper's
    "+3.5 to the class-3 bias") and the EM step treats them as one lumped class with target mass
    1 - pi_K, which makes it the exact minimizer of the bound. With all classes only differences
    matter, and the returned offsets are centred to sum to 0.
    """
    z = _check_logits(logits)
    n, num_classes = z.shape
    pi = _check_prior(target_prior, num_classes)
    k = _check_classes(classes, num_classes)
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if method not in ("em", "newton"):
        raise ValueError(f"method must be 'em' or 'newton', got {method!r}")
    subset = k.size < num_classes
    rest = np.ones(num_classes, dtype=bool)
    rest[k] = False
    pi_rest = pi[rest].sum()
    # Newton works on the free offsets; with all classes one is pinned at 0 to fix the gauge.
    free = k if subset else k[:-1]

    b = np.zeros(num_classes)
    for _ in range(max_iter):
        q = _softmax(z + b)
        pihat = q.mean(axis=0)
        gap = np.log(pi[k] / np.maximum(pihat[k], _TINY))
        if np.max(np.abs(gap)) < tol:
            break
        em_step = np.zeros(num_classes)
        em_step[k] = gap
        if subset:
            # The lumped "rest" class moves by log(pi_rest / pihat_rest); re-gauging it back to 0
            # adds the opposite shift to every class in K.
            em_step[k] -= np.log(pi_rest / max(q[:, rest].sum(axis=1).mean(), _TINY))
        if method == "em":
            b = b + em_step
            continue
        new_b = _newton_update(z, b, q, pi, free)
        b = b + em_step if new_b is None else new_b
    else:
        warnings.warn(f"match_prior did not converge in {max_iter} iterations "
                      f"(max |log(pi/pihat)| = {np.max(np.abs(gap)):.3g})",
                      RuntimeWarning, stacklevel=2)
    if not subset:
        b -= b.mean()
    return b


def match_prior_single(logits: np.ndarray | Sequence, target: float, cls: int,
                       tol: float = 1e-10, max_iter: int = 200) -> float:
    """Offset d for one class so that mean softmax(z + d e_cls)_cls equals `target` (bisection).

    g(d) = mean_x sigmoid(s(x) + d) - target, with s = z_cls - logsumexp(z_others), is strictly
    increasing, so bisection finds the unique root; a check on match_prior(classes=[cls]).
    """
    z = _check_logits(logits)
    num_classes = z.shape[1]
    if not 0.0 < float(target) < 1.0:
        raise ValueError(f"target must lie strictly between 0 and 1, got {target!r}")
    c = int(_check_classes([cls], num_classes)[0])
    s = z[:, c] - _logsumexp(np.delete(z, c, axis=1))

    def g(d: float) -> float:
        # Stable sigmoid via logaddexp: sigmoid(u) = exp(-logaddexp(0, -u)).
        return float(np.exp(-np.logaddexp(0.0, -(s + d))).mean()) - float(target)

    lo, hi = -1.0, 1.0
    while g(lo) > 0:
        lo *= 2.0
        if lo < -1e6:
            raise ValueError("could not bracket the root; target too small for these logits")
    while g(hi) < 0:
        hi *= 2.0
        if hi > 1e6:
            raise ValueError("could not bracket the root; target too large for these logits")
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        if g(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    return 0.5 * (lo + hi)


def oracle_offset(logits: np.ndarray | Sequence,
                  labels: np.ndarray | Sequence[int],
                  classes: ClassesLike,
                  grid: np.ndarray | Sequence[float] | None = None) -> tuple[float, float]:
    """ORACLE, for reporting only: the offset, added to every class in `classes`, that maximizes
    accuracy on the given labelled data.

    This is how the paper chose +3.5 and -7.6 (tuned on the test set), so its result is
    optimistic; never use it to pick a model. Ties go to the offset closest to 0.
    Returns (offset, accuracy).
    """
    z = _check_logits(logits)
    y = np.asarray(labels)
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},) to match the logits, "
                         f"got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels out of range for {z.shape[1]} classes")
    k = _check_classes(classes, z.shape[1])
    if grid is None:
        grid = np.round(np.arange(-200, 201) * 0.1, 10)  # -20 .. 20 in steps of 0.1
    offsets = np.asarray(grid, dtype=np.float64)
    if offsets.ndim != 1 or offsets.size == 0 or not np.all(np.isfinite(offsets)):
        raise ValueError("grid must be a non-empty 1-D array of finite offsets")
    best_offset, best_acc = 0.0, -1.0
    for d in offsets[np.argsort(np.abs(offsets), kind="stable")]:
        shifted = z.copy()
        shifted[:, k] += d
        acc = float(np.mean(shifted.argmax(axis=1) == y))
        if acc > best_acc:
            best_offset, best_acc = float(d), acc
    return best_offset, best_acc
