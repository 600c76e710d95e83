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

from .inputs import check_table
from .problems import (
    is_nominal_dtype,
    load_mlbench,  # noqa: F401  (distill/data.py imports it from here)
)

__all__ = ["TabularEncoder", "MISSING", "NUMERIC"]

MISSING: tuple[str, ...] = ("category", "impute")
NUMERIC: tuple[str, ...] = ("standard", "robust", "auto")
# numeric="auto": a column is heavy-tailed, and encoded robustly, when its standard deviation is
# more than this many times its robust scale. Light tails sit well below: normal 1.0, uniform
# 0.78, exponential 1.23, logistic 1.22, Laplace 1.38; a lognormal with sigma 1 is at 2.0.
HEAVY_TAIL = 2.0


def _as_frame(X: Any, columns: list[Any] | None = None) -> pd.DataFrame:
    """X as a DataFrame; an array takes ``columns`` (the fitted ones, in fit order) as names."""
    X = check_table(X, "TabularEncoder")
    if isinstance(X, pd.DataFrame):
        return X
    if columns is not None:
        if X.shape[1] != len(columns):
            shown = ", ".join(map(str, columns[:10])) + (", ..." if len(columns) > 10 else "")
            raise ValueError(f"X has {X.shape[1]} features, but TabularEncoder is expecting "
                             f"{len(columns)} features as input (columns in fit order: {shown})")
        return pd.DataFrame(X, columns=columns)
    return pd.DataFrame(X)


def _plain(value: Any) -> Any:
    """A JSON-friendly Python scalar for a category value."""
    return value.item() if isinstance(value, np.generic) else value


def _text(value: Any) -> str:
    """How a category is compared: as text, and 3.0 as "3" (a column read as floats because it
    has missing values must match the same column read as integers at predict time)."""
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


_ONE_KIND = {"string", "integer", "floating", "mixed-integer-float", "boolean", "empty"}


def _category_codes(values: pd.Series, categories: list[Any],
                    tables: dict | None = None) -> np.ndarray:
    """Index of each value in ``categories`` (compared as text; missing = "NA"; unseen = -1).

    Vectorized: a column maps its few distinct values once and then indexes their codes, so
    encoding stays cheap next to a small network's forward pass. ``tables`` (one dict per
    transform) shares that map between categorical columns of the same dtype and categories
    (DNA: 180 columns of '0'/'1').
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        seen = values.dtype.categories
        key = (tuple(seen.tolist()), seen.dtype, tuple(categories))  # cheaper than the dtype
        table = None if tables is None else tables.get(key)
        if table is None:
            lookup = {_text(v): i for i, v in enumerate(categories)}
            table = np.array([lookup.get(_text(v), -1) for v in seen] +
                             [lookup.get("NA", -1)], dtype=np.int64)
            if tables is not None:
                tables[key] = table
        return table[values.array.codes]  # code -1 (missing) takes the last entry
    names = [_text(v) for v in categories]
    lookup = {name: i for i, name in enumerate(names)}
    # Any other column: the distinct values are compared once each, not every row's value
    # (180 text columns x 1,000 rows took 290 ms per call row by row). Hashing merges True
    # with 1 (and False with 0), which compare as different text, so a column that mixes
    # types goes row by row.
    values = values.astype(object)
    if pd.api.types.infer_dtype(values, skipna=True) not in _ONE_KIND:
        text = values.where(values.notna(), "NA").map(_text)
        return pd.Index(names).get_indexer(text).astype(np.int64)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([lookup.get(_text(v), -1) for v in uniques] + [lookup.get("NA", -1)],
                     dtype=np.int64)
    return table[codes]  # code -1 (missing) takes the last entry


def _center_scale(known: np.ndarray, numeric: str) -> tuple[float, float]:
    """(mean, sd) or, for ``robust``, (median, IQR / 1.349 or the mean absolute deviation);
    a scale of 0 (a constant column) becomes 1."""
    if numeric == "standard":
        center, scale = float(known.mean()), float(known.std())
    else:
        center = float(np.median(known))
        q1, q3 = np.quantile(known, [0.25, 0.75])
        scale = float(q3 - q1) / 1.349 or float(np.abs(known - center).mean())
    return center, scale if scale > 0 else 1.0


class TabularEncoder(TransformerMixin, BaseEstimator):
    """DataFrame (or array) -> float32 matrix: standardized numeric, one-hot/ordinal nominal.

    ``nominal=None`` treats non-numeric and boolean columns as nominal; a list names them (labels,
    or positions for an array). A nominal column with more than ``max_categories`` distinct
    training values (an identifier, free text) cannot be encoded usefully and raises a
    ValueError naming it. ``missing="category"``: missing nominal values become their own
    category ("NA") and missing numeric values raise; ``missing="impute"``: both are filled,
    nominal with the most frequent training value, numeric with the training mean. Unseen
    categories at transform time encode as all zeros (one-hot) or -1 (ordinal).

    ``numeric="standard"``: (x - mean) / sd. ``numeric="robust"``: asinh((x - median) / s),
    s the interquartile range / 1.349 (the sd of a normal; the mean absolute deviation from the
    median when half the values are equal): heavy tails are compressed logarithmically and the
    bulk of the values keeps its resolution, which a network fed standardized heavy-tailed
    columns loses (its outliers set the scale). ``numeric="auto"``: robust for the heavy-tailed
    columns only (training sd over HEAVY_TAIL x s; ``robust_`` lists them), standard for the
    rest. Two numbers per column either way.

    ``transform`` takes a DataFrame with the fitted columns (any order, no others) or an array
    whose columns are the fitted ones in fit order; the output is always float32, the dtype the
    networks take.
    """

    def __init__(self, nominal: list[Any] | None = None, encoding: str = "onehot",
                 max_categories: int = 50, missing: str = "category",
                 numeric: str = "standard") -> None:
        self.nominal = nominal
        self.encoding = encoding
        self.max_categories = max_categories
        self.missing = missing
        self.numeric = numeric

    def __setstate__(self, state: dict) -> None:
        # Encoders pickled (inside a saved ensemble) before ``numeric`` existed standardized.
        super().__setstate__({"numeric": "standard", **state})

    def fit(self, X: Any, y: Any = None) -> TabularEncoder:
        if self.encoding not in ("onehot", "ordinal"):
            raise ValueError(f"encoding must be 'onehot' or 'ordinal'; got {self.encoding!r}")
        if self.missing not in MISSING:
            raise ValueError(f"missing must be one of {MISSING}; got {self.missing!r}")
        if self.numeric not in NUMERIC:
            raise ValueError(f"numeric must be one of {NUMERIC}; got {self.numeric!r}")
        if not isinstance(self.max_categories, int) or self.max_categories < 2:
            raise ValueError(f"max_categories must be an integer >= 2; got {self.max_categories!r}")
        frame = _as_frame(X)
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
        self.fill_: dict[Any, Any] = {}
        self.robust_: list[Any] = []   # numeric columns encoded as asinh((x - median) / s)
        for c in columns:
            values = frame[c]
            if c in self.nominal_:
                self._fit_nominal(c, values)
            else:
                numbers = self._numeric(values, c, allow_missing=self.missing == "impute")
                known = numbers[np.isfinite(numbers)]
                if not len(known):
                    raise ValueError(f"column {c!r} has no values (all missing): drop it")
                rule = self.numeric
                if rule == "auto":
                    heavy = known.std() > HEAVY_TAIL * _center_scale(known, "robust")[1]
                    rule = "robust" if heavy else "standard"
                if rule == "robust":
                    self.robust_.append(c)
                self.mean_[c], self.scale_[c] = _center_scale(known, rule)
                if self.missing == "impute":
                    self.fill_[c] = self.mean_[c]
        self.n_features_in_ = len(columns)
        self.n_features_out_ = len(self.feature_names_out())
        return self

    def _fit_nominal(self, c: Any, values: pd.Series) -> None:
        present = values[values.notna()]
        if self.missing == "impute":
            if not len(present):
                raise ValueError(f"column {c!r} has no values (all missing): drop it")
            counts = present.astype(object).map(_text).value_counts()
            mode = sorted(counts.index[counts == counts.max()])[0]  # ties: first as text
            self.fill_[c] = _plain(present[present.astype(object).map(_text) == mode].iloc[0])
            values = present
        cats = pd.unique(values.astype(object).where(values.notna(), "NA"))
        if len(cats) > self.max_categories:
            raise ValueError(
                f"column {c!r} is not numeric and has {len(cats)} distinct values "
                f"(more than max_categories={self.max_categories}): cannot encode it; "
                f"drop it (kdistill compress --drop COLUMN) or convert it to numbers")
        by_text = {_text(v): _plain(v) for v in cats}  # 3.0 and 3 are one category
        self.categories_[c] = [by_text[t] for t in sorted(by_text)]

    @staticmethod
    def _numeric(values: pd.Series, column: Any, allow_missing: bool = False) -> np.ndarray:
        try:
            numbers = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64,
                                                                      na_value=np.nan)
        except (TypeError, ValueError):
            raise ValueError(f"column {column!r} is not numeric; mark it nominal") from None
        if np.isinf(numbers).any():
            raise ValueError(f"column {column!r} has infinite values")
        n_missing = int(np.isnan(numbers).sum())
        if n_missing and not allow_missing:
            raise ValueError(f"column {column!r} is numeric with {n_missing} missing (NaN) "
                             f"values: fill or drop them, or impute them with the training mean "
                             f"(missing='impute'; kdistill compress --missing impute)")
        return numbers

    def feature_names_out(self) -> list[str]:
        check_is_fitted(self, "columns_")
        names: list[str] = []
        for c in self.columns_:
            if c in self.categories_ and self.encoding == "onehot":
                names += [f"{c}={_text(v)}" for v in self.categories_[c]]
            else:
                names.append(str(c))
        return names

    def _frame(self, X: Any) -> pd.DataFrame:
        """X checked against the fitted columns: none missing, none extra."""
        check_is_fitted(self, "columns_")
        frame = _as_frame(X, self.columns_)
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise ValueError(f"X lacks column {missing[0]!r} seen in fit")
        extra = [c for c in frame.columns if c not in self.columns_]
        if extra:
            raise ValueError(f"X has column {extra[0]!r}, not seen in fit: drop it (the model "
                             f"takes {len(self.columns_)} columns)")
        return frame

    def fill_missing(self, X: Any) -> pd.DataFrame:
        """X with its missing values filled as ``transform`` fills them (``missing="impute"``);
        the raw rows MUNGE and the teacher see then match what the encoder sees."""
        frame = self._frame(X)
        if not self.fill_:
            return frame
        filled = frame.copy()
        for c in self.fill_:
            filled[c] = self._filled(filled[c], c)
        return filled

    def _filled(self, values: pd.Series, c: Any) -> pd.Series:
        if c not in self.fill_ or not values.isna().any():
            return values
        if c in self.categories_:
            return values.astype(object).where(values.notna(), self.fill_[c])
        return pd.to_numeric(values, errors="coerce").fillna(self.fill_[c])

    def transform(self, X: Any) -> np.ndarray:
        # The encoding is most of a small mimic's prediction time on a wide table (DNA: 180
        # nominal columns), so: one output array, filled column by column in Fortran order
        # (each column's writes contiguous) and made C-contiguous once for the networks; one
        # conversion for all plain numeric columns.
        frame = self._frame(X)
        out = np.zeros((len(frame), self.n_features_out_), dtype=np.float32, order="F")
        at, numeric_at, tables = 0, {}, {}
        for c in self.columns_:
            if c not in self.categories_:
                numeric_at[c] = at
                at += 1
                continue
            cats = self.categories_[c]
            codes = _category_codes(self._filled(frame[c], c), cats, tables)
            if self.encoding == "ordinal":
                out[:, at] = codes
                at += 1
            else:
                for k in range(len(cats)):  # unseen categories (code -1): all zeros
                    np.equal(codes, k, out=out[:, at + k], casting="unsafe")
                at += len(cats)
        plain = {c: j for j, c in enumerate(c for c in numeric_at
                                            if frame[c].dtype.kind in "biuf")}
        block = frame[list(plain)].to_numpy(np.float64, na_value=np.nan) if plain else None
        robust = set(self._robust_columns())
        for c in numeric_at:
            numbers = None if c not in plain else block[:, plain[c]]
            if numbers is None or not np.isfinite(numbers).all():  # filled, or named by _numeric
                numbers = self._numeric(self._filled(frame[c], c), c)
            z = (numbers - self.mean_[c]) / self.scale_[c]
            out[:, numeric_at[c]] = np.arcsinh(z) if c in robust else z
        return np.ascontiguousarray(out)

    def _robust_columns(self) -> list[Any]:
        # Encoders fitted (or exported) before numeric="auto" existed: every numeric column or
        # none, as their ``numeric`` says.
        robust = getattr(self, "robust_", None)
        if robust is None:
            robust = [c for c in self.columns_ if c not in self.categories_] \
                if self.numeric == "robust" else []
        return robust

    def to_dict(self) -> dict:
        """Everything ``transform`` needs, as JSON-friendly data."""
        check_is_fitted(self, "columns_")
        return {
            "columns": [_plain(c) for c in self.columns_],
            "nominal": [_plain(c) for c in self.nominal_],
            "encoding": self.encoding,
            "max_categories": self.max_categories,
            "missing": self.missing,
            "numeric": self.numeric,
            "robust": [_plain(c) for c in self._robust_columns()],
            "fill": [[_plain(c), _plain(v)] for c, v in self.fill_.items()],
            "categories": [[_plain(c), list(v)] for c, v in self.categories_.items()],
            "mean": [[_plain(c), v] for c, v in self.mean_.items()],
            "scale": [[_plain(c), v] for c, v in self.scale_.items()],
        }

    @classmethod
    def from_dict(cls, state: dict) -> TabularEncoder:
        enc = cls(nominal=list(state["nominal"]), encoding=state["encoding"],
                  max_categories=int(state["max_categories"]),
                  missing=state.get("missing", "category"),  # older exports: no "missing"
                  numeric=state.get("numeric", "standard"))
        enc.columns_ = list(state["columns"])
        enc.nominal_ = list(state["nominal"])
        enc.categories_ = {c: list(v) for c, v in state["categories"]}
        enc.mean_ = {c: float(v) for c, v in state["mean"]}
        enc.scale_ = {c: float(v) for c, v in state["scale"]}
        enc.fill_ = {c: v for c, v in state.get("fill", [])}
        if "robust" in state:  # older exports: derived from ``numeric``
            enc.robust_ = list(state["robust"])
        enc.n_features_in_ = len(enc.columns_)
        enc.n_features_out_ = len(enc.feature_names_out())
        return enc

