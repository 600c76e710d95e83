"""The encoder of tabular inputs: what a DataFrame becomes before a model sees it.

:class:`TabularEncoder` turns a DataFrame into the float matrix models see: numeric columns
standardized with the training mean and standard deviation, nominal columns one-hot (or ordinal)
with the training categories; it round-trips through JSON so an exported model needs no pickle.
The problems themselves (mlbench, CSV, the split protocol) are in :mod:`kdistill.tabular.problems`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .problems import (
    is_nominal_dtype,
    load_mlbench,  # noqa: F401  (distill/data.py imports it from here)
)

__all__ = ["TabularEncoder"]


def _as_frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {array.shape}")
    return pd.DataFrame(array)


def _plain(value: Any) -> Any:
    """A JSON-friendly Python scalar for a category value."""
    return value.item() if isinstance(value, np.generic) else value


def _category_codes(values: pd.Series, categories: list[Any]) -> np.ndarray:
    """Index of each value in ``categories`` (compared as text; missing = "NA"; unseen = -1).

    Vectorized: a categorical column maps its few categories once and then indexes its codes,
    so encoding stays cheap next to a small network's forward pass.
    """
    names = [str(v) for v in categories]
    lookup = {name: i for i, name in enumerate(names)}
    if isinstance(values.dtype, pd.CategoricalDtype):
        table = np.array([lookup.get(str(v), -1) for v in values.cat.categories] +
                         [lookup.get("NA", -1)], dtype=np.int64)
        return table[values.cat.codes.to_numpy()]  # code -1 (missing) takes the last entry
    text = values.astype(object).where(values.notna(), "NA").astype(str)
    return pd.Index(names).get_indexer(text).astype(np.int64)


class TabularEncoder(TransformerMixin, BaseEstimator):
    """DataFrame (or array) -> float32 matrix: standardized numeric, one-hot/ordinal nominal.

    ``nominal=None`` treats non-numeric and boolean columns as nominal; a list names them (labels,
    or positions for an array). A nominal column with more than ``max_categories`` distinct
    training values (an identifier, free text) cannot be encoded usefully and raises a
    ValueError naming it. Missing nominal values become their own category; missing numeric
    values raise. Unseen categories at transform time encode as all zeros (one-hot) or -1
    (ordinal).
    """

    def __init__(self, nominal: list[Any] | None = None, encoding: str = "onehot",
                 max_categories: int = 50) -> None:
        self.nominal = nominal
        self.encoding = encoding
        self.max_categories = max_categories

    def fit(self, X: Any, y: Any = None) -> TabularEncoder:
        if self.encoding not in ("onehot", "ordinal"):
            raise ValueError(f"encoding must be 'onehot' or 'ordinal'; got {self.encoding!r}")
        if not isinstance(self.max_categories, int) or self.max_categories < 2:
            raise ValueError(f"max_categories must be an integer >= 2; got {self.max_categories!r}")
        frame = _as_frame(X)
        if frame.shape[0] < 1 or frame.shape[1] < 1:
            raise ValueError(f"X needs at least one row and one column; got {frame.shape}")
        columns = list(frame.columns)
        if self.nominal is None:
            nominal = [c for c in columns if is_nominal_dtype(frame[c].dtype)]
        else:
            missing = [c for c in self.nominal if c not in columns]
            if missing:
                raise ValueError(f"nominal column {missing[0]!r} not found")
            nominal = list(self.nominal)
        self.columns_ = columns
        self.nominal_ = [c for c in columns if c in nominal]
        self.categories_: dict[Any, list[Any]] = {}
        self.mean_: dict[Any, float] = {}
        self.scale_: dict[Any, float] = {}
        for c in columns:
            values = frame[c]
            if c in self.nominal_:
                cats = pd.unique(values.astype(object).where(values.notna(), "NA"))
                if len(cats) > self.max_categories:
                    raise ValueError(
                        f"column {c!r} is not numeric and has {len(cats)} distinct values "
                        f"(more than max_categories={self.max_categories}): cannot encode it; "
                        f"drop it or convert it to numbers")
                self.categories_[c] = sorted((_plain(v) for v in cats), key=str)
            else:
                numbers = self._numeric(values, c)
                self.mean_[c] = float(numbers.mean())
                std = float(numbers.std())
                self.scale_[c] = std if std > 0 else 1.0
        self.n_features_in_ = len(columns)
        self.n_features_out_ = len(self.feature_names_out())
        return self

    @staticmethod
    def _numeric(values: pd.Series, column: Any) -> np.ndarray:
        try:
            numbers = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"column {column!r} is not numeric; mark it nominal") from None
        if not np.all(np.isfinite(numbers)):
            raise ValueError(f"column {column!r} has missing or infinite values")
        return numbers

    def feature_names_out(self) -> list[str]:
        check_is_fitted(self, "columns_")
        names: list[str] = []
        for c in self.columns_:
            if c in self.categories_ and self.encoding == "onehot":
                names += [f"{c}={v}" for v in self.categories_[c]]
            else:
                names.append(str(c))
        return names

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "columns_")
        frame = _as_frame(X)
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise ValueError(f"X lacks column {missing[0]!r} seen in fit")
        parts = []
        for c in self.columns_:
            values = frame[c]
            if c in self.categories_:
                cats = self.categories_[c]
                codes = _category_codes(values, cats)
                if self.encoding == "ordinal":
                    parts.append(codes[:, None].astype(np.float32))
                else:
                    onehot = np.zeros((len(codes), len(cats)), dtype=np.float32)
                    known = codes >= 0
                    onehot[np.flatnonzero(known), codes[known]] = 1.0
                    parts.append(onehot)
            else:
                numbers = self._numeric(values, c)
                parts.append(((numbers - self.mean_[c]) / self.scale_[c])[:, None]
                             .astype(np.float32))
        return np.hstack(parts)

    def to_dict(self) -> dict:
        """Everything ``transform`` needs, as JSON-friendly data."""
        check_is_fitted(self, "columns_")
        return {
            "columns": [_plain(c) for c in self.columns_],
            "nominal": [_plain(c) for c in self.nominal_],
            "encoding": self.encoding,
            "max_categories": self.max_categories,
            "categories": [[_plain(c), list(v)] for c, v in self.categories_.items()],
            "mean": [[_plain(c), v] for c, v in self.mean_.items()],
            "scale": [[_plain(c), v] for c, v in self.scale_.items()],
        }

    @classmethod
    def from_dict(cls, state: dict) -> TabularEncoder:
        enc = cls(nominal=list(state["nominal"]), encoding=state["encoding"],
                  max_categories=int(state["max_categories"]))
        enc.columns_ = list(state["columns"])
        enc.nominal_ = list(state["nominal"])
        enc.categories_ = {c: list(v) for c, v in state["categories"]}
        enc.mean_ = {c: float(v) for c, v in state["mean"]}
        enc.scale_ = {c: float(v) for c, v in state["scale"]}
        enc.n_features_in_ = len(enc.columns_)
        enc.n_features_out_ = len(enc.feature_names_out())
        return enc

