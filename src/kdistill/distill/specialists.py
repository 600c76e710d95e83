"""Specialist models with a dustbin class (SPEC §4): the pure algorithms.

- finding confusable class subsets from the covariance of a generalist's predictions (§4.2);
- mapping labels and soft targets into a specialist's label space: its subset classes in the
  given order, then one dustbin class for everything else (§4.3);
- the prior correction of the dustbin logit for training data enriched with subset classes.

The inference-time combination of the generalist with the active specialists (§4.4) is in
`specialist_combine.py`; the step that builds a specialist from a generalist's weights (torch)
in `specialist_models.py`.

Conventions: a subset is a 1-D array of distinct class indices; a specialist's outputs have
len(subset) + 1 columns, the dustbin last. Pure numpy; imports nothing else from kdistill.
"""

from __future__ import annotations

import math
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
]

ArrayLike = np.ndarray | Sequence
_ROW_SUM_TOL = 1e-4


# ----------------------------------------------------------------------------- validation


def check_probs(probs: ArrayLike, name: str, width: int | None = None,
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


def check_subsets(subsets: Sequence[ArrayLike], num_classes: int) -> list[np.ndarray]:
    return [_check_subset(s, num_classes) for s in subsets]


def check_labels(labels: ArrayLike, num_classes: int) -> np.ndarray:
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
    p = check_probs(probs, "probs")
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
    p = check_probs(probs, "probs")
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
    y = check_labels(labels, num_classes)
    return specialist_label_map(subset, num_classes)[y]


def group_probs(probs: ArrayLike, subset: ArrayLike) -> np.ndarray:
    """Distributions over all classes grouped to a specialist's label space: the subset's
    columns, then their complement's total mass as the dustbin (pi_m(q) in SPEC §4.4).

    Also turns a generalist's soft targets into a specialist's soft targets.
    """
    p = check_probs(probs, "probs")
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
    y = check_labels(labels, num_classes)
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
