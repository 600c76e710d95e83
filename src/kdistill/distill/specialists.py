"""Specialist models with a dustbin class (SPEC §4): the pure algorithms.

- finding confusable class subsets from the covariance of a generalist's predictions (§4.2);
- mapping labels and soft targets into a specialist's label space: its subset classes in the
  given order, then one dustbin class for everything else (§4.3);
- the prior correction of the dustbin logit for training data enriched with subset classes;
- the inference-time combination of the generalist with the active specialists (§4.4).

Conventions: a subset is a 1-D array of distinct class indices; a specialist's outputs have
len(subset) + 1 columns, the dustbin last. Pure numpy; imports nothing else from kdistill.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "prediction_covariance",
    "find_confusable_subsets",
    "specialist_label_map",
    "to_specialist_labels",
    "group_probs",
    "specialist_sample",
    "dustbin_correction",
    "correct_dustbin",
    "active_specialists",
    "covering_counts",
    "combination_objective",
    "combine",
]

ArrayLike = np.ndarray | Sequence
_ROW_SUM_TOL = 1e-4


# ----------------------------------------------------------------------------- validation


def _check_probs(probs: ArrayLike, name: str, width: int | None = None,
                 rows: int | None = None) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"{name} must have shape (n, classes) with n >= 1 and at least "
                         f"2 columns, got {p.shape}")
    if width is not None and p.shape[1] != width:
        raise ValueError(f"{name} must have {width} columns, got {p.shape[1]}")
    if rows is not None and p.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows to match the generalist, got {p.shape[0]}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.any(p < 0):
        raise ValueError(f"{name} must be non-negative (pass probabilities, not logits)")
    sums = p.sum(axis=1)
    if np.max(np.abs(sums - 1.0)) > _ROW_SUM_TOL:
        raise ValueError(f"{name} rows must sum to 1 (pass probabilities, not logits)")
    return p / sums[:, None]


def _check_subset(subset: ArrayLike, num_classes: int) -> np.ndarray:
    s = np.asarray(subset)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"a subset must be a non-empty 1-D array of class indices, got {s!r}")
    if not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"a subset must hold integer class indices, got dtype {s.dtype}")
    if s.min() < 0 or s.max() >= num_classes:
        bad = int(s[(s < 0) | (s >= num_classes)][0])
        raise ValueError(f"class index {bad} out of range for {num_classes} classes")
    if np.unique(s).size != s.size:
        raise ValueError(f"a subset contains duplicate classes: {s.tolist()}")
    return s.astype(np.int64)


def _check_subsets(subsets: Sequence[ArrayLike], num_classes: int) -> list[np.ndarray]:
    return [_check_subset(s, num_classes) for s in subsets]


def _check_labels(labels: ArrayLike, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y[(y < 0) | (y >= num_classes)][0])
        raise ValueError(f"label {bad} out of range for {num_classes} classes")
    return y


# ----------------------------------------------------------------------------- subsets (§4.2)


def prediction_covariance(probs: ArrayLike) -> np.ndarray:
    """Covariance (num_classes x num_classes) of predicted class probabilities over examples.

    Classes the generalist tends to predict together covary positively; no labels are needed.
    """
    p = _check_probs(probs, "probs")
    if p.shape[0] < 2:
        raise ValueError("need at least 2 examples to estimate a covariance")
    centred = p - p.mean(axis=0)
    return centred.T @ centred / (p.shape[0] - 1)


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows of x and rows of c, without an (n, k, d) array."""
    d2 = (x * x).sum(axis=1)[:, None] - 2.0 * x @ c.T + (c * c).sum(axis=1)[None, :]
    return np.maximum(d2, 0.0)


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, n_init: int,
            max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding; the best of n_init runs by inertia."""
    n = len(x)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(n_init):
        picks = [int(rng.integers(n))]
        closest = _sq_dist(x, x[picks[0]][None])[:, 0]
        for _ in range(1, k):
            total = closest.sum()
            pick = int(rng.choice(n, p=closest / total)) if total > 0 else int(rng.integers(n))
            picks.append(pick)
            closest = np.minimum(closest, _sq_dist(x, x[pick][None])[:, 0])
        c = x[picks].astype(np.float64)
        assign = np.full(n, -1)
        for _ in range(max_iter):
            d2 = _sq_dist(x, c)
            new = d2.argmin(axis=1)
            for j in range(k):  # refill an empty cluster with the worst-fitted point
                if not np.any(new == j):
                    far = int(d2[np.arange(n), new].argmax())
                    new[far] = j
                    d2[far, j] = 0.0
            if np.array_equal(new, assign):
                break
            assign = new
            c = np.stack([x[assign == j].mean(axis=0) for j in range(k)])
        inertia = float(((x - c[assign]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, assign, c)
    assert best is not None
    return best[1], best[2]


def find_confusable_subsets(probs: ArrayLike, num_subsets: int, subset_size: int | None = None,
                            seed: int = 0, n_init: int = 10,
                            max_iter: int = 300) -> list[np.ndarray]:
    """Class subsets that a generalist confuses, found without labels (SPEC §4.2).

    Each class is represented by its column of the covariance of the generalist's predicted
    probabilities, L2-normalized so that frequent classes do not dominate, and the columns
    are clustered with k-means (the paper: online k-means on the covariance columns).

    subset_size=None: the k-means partition (disjoint subsets, sizes vary).
    subset_size=s: overlapping subsets of exactly s classes, as the paper's 61 x 300 sets
    overlap. Rule: subset m starts from k-means cluster m; a cluster larger than s keeps its s
    members most similar (cosine) to its centroid; a smaller one is filled up with the
    non-members most similar to the centroid. A class then sits in its own cluster's subset
    (unless that cluster was cut) and in the subsets of the clusters it is close to.
    Identical subsets are merged, so fewer than num_subsets may come back.

    Returns sorted index arrays, ordered by their smallest class.
    """
    p = _check_probs(probs, "probs")
    num_classes = p.shape[1]
    if not 1 <= num_subsets <= num_classes:
        raise ValueError(f"num_subsets must be between 1 and the number of classes "
                         f"({num_classes}), got {num_subsets}")
    if subset_size is not None:
        if subset_size < 1:
            raise ValueError(f"subset_size must be >= 1, got {subset_size}")
        if subset_size >= num_classes:
            raise ValueError(f"subset_size ({subset_size}) must be smaller than the number of "
                             f"classes ({num_classes}) so that the dustbin is not empty")
    if n_init < 1 or max_iter < 1:
        raise ValueError("n_init and max_iter must be >= 1")
    cov = prediction_covariance(p)
    norms = np.linalg.norm(cov, axis=0)
    cols = np.divide(cov, norms, out=np.zeros_like(cov), where=norms > 0).T  # row c = class c
    assign, centres = _kmeans(cols, num_subsets, np.random.default_rng(seed), n_init, max_iter)

    subsets: list[np.ndarray] = []
    for j in range(num_subsets):
        members = np.flatnonzero(assign == j)
        if subset_size is None:
            if members.size:
                subsets.append(members)
            continue
        centre_norm = np.linalg.norm(centres[j])
        similarity = cols @ centres[j] / (centre_norm if centre_norm > 0 else 1.0)
        in_cluster = assign == j
        # Members first (most similar first), then non-members (most similar first).
        order = np.lexsort((-similarity, ~in_cluster))
        subsets.append(np.sort(order[:subset_size]))
    unique = {tuple(s.tolist()) for s in subsets}
    return [np.asarray(s, dtype=np.int64) for s in sorted(unique)]


# ----------------------------------------------------------------------------- label space (§4.3)


def specialist_label_map(subset: ArrayLike, num_classes: int) -> np.ndarray:
    """Map from global class to the specialist's label: position in `subset`, else the dustbin
    index len(subset)."""
    s = _check_subset(subset, num_classes)
    mapping = np.full(num_classes, s.size, dtype=np.int64)
    mapping[s] = np.arange(s.size)
    return mapping


def to_specialist_labels(labels: ArrayLike, subset: ArrayLike, num_classes: int) -> np.ndarray:
    """Hard labels in the specialist's label space (subset classes, then dustbin)."""
    y = _check_labels(labels, num_classes)
    return specialist_label_map(subset, num_classes)[y]


def group_probs(probs: ArrayLike, subset: ArrayLike) -> np.ndarray:
    """Distributions over all classes grouped to a specialist's label space: the subset's
    columns, then their complement's total mass as the dustbin (pi_m(q) in SPEC §4.4).

    Also turns a generalist's soft targets into a specialist's soft targets.
    """
    p = _check_probs(probs, "probs")
    s = _check_subset(subset, p.shape[1])
    outside = np.ones(p.shape[1], dtype=bool)
    outside[s] = False
    return np.concatenate([p[:, s], p[:, outside].sum(axis=1, keepdims=True)], axis=1)


def specialist_sample(labels: ArrayLike, subset: ArrayLike, num_classes: int,
                      num_samples: int | None = None, special_fraction: float = 0.5,
                      seed: int = 0) -> np.ndarray:
    """Indices of a specialist's training set: `special_fraction` of it from the subset's
    classes, the rest drawn at random from the other classes (the paper: half and half).

    num_samples=None takes every subset example once and as many others as the fraction asks.
    A group is drawn with replacement only when it has too few examples. The result is
    shuffled. Pass the same special_fraction to dustbin_correction.
    """
    y = _check_labels(labels, num_classes)
    s = _check_subset(subset, num_classes)
    if not 0.0 < special_fraction < 1.0:
        raise ValueError(f"special_fraction must lie strictly between 0 and 1, "
                         f"got {special_fraction}")
    inside = np.isin(y, s)
    special, other = np.flatnonzero(inside), np.flatnonzero(~inside)
    if special.size == 0 or other.size == 0:
        raise ValueError("labels must contain examples both inside and outside the subset")
    rng = np.random.default_rng(seed)
    if num_samples is None:
        n_special = special.size
        n_other = int(round(n_special * (1.0 - special_fraction) / special_fraction))
    else:
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        n_special = int(round(num_samples * special_fraction))
        n_special = min(max(n_special, 1), num_samples - 1)
        n_other = num_samples - n_special

    def draw(pool: np.ndarray, count: int) -> np.ndarray:
        if count == pool.size:
            return pool.copy()
        return rng.choice(pool, size=count, replace=count > pool.size)

    return rng.permutation(np.concatenate([draw(special, n_special), draw(other, n_other)]))


def dustbin_correction(natural_fraction: float, special_fraction: float = 0.5,
                       literal: bool = False) -> float:
    """Amount to add to a specialist's dustbin logit after training on enriched data.

    A specialist trained with fraction r of its examples from its subset S (the paper: 0.5),
    where S's natural share of the data is f, has posteriors skewed towards S. Bayes' rule
    with the training prior swapped for the natural one gives the exact correction
        log( (1 - f) / f * r / (1 - r) )       (SPEC §4.3; log((1 - f)/f) for r = 0.5).
    literal=True gives the paper's wording, "the log of the proportion by which the specialist
    class is oversampled", log(r / f), which is smaller by log((1 - f) / (1 - r)).

    natural_fraction: f, e.g. np.isin(train_labels, subset).mean().
    """
    f, r = float(natural_fraction), float(special_fraction)
    if not 0.0 < f < 1.0:
        raise ValueError(f"natural_fraction must lie strictly between 0 and 1, got {f!r}")
    if not 0.0 < r < 1.0:
        raise ValueError(f"special_fraction must lie strictly between 0 and 1, got {r!r}")
    if literal:
        return math.log(r / f)
    return math.log((1.0 - f) / f * r / (1.0 - r))


def correct_dustbin(logits: ArrayLike, correction: float) -> np.ndarray:
    """A copy of specialist logits (or log-probabilities) with `correction` added to the
    dustbin column, the last one."""
    z = np.array(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (n, subset size + 1), got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or infinite values")
    z[:, -1] += correction
    return z


# ----------------------------------------------------------------------------- inference (§4.4)


def active_specialists(generalist_probs: ArrayLike, subsets: Sequence[ArrayLike],
                       top_n: int = 1) -> np.ndarray:
    """(n, num_specialists) bool: specialist m is active on x when its subset meets the
    generalist's top_n classes for x (the paper: top_n = 1). Ties keep the lower class index."""
    p = _check_probs(generalist_probs, "generalist_probs")
    subs = _check_subsets(subsets, p.shape[1])
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
    y = _check_labels(labels, num_classes)
    per_class = np.zeros(num_classes, dtype=np.int64)
    for s in _check_subsets(subsets, num_classes):
        per_class[s] += 1
    return per_class[y]


def _check_combination(generalist_probs: ArrayLike, specialist_probs: Sequence[ArrayLike],
                       subsets: Sequence[ArrayLike], active: ArrayLike | None, top_n: int,
                       ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray]:
    pg = _check_probs(generalist_probs, "generalist_probs")
    n, num_classes = pg.shape
    subs = _check_subsets(subsets, num_classes)
    if len(specialist_probs) != len(subs):
        raise ValueError(f"got {len(specialist_probs)} specialist outputs for {len(subs)} subsets")
    pms = [_check_probs(pm, f"specialist_probs[{m}]", width=s.size + 1, rows=n)
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
    qq = _check_probs(q, "q", width=pg.shape[1], rows=pg.shape[0])
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
