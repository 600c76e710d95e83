"""Combining a generalist with its specialists at inference (Hinton et al. 2015 sec. 5; SPEC §4.4).

- which specialists are active on an example (their subset meets the generalist's top classes);
- how many subsets cover each example's true class (the rows of the paper's Table 4);
- the combination objective KL(p_g || q) + sum over active m of KL(p_m || group(q, S_m)) and
  its minimizer: a dual Newton solve for one scalar per active specialist, confirmed by the
  fixed-point (EM) update.

Conventions are those of `specialists.py` (a subset is a 1-D array of distinct class indices; a
specialist's outputs have len(subset) + 1 columns, the dustbin last). Pure numpy.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from .specialists import ArrayLike, check_labels, check_probs, check_subsets, group_probs

__all__ = [
    "active_specialists",
    "covering_counts",
    "combination_objective",
    "combine",
]


def active_specialists(generalist_probs: ArrayLike, subsets: Sequence[ArrayLike],
                       top_n: int = 1) -> np.ndarray:
    """(n, num_specialists) bool: specialist m is active on x when its subset meets the
    generalist's top_n classes for x (the paper: top_n = 1). Ties keep the lower class index."""
    p = check_probs(generalist_probs, "generalist_probs")
    subs = check_subsets(subsets, p.shape[1])
    if not 1 <= top_n <= p.shape[1]:
        raise ValueError(f"top_n must be between 1 and {p.shape[1]}, got {top_n}")
    top = np.argsort(-p, axis=1, kind="stable")[:, :top_n]
    in_top = np.zeros(p.shape, dtype=bool)
    in_top[np.arange(p.shape[0])[:, None], top] = True
    active = np.zeros((p.shape[0], len(subs)), dtype=bool)
    for m, s in enumerate(subs):
        active[:, m] = in_top[:, s].any(axis=1)
    return active


def covering_counts(labels: ArrayLike, subsets: Sequence[ArrayLike],
                    num_classes: int) -> np.ndarray:
    """How many subsets contain each example's true class (the rows of the paper's Table 4)."""
    y = check_labels(labels, num_classes)
    per_class = np.zeros(num_classes, dtype=np.int64)
    for s in check_subsets(subsets, num_classes):
        per_class[s] += 1
    return per_class[y]


def _check_combination(generalist_probs: ArrayLike, specialist_probs: Sequence[ArrayLike],
                       subsets: Sequence[ArrayLike], active: ArrayLike | None, top_n: int,
                       ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray]:
    pg = check_probs(generalist_probs, "generalist_probs")
    n, num_classes = pg.shape
    subs = check_subsets(subsets, num_classes)
    if len(specialist_probs) != len(subs):
        raise ValueError(f"got {len(specialist_probs)} specialist outputs for {len(subs)} subsets")
    pms = [check_probs(pm, f"specialist_probs[{m}]", width=s.size + 1, rows=n)
           for m, (pm, s) in enumerate(zip(specialist_probs, subs, strict=True))]
    for m, (pm, s) in enumerate(zip(pms, subs, strict=True)):
        if s.size == num_classes and np.any(pm[:, -1] > 1e-12):
            raise ValueError(f"specialist {m} covers every class but puts mass on its dustbin")
    if active is None:
        act = active_specialists(pg, subs, top_n) if subs else np.zeros((n, 0), dtype=bool)
    else:
        act = np.asarray(active)
        if act.shape != (n, len(subs)):
            raise ValueError(f"active must have shape ({n}, {len(subs)}), got {act.shape}")
        act = act.astype(bool)
    return pg, pms, subs, act


def _kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise KL(p || q) with 0 log 0 = 0 (inf where q = 0 < p)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=1)


def combination_objective(q: ArrayLike, generalist_probs: ArrayLike,
                          specialist_probs: Sequence[ArrayLike], subsets: Sequence[ArrayLike],
                          active: ArrayLike | None = None, top_n: int = 1) -> np.ndarray:
    """Per-example KL(p_g || q) + sum over active m of KL(p_m || group(q, S_m)) (SPEC §4.4)."""
    pg, pms, subs, act = _check_combination(generalist_probs, specialist_probs, subsets, active,
                                            top_n)
    qq = check_probs(q, "q", width=pg.shape[1], rows=pg.shape[0])
    total = _kl_rows(pg, qq)
    for m, (pm, s) in enumerate(zip(pms, subs, strict=True)):
        rows = act[:, m]
        if rows.any():
            total[rows] += _kl_rows(pm[rows], group_probs(qq[rows], s))
    return total


def _dual_newton(a: np.ndarray, weight: np.ndarray, outside: np.ndarray, dust: np.ndarray,
                 max_steps: int = 100) -> np.ndarray:
    """Solve the fixed-point equations of `combine` for one scalar per active specialist.

    At the fixed point q_c = a_c / (M - sum_{m: c not in S_m} nu_m), with a_c the part of the
    update that does not depend on q (p_g_c plus the specialists' mass on c) and
    nu_m = p_m_dust / Q_m_dust. The nu maximize the concave dual
        h(nu) = sum_m d_m log nu_m + sum_c a_c log(M - sum_{m: c not in S_m} nu_m),
    so a few Newton steps (with backtracking) find them even where the plain fixed-point
    iteration crawls (a generalist sure of a subset class, a specialist sure of its dustbin).

    a: (r, N); weight: (r,) = M; outside: (N, K) 1.0 where class c is outside S_k; dust: (r, K),
    0 for inactive specialists. Every specialist with dust > 0 needs some a > 0 outside its
    subset. Returns q (r, N), exact up to rounding where Newton converged; `combine` finishes
    with the fixed-point iteration either way.
    """
    use = dust > 0
    nu = use.astype(np.float64)  # nu = 1: every specialist agrees with q
    positive = a > 0

    def evaluate(nu_: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """Feasibility, h, its gradient, a_c / D_c and the (safe) D_c for the given rows."""
        denom = weight[rows, None] - nu_ @ outside.T
        ok = np.all(denom > 0, axis=1, where=positive[rows]) & np.all(
            nu_ > 0, axis=1, where=use[rows])
        safe = np.where(positive[rows] & (denom > 0), denom, 1.0)
        share = np.where(positive[rows], a[rows] / safe, 0.0)
        log_nu = np.log(np.where(use[rows] & (nu_ > 0), nu_, 1.0))
        value = (np.sum(np.where(use[rows], dust[rows] * log_nu, 0.0), axis=1)
                 + np.sum(np.where(positive[rows], a[rows] * np.log(safe), 0.0), axis=1))
        grad = np.divide(dust[rows], nu_, out=np.zeros_like(nu_), where=use[rows] & (nu_ > 0))
        grad -= np.where(use[rows], share @ outside, 0.0)
        return ok, value, grad, share, safe

    active_rows = np.flatnonzero(use.any(axis=1))
    eye = np.eye(outside.shape[1])
    for _ in range(max_steps):
        if active_rows.size == 0:
            break
        rows = active_rows
        _, value, grad, share, safe = evaluate(nu[rows], rows)
        residual = np.max(np.abs(grad * nu[rows]), axis=1)  # |d_m - nu_m Q_m|
        done = residual < 1e-15
        rows, value, grad, share, safe = (rows[~done], value[~done], grad[~done],
                                          share[~done], safe[~done])
        if rows.size == 0:
            break
        curv = share / safe  # a_c / D_c^2
        hess = -np.einsum("rc,cm,ck->rmk", curv, outside, outside)
        hess -= eye * np.where(use[rows], dust[rows] / np.where(use[rows], nu[rows], 1.0) ** 2,
                               0.0)[:, None, :]
        off = ~use[rows]
        hess = np.where(off[:, :, None] | off[:, None, :], 0.0, hess) - eye * off[:, None, :]
        try:
            step = np.linalg.solve(hess, -grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            break
        slope = np.sum(grad * step, axis=1)  # predicted rise of h: the Newton decrement
        searching = np.isfinite(slope) & (slope > 1e-24)
        # Start from the largest step that keeps nu > 0 and every needed D > 0 (to 95%).
        denom = weight[rows, None] - nu[rows] @ outside.T
        shrink = step @ outside.T  # how fast each D falls along the step
        limits = np.where(positive[rows] & (shrink > 0), denom / np.where(shrink > 0, shrink, 1.0),
                          np.inf).min(axis=1)
        limits = np.minimum(limits, np.where(use[rows] & (step < 0),
                                             -nu[rows] / np.where(step < 0, step, -1.0),
                                             np.inf).min(axis=1))
        t = np.minimum(1.0, 0.95 * limits)
        moved = np.zeros(rows.size, dtype=bool)
        for _ in range(30):
            idx = np.flatnonzero(searching)
            if idx.size == 0:
                break
            cand = nu[rows[idx]] + t[idx, None] * step[idx]
            ok, new_value, new_grad, _, _ = evaluate(cand, rows[idx])
            better = new_value >= value[idx] + 1e-4 * t[idx] * slope[idx]
            better |= np.sum(new_grad * step[idx], axis=1) >= 0  # still rising: h went up
            accept = ok & better
            nu[rows[idx[accept]]] = cand[accept]
            moved[idx[accept]] = True
            searching[idx[accept]] = False
            t[idx[~accept]] *= 0.5
        # Rows with no usable step are left to the fixed-point iteration.
        active_rows = rows[moved]
    denom = weight[:, None] - nu @ outside.T
    q = np.where(positive & (denom > 0), a / np.where(denom > 0, denom, 1.0), 0.0)
    return q / q.sum(axis=1, keepdims=True)


def combine(generalist_probs: ArrayLike, specialist_probs: Sequence[ArrayLike],
            subsets: Sequence[ArrayLike], active: ArrayLike | None = None, top_n: int = 1,
            tol: float = 1e-9, max_iter: int = 10_000, method: str = "newton") -> np.ndarray:
    """The distribution q over all classes that best agrees with the generalist and the active
    specialists: argmin_q KL(p_g || q) + sum_m KL(p_m || group(q, S_m)) (SPEC §4.4, Eq. 5).

    generalist_probs: (n, N) at T = 1. specialist_probs[m]: (n, len(S_m) + 1), dustbin last,
    already dustbin-corrected; rows where m is inactive are ignored. active: (n, M) bool, or
    None to take the specialists whose subsets meet the generalist's top_n classes. Examples
    with no active specialist get q = p_g.

    The answer is the fixed point of SPEC §4.4's update (EM for grouped observations of q; the
    objective is convex on the simplex, so the fixed point is the exact minimizer):
        q_c <- (p_g_c + sum_m [c in S_m] p_m_c + [c not in S_m] q_c p_m_dust / Q_m_dust) / M,
    M = 1 + number of active specialists, Q_m_dust = q's mass outside S_m. The update keeps q
    normalized and never increases the objective; it stops when no entry of q moves by more
    than tol. Its rate nears 1 when the generalist puts little mass outside a specialist's
    subset and the specialist much on its dustbin; from a plain start it then needs millions of
    steps, or stops early on its tiny steps far from the answer. So method="newton" (default)
    first solves the same fixed-point equations for one scalar per active specialist by
    Newton's method (see _dual_newton) and the update only confirms the result; method="em"
    runs the update alone, from every model's distribution spread evenly within its dustbin.
    Vectorized over examples (Newton over groups of examples with the same active set).
    """
    pg, pms, subs, act = _check_combination(generalist_probs, specialist_probs, subsets, active,
                                            top_n)
    if tol <= 0 or max_iter < 1:
        raise ValueError("tol must be > 0 and max_iter >= 1")
    if method not in ("newton", "em"):
        raise ValueError(f"method must be 'newton' or 'em', got {method!r}")
    n, num_classes = pg.shape
    weight = 1.0 + act.sum(axis=1)

    # Per active specialist: its rows, the complement of its subset, and its dustbin mass.
    parts = []
    fixed = pg.copy()  # terms that do not depend on q: p_g and the specialists' subset mass
    start = pg.copy()  # plain start: every model's distribution spread evenly within its dustbin
    outside_mat = np.zeros((num_classes, len(subs)))
    dust_mat = np.zeros((n, len(subs)))
    for m, (pm, s) in enumerate(zip(pms, subs, strict=True)):
        outside = np.flatnonzero(~np.isin(np.arange(num_classes), s))
        outside_mat[outside, m] = 1.0
        rows = np.flatnonzero(act[:, m])
        if rows.size == 0:
            continue
        fixed[np.ix_(rows, s)] += pm[rows, :-1]
        start[np.ix_(rows, s)] += pm[rows, :-1]
        if outside.size:
            dust = pm[rows, -1]
            dust_mat[rows, m] = dust
            start[np.ix_(rows, outside)] += dust[:, None] / outside.size
            parts.append((rows, outside, dust))
    q = start / weight[:, None]

    if method == "newton" and parts:
        # Newton needs some q-independent mass outside each subset with dustbin mass; rows
        # without it (exact zeros in p_g) keep the plain start. Rows are solved in groups with
        # the same active specialists, so each solve only sees those.
        ok = ~np.any((dust_mat > 0) & (fixed @ outside_mat <= 0), axis=1) & act.any(axis=1)
        patterns, group = np.unique(act[ok], axis=0, return_inverse=True)
        ok_rows = np.flatnonzero(ok)
        for g, pattern in enumerate(patterns):
            rows = ok_rows[group.ravel() == g]
            on = np.flatnonzero(pattern)
            q[rows] = _dual_newton(fixed[rows], weight[rows], outside_mat[:, on],
                                   dust_mat[np.ix_(rows, on)])

    for _ in range(max_iter):
        new = fixed.copy()
        for rows, outside, dust in parts:
            q_out = q[np.ix_(rows, outside)]
            mass = q_out.sum(axis=1)
            ratio = np.divide(dust, mass, out=np.zeros_like(dust), where=mass > 0)
            new[np.ix_(rows, outside)] += q_out * ratio[:, None]
        new /= weight[:, None]
        change = np.max(np.abs(new - q))
        q = new
        if change < tol:
            break
    else:
        warnings.warn(f"combine did not converge in {max_iter} iterations "
                      f"(last change {change:.3g})", RuntimeWarning, stacklevel=2)
    return q
