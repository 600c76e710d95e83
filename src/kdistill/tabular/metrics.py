"""Metrics of ensemble selection on batches of stored prediction arrays (Caruana et al. 2004).

``p`` has shape ``(m, n_samples)`` for binary problems (probability of class 1) or
``(m, n_samples, n_classes)``; ``y`` holds integer labels ``0..n_classes-1``.

Conventions (stated once, used everywhere in selection and reporting):
- binary class 1 is predicted when ``p > 0.5``; multiclass labels are the arg-max (first on ties);
- ``rmse`` is taken over all entries (against one-hot labels for multiclass), so a 2-column binary
  array gives the same value as its class-1 column; ``log_loss`` clips to ``[1e-15, 1 - 1e-15]``;
- multiclass ``roc_auc`` and ``f1`` are macro averages (one-vs-rest AUC over classes present in
  ``y``; F1 over labels present in ``y`` or the predictions, as scikit-learn does).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

METRICS: tuple[str, ...] = ("accuracy", "roc_auc", "log_loss", "rmse", "f1")
GREATER_IS_BETTER = {
    "accuracy": True,
    "roc_auc": True,
    "f1": True,
    "log_loss": False,
    "rmse": False,
}
_CLIP = 1e-15

MetricLike = str | Callable[[np.ndarray, np.ndarray], float]


# ----------------------------------------------------------------------------------------------
# Metrics on batches of prediction arrays
# ----------------------------------------------------------------------------------------------


def _auc_rows(p: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC AUC of every row of ``p`` (m, n) via the rank-sum formula with tied ranks averaged."""
    n = p.shape[1]
    n_pos = int(positive.sum())
    n_neg = n - n_pos
    order = np.argsort(p, axis=1)
    sorted_p = np.take_along_axis(p, order, axis=1)
    index = np.arange(n)
    starts_group = np.ones(sorted_p.shape, dtype=bool)
    starts_group[:, 1:] = sorted_p[:, 1:] != sorted_p[:, :-1]
    ends_group = np.ones(sorted_p.shape, dtype=bool)
    ends_group[:, :-1] = starts_group[:, 1:]
    first = np.maximum.accumulate(np.where(starts_group, index, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends_group, index, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = (first + last) / 2.0 + 1.0
    rank_sum = (ranks * positive[order]).sum(axis=1)
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def batch_scores(metric: MetricLike, p: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Natural-orientation score of each prediction array in ``p`` (m, n) or (m, n, c)."""
    if callable(metric):
        return np.array([float(metric(y, row)) for row in p])
    binary = p.ndim == 2
    if metric == "accuracy":
        labels = (p > 0.5).astype(np.int64) if binary else p.argmax(axis=-1)
        return (labels == y).mean(axis=1)
    if metric == "rmse":
        target = y.astype(np.float64) if binary else np.eye(n_classes)[y]
        err = (p - target) ** 2
        return np.sqrt(err.reshape(err.shape[0], -1).mean(axis=1))
    if metric == "log_loss":
        if binary:
            picked = np.where(y == 1, p, 1.0 - p)
        else:
            picked = np.take_along_axis(p, np.broadcast_to(y[None, :, None], p.shape[:2] + (1,)), 2)
            picked = picked[..., 0]
        return -np.log(np.clip(picked, _CLIP, 1.0 - _CLIP)).mean(axis=1)
    if metric == "roc_auc":
        if binary:
            return _auc_rows(p, y == 1)
        present = [c for c in range(n_classes) if 0 < np.count_nonzero(y == c) < y.size]
        return np.mean([_auc_rows(p[..., c], y == c) for c in present], axis=0)
    if metric == "f1":
        if binary:
            pred = p > 0.5
            true = y == 1
            tp = np.count_nonzero(pred & true, axis=1)
            denom = np.count_nonzero(pred, axis=1) + np.count_nonzero(true)
            return np.divide(2.0 * tp, denom, out=np.zeros(len(p)), where=denom > 0)
        pred = p.argmax(axis=-1)
        total = np.zeros(len(p))
        n_labels = np.zeros(len(p))
        for c in range(n_classes):
            is_pred = pred == c
            is_true = y == c
            tp = np.count_nonzero(is_pred & is_true, axis=1)
            denom = np.count_nonzero(is_pred, axis=1) + np.count_nonzero(is_true)
            total += np.divide(2.0 * tp, denom, out=np.zeros(len(p)), where=denom > 0)
            n_labels += denom > 0
        return total / n_labels
    raise ValueError(f"unknown metric {metric!r}; use one of {METRICS} or a callable")


def metric_score(y: np.ndarray, p: np.ndarray, metric: MetricLike = "rmse") -> float:
    """Score one prediction array (n_samples,) or (n_samples, n_classes) with the module's metrics.

    Uses the same conventions as the selection, so reported numbers match the hillclimb.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    n_classes = 2 if p.ndim == 1 else p.shape[1]
    if p.ndim == 2 and n_classes == 2 and not callable(metric):
        p = p[:, 1]
    return float(batch_scores(metric, p[None], y, n_classes)[0])

