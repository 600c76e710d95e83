"""The share of the ensemble's gain a mimic keeps, shown only where that gain is not noise.

``gain_captured`` is ``(ann - mimic) / (ann - ensemble)`` in the metric's own orientation (for
accuracy and AUC the signs flip, so the value still reads "share of the ensemble's gain over
the plain net"). A ratio whose denominator is within the noise means nothing: the issue saw
12.14 where the ensemble beat the net by 0.001 RMSE. :func:`bootstrap_gain` estimates that
noise with a paired bootstrap over the test rows (the same resampled rows score both models)
of the ensemble-minus-ANN difference; :func:`gain_verdict` shows a ratio only when the 95%
percentile interval of the gain lies above 0.

The bootstrap measures test-sampling noise only, not seed-to-seed variation of the training.
"""

from __future__ import annotations

import numpy as np

from .metrics import GREATER_IS_BETTER, batch_scores, metric_score

__all__ = ["COMPRESS_METRICS", "N_BOOT", "check_metric", "gain_captured", "bootstrap_gain",
           "gain_verdict", "combined_gain", "better"]

# What `--metric` takes: selection, the best single model, ANN and mimic choice all use it.
COMPRESS_METRICS: tuple[str, ...] = ("rmse", "accuracy", "log_loss", "roc_auc")
N_BOOT = 1000
_CHUNK = 1 << 22  # resampled rows per block, about 32 MB of indices


def check_metric(metric: str) -> str:
    """The metric's name (``log-loss`` and ``roc-auc`` spelled either way); raises otherwise."""
    name = str(metric).strip().lower().replace("-", "_")
    if name not in COMPRESS_METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of "
                         f"{', '.join(m.replace('_', '-') for m in COMPRESS_METRICS)}")
    return name


def better(metric: str) -> float:
    """+1 when higher is better (accuracy, AUC), -1 when lower is (RMSE, log-loss)."""
    return 1.0 if GREATER_IS_BETTER[metric] else -1.0


def gain_captured(ann: float, mimic: float, ensemble: float, metric: str = "rmse"
                  ) -> float | None:
    """(ann - mimic) / (ann - ensemble) in the metric's orientation; None if no gain."""
    sign = better(metric)
    gain = sign * (ensemble - ann)
    if gain <= 0:
        return None
    return sign * (mimic - ann) / gain


def _binary_column(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return p[:, 1] if p.ndim == 2 and p.shape[1] == 2 else p


def _row_terms(metric: str, p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Per-row terms whose mean gives the metric (then sqrt for RMSE), or None (AUC)."""
    binary = p.ndim == 1
    if metric == "accuracy":
        labels = (p > 0.5).astype(np.int64) if binary else p.argmax(axis=1)
        return (labels == y).astype(np.float64), 1.0
    if metric == "rmse":
        if binary:
            return (p - y) ** 2, 1.0
        return ((p - np.eye(p.shape[1])[y]) ** 2).sum(axis=1), float(p.shape[1])
    if metric == "log_loss":
        picked = np.where(y == 1, p, 1.0 - p) if binary else p[np.arange(len(y)), y]
        return -np.log(np.clip(picked, 1e-15, 1.0 - 1e-15)), 1.0
    return None


def _resampled_scores(metric: str, p: np.ndarray, y: np.ndarray, idx: np.ndarray
                      ) -> np.ndarray:
    """The metric of ``p`` on each row of ``idx`` (resamples x rows)."""
    terms = _row_terms(metric, p, y)
    if terms is not None:
        values, columns = terms
        mean = values[idx].mean(axis=1)
        return np.sqrt(mean / columns) if metric == "rmse" else mean
    n_classes = 2 if p.ndim == 1 else p.shape[1]
    out = np.empty(len(idx))
    with np.errstate(divide="ignore", invalid="ignore"):
        for b, rows in enumerate(idx):
            out[b] = batch_scores(metric, p[rows][None], y[rows], n_classes)[0]
    return out


def bootstrap_gain(y: np.ndarray, p_ensemble: np.ndarray, p_ann: np.ndarray, metric: str,
                   n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Paired bootstrap over test rows of the ensemble's gain over the ANN (positive: the
    ensemble is better), with its 95% percentile interval and standard error."""
    y = np.asarray(y).astype(np.int64)
    pe, pa = _binary_column(p_ensemble), _binary_column(p_ann)
    n = len(y)
    sign = better(metric)
    gain = sign * (metric_score(y, pe, metric) - metric_score(y, pa, metric))
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    per_block = max(1, _CHUNK // n)
    for start in range(0, n_boot, per_block):
        idx = rng.integers(0, n, size=(min(per_block, n_boot - start), n))
        draws[start : start + len(idx)] = sign * (
            _resampled_scores(metric, pe, y, idx) - _resampled_scores(metric, pa, y, idx))
    finite = draws[np.isfinite(draws)]  # an AUC resample holding one class is undefined
    if len(finite) < 2:
        lo = hi = se = float("nan")
    else:
        lo, hi = (float(v) for v in np.percentile(finite, [2.5, 97.5]))
        se = float(np.std(finite, ddof=1))
    return {"metric": metric, "gain": float(gain), "ci95": [lo, hi], "se": se,
            "n_boot": int(n_boot), "seed": int(seed), "rows": int(n)}


def gain_verdict(noise: dict | None) -> tuple[bool, str | None]:
    """(show the gain captured?, why not): shown only when the interval lies above 0."""
    if noise is None:
        return False, "baselines skipped: no ANN to measure the gain against"
    lo, hi = noise["ci95"]
    name = noise["metric"]
    if not np.isfinite(lo):
        return False, f"gain within noise: the bootstrap of test {name} is undefined"
    interval = f"{noise['gain']:+.4g} test {name}, 95% bootstrap interval [{lo:+.4g}, {hi:+.4g}]"
    if hi < 0:
        return False, f"the ensemble is worse than the ANN: {interval}"
    if lo <= 0:
        return False, f"gain within noise: the ensemble's gain over the ANN is {interval}"
    return True, None


def combined_gain(noises: list[dict]) -> dict:
    """The mean gain over problems, its standard error from the per-problem bootstraps
    (independent test sets) and a normal 95% interval."""
    gains = np.array([n["gain"] for n in noises])
    se = float(np.sqrt(np.sum(np.square([n["se"] for n in noises]))) / len(noises))
    mean = float(gains.mean())
    return {"metric": noises[0]["metric"], "gain": mean, "se": se,
            "ci95": [mean - 1.96 * se, mean + 1.96 * se], "problems": len(noises)}
