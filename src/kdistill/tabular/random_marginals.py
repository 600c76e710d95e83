"""The RANDOM pseudo-data baseline of Bucila et al. (2006, §2): every column drawn on its own
from its training values, so all dependence between columns is lost (the paper finds it too
diffuse; MUNGE, :mod:`kdistill.tabular.munge`, keeps samples near the data manifold)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .inputs import check_table
from .munge import _is_dataframe

try:
    import pandas as pd
except ImportError:  # pandas is optional
    pd = None

__all__ = ["RandomMarginals", "random_marginals"]


def random_marginals(
    X: Any, k: int = 10, random_state: int | np.random.Generator | None = None
) -> Any:
    """RANDOM baseline: ``k * n`` rows, each column drawn independently from its training values.

    A non-parametric bootstrap of every marginal; all dependence between columns is lost, which
    is why the paper finds it too diffuse.
    """
    return RandomMarginals(k, random_state).fit_sample(X)


class RandomMarginals(BaseEstimator):
    """RANDOM pseudo-data generator with the same ``fit``/``sample`` interface as :class:`Munge`.

    Values of any kind, missing ones included, are only copied, so none is refused."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = tags.input_tags.string = True
        return tags

    def __init__(self, k: int = 10, random_state: int | np.random.Generator | None = None) -> None:
        self.k = k
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> RandomMarginals:
        if not isinstance(self.k, int | np.integer) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1; got {self.k!r}")
        data = check_table(X, "RANDOM")  # missing values are resampled like any other value
        self.data_ = data
        self.n_features_in_ = data.shape[1]
        self.rng_ = np.random.default_rng(self.random_state)
        return self

    def sample(self) -> Any:
        """``k * n`` rows; row indices drawn independently per column."""
        check_is_fitted(self, "data_")
        n, d = self.data_.shape
        rows = self.rng_.integers(0, n, size=(self.k * n, d))
        if _is_dataframe(self.data_):
            return pd.DataFrame(
                {
                    label: self.data_.iloc[rows[:, j], j].reset_index(drop=True)
                    for j, label in enumerate(self.data_.columns)
                },
                columns=self.data_.columns,
            )
        return self.data_[rows, np.arange(d)]

    def fit_sample(self, X: Any, y: Any = None) -> Any:
        return self.fit(X).sample()
