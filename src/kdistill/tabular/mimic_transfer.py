"""The transfer set a mimic learns from (:mod:`kdistill.tabular.mimic`): rows, raw like ``fit``'s
X, and a teacher's probabilities on them; the checks on what a teacher returns and the joining of
the original rows with the pseudo rows. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["TransferSet", "teacher_proba", "concat_rows"]


def teacher_proba(teacher: Any, X: Any) -> np.ndarray:
    """The teacher's probabilities on X (``predict_proba``, or the teacher called), checked and
    renormalised to sum to 1 per row."""
    proba = teacher.predict_proba(X) if hasattr(teacher, "predict_proba") else teacher(X)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2 or proba.shape[0] != len(X):
        raise ValueError(f"the teacher must return (n_samples, n_classes >= 2) probabilities; "
                         f"got shape {proba.shape} for {len(X)} rows")
    if not np.all(np.isfinite(proba)) or np.any(proba < 0):
        raise ValueError("the teacher's probabilities contain NaN, infinite or negative values")
    return proba / proba.sum(axis=1, keepdims=True)


def concat_rows(a: Any, b: Any) -> Any:
    """The rows of a then those of b: one DataFrame (a fresh index) or one array."""
    if isinstance(a, pd.DataFrame):
        return pd.concat([a.reset_index(drop=True), b.reset_index(drop=True)],
                         ignore_index=True)
    return np.concatenate([np.asarray(a), np.asarray(b)], axis=0)


@dataclass
class TransferSet:
    """Rows a mimic learns from (raw, like ``fit``'s X) and the teacher's probabilities on them."""

    rows: Any
    proba: np.ndarray
    classes: np.ndarray
    n_original: int  # how many of the rows are the original training rows (they come first)
