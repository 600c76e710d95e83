"""The input checks every tabular estimator shares: what a table must be before any work.

One place, so that the encoder, the library, MUNGE, RANDOM and the mimic refuse the same inputs
with the same one-line messages: sparse matrices (the estimators work on dense rows, and
densifying silently could exhaust memory), complex numbers (their imaginary part would be
dropped without a word), arrays that are not 2-D, tables without columns or with too few rows.
The wording follows scikit-learn's where its estimator checks look for it. No torch here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

try:
    import pandas as pd
except ImportError:  # pandas is optional for MUNGE and RANDOM on arrays
    pd = None

__all__ = ["check_table"]


def check_table(X: Any, who: str, min_rows: int = 1) -> Any:
    """X as a DataFrame (kept as given) or a 2-D numpy array; raises one clear ValueError."""
    if sparse.issparse(X):
        raise ValueError(f"{who} does not take sparse input ({type(X).__name__}): pass a dense "
                         f"array (X.toarray()) or a DataFrame")
    if pd is not None and isinstance(X, pd.DataFrame):
        complex_columns = [c for c, d in zip(X.columns, X.dtypes)
                           if getattr(d, "kind", "") == "c"]
        if complex_columns:
            raise ValueError(f"Complex data not supported: column {complex_columns[0]!r} "
                             f"holds complex numbers")
    else:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}. "
                             f"Reshape your data: X.reshape(1, -1) for one row, "
                             f"X.reshape(-1, 1) for one column")
        if X.dtype.kind == "c":
            raise ValueError("Complex data not supported: X holds complex numbers")
    if X.shape[1] == 0:
        raise ValueError(f"X has 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
                         f"required by {who}.")
    if X.shape[0] < min_rows:
        raise ValueError(f"{who} needs at least {min_rows} rows; got {X.shape[0]} sample(s) "
                         f"(n_samples={X.shape[0]})")
    return X
