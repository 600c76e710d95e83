"""Statistics over seeds, shared by every reproduction: mean +- sd of a cell, the paired
difference of two cells run with the same seeds with its 95% t-interval, and the
best-on-validation reading of a learning curve. Pure numpy: the numbers a report prints come
from here, and the tests check them against hand-computed values."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["mean_sd", "t_quantile", "interval", "paired", "best_on_validation", "summarize",
           "mean_sd_interval"]

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (t_{0.975, df}).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile(df: int) -> float:
    """t_{0.975} with `df` degrees of freedom (the normal 1.96 beyond 30 is within 2%)."""
    if df < 1:
        raise ValueError(f"need at least 1 degree of freedom, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no values")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def interval(values: Sequence[float]) -> list[float] | None:
    """The 95% t-interval of the mean of `values` ([low, high]; None for fewer than 2)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return None
    half = t_quantile(v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return [float(v.mean()) - half, float(v.mean()) + half]


def paired(a: Sequence[float], b: Sequence[float]) -> dict:
    """The paired difference a - b over seeds (a[i], b[i] share seed i): its mean, sd, 95%
    interval, whether the interval excludes 0, and the per-seed differences."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds, got {len(a)} and {len(b)}")
    d = [float(x) - float(y) for x, y in zip(a, b)]
    mean, sd = mean_sd(d)
    ci = interval(d)
    return {"mean": mean, "sd": sd, "interval": ci, "per_seed": d,
            "excludes_zero": None if ci is None else bool(ci[0] > 0 or ci[1] < 0)}


def best_on_validation(test_curve: Sequence[float], val_curve: Sequence[float],
                       lower_is_better: bool = True) -> tuple[float, int]:
    """(test value, 1-based epoch) at the epoch the validation curve likes best; ties go to the
    earliest epoch. The test curve is read, never searched."""
    if len(test_curve) != len(val_curve) or not val_curve:
        raise ValueError("the test and validation curves need the same, non-zero length")
    v = np.asarray(val_curve, dtype=float)
    i = int(np.argmin(v) if lower_is_better else np.argmax(v))
    return float(test_curve[i]), i + 1


def summarize(values: Sequence[float]) -> dict:
    """{"mean", "sd", "per_seed"} of one cell's values over seeds."""
    mean, sd = mean_sd(values)
    return {"mean": mean, "sd": sd, "per_seed": [float(x) for x in values]}


def mean_sd_interval(values: Sequence[float | None]) -> tuple:
    """(mean, sd, 95% interval) of per-seed values; all None when a seed has no value (e.g. a
    share of a gap that did not exist for that seed)."""
    if any(v is None for v in values):
        return None, None, None
    mean, sd = mean_sd(values)
    return mean, sd, interval(values)
