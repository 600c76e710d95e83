"""Tabular problems for model compression: the UCI sets of R's mlbench, CSV files, encoding.

The paper's problems (SPEC §7.3) are binary; the ones we can read offline come from Debian's
``r-cran-mlbench`` (``/usr/lib/R/site-library/mlbench/data/*.rda``, read with ``rdata``):

- ``letter.p1``: LetterRecognition, 'O' against the rest (about 4% positive), 16 numeric columns;
- ``letter.p2``: LetterRecognition, A-M against N-Z (about 50%);
- ``satellite``: Landsat Satellite, 'damp grey soil' (the class most often confused) against the
  rest, 36 numeric columns;
- ``dna``: DNA splice junctions (StatLog), 'n' (no junction) against 'ei'/'ie', 180 nominal
  columns: the nominal problem;
- ``shuttle``: Statlog Shuttle, 'Rad.Flow' against the rest, 9 numeric columns.

Every problem comes as a :class:`TabularProblem`: a DataFrame of inputs (nominal columns are
pandas categoricals and listed in ``nominal``) and 0/1 labels. :func:`split_protocol` draws the
paper's 4,000 train / 1,000 hillclimb / rest-as-test split, or a scaled one for smaller sets.

:class:`TabularEncoder` turns a DataFrame into the float matrix models see: numeric columns
standardized with the training mean and standard deviation, nominal columns one-hot (or ordinal)
with the training categories; it round-trips through JSON so an exported model needs no pickle.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "MLBENCH_DIR", "PROBLEMS", "TabularProblem", "load_mlbench", "load_problem",
    "split_protocol", "TabularEncoder", "read_csv_problem", "check_split_sizes",
]

MLBENCH_DIR = Path("/usr/lib/R/site-library/mlbench/data")

# name -> (R data set, target column, positive classes, default protocol, description)
_DEFINITIONS: dict[str, tuple[str, str, tuple[str, ...], tuple[int, int, int | None], str]] = {
    "letter.p1": ("LetterRecognition", "lettr", ("O",), (4000, 1000, None),
                  "LetterRecognition, 'O' vs rest"),
    "letter.p2": ("LetterRecognition", "lettr", tuple("ABCDEFGHIJKLM"), (4000, 1000, None),
                  "LetterRecognition, A-M vs N-Z"),
    "satellite": ("Satellite", "classes", ("damp grey soil",), (4000, 1000, None),
                  "Landsat Satellite, 'damp grey soil' vs rest"),
    # 3,186 rows: the protocol is scaled to 2,000 / 500 / 686 (the same 4:1 train:hillclimb).
    "dna": ("DNA", "Class", ("n",), (2000, 500, None),
            "DNA splice junctions, 'n' (no junction) vs 'ei'/'ie'; 180 nominal columns"),
    # 58,000 rows: the test set is capped at 20,000 (the paper's test sets are 4k-35k).
    "shuttle": ("Shuttle", "Class", ("Rad.Flow",), (4000, 1000, 20000),
                "Statlog Shuttle, 'Rad.Flow' vs rest"),
}
PROBLEMS: tuple[str, ...] = tuple(_DEFINITIONS)


@dataclass
class TabularProblem:
    """Inputs, 0/1 labels and the split protocol of one binary problem."""

    name: str
    X: pd.DataFrame
    y: np.ndarray
    nominal: list[str]
    description: str
    protocol: tuple[int, int, int | None]  # train, hillclimb, test (None: all the rest)
    source: str = ""
    classes: list[str] = field(default_factory=lambda: ["rest", "positive"])


def _mlbench_dir(data_dir: str | os.PathLike | None) -> Path:
    return Path(data_dir or os.environ.get("KDISTILL_MLBENCH") or MLBENCH_DIR)


def load_mlbench(name: str, data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One data frame of R's mlbench package, read from its ``.rda`` file with ``rdata``."""
    path = _mlbench_dir(data_dir) / f"{name}.rda"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: install Debian's r-cran-mlbench "
                                f"(apt-get install r-cran-mlbench) or set KDISTILL_MLBENCH")
    try:
        import rdata
    except ImportError:
        raise ValueError("reading mlbench data needs the rdata package: "
                         "pip install 'kdistill[tabular]'") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Unknown encoding. Assumed ASCII." for every file
        frames = rdata.read_rda(path)
    if name not in frames:
        raise ValueError(f"{path} holds {sorted(frames)}, not {name!r}")
    frame = frames[name]
    frame.index = pd.RangeIndex(len(frame))
    return frame


def load_problem(name: str, data_dir: str | os.PathLike | None = None) -> TabularProblem:
    """One of :data:`PROBLEMS` as a :class:`TabularProblem`."""
    if name not in _DEFINITIONS:
        raise ValueError(f"unknown problem {name!r}; known: {', '.join(PROBLEMS)}")
    dataset, target, positive, protocol, description = _DEFINITIONS[name]
    frame = load_mlbench(dataset, data_dir)
    labels = frame[target].astype(str)
    y = labels.isin(positive).to_numpy().astype(np.int64)
    X = frame.drop(columns=[target])
    nominal = [c for c in X.columns if _is_nominal_dtype(X[c].dtype)]
    for c in nominal:  # plain categoricals: R's ordered factors carry no order we use
        X[c] = X[c].astype(str).astype("category")
    return TabularProblem(name, X, y, nominal, description, protocol,
                          str(_mlbench_dir(data_dir) / f"{dataset}.rda"))


def check_split_sizes(n_rows: int, n_train: int, n_hillclimb: int, n_test: int | None) -> None:
    """Raise a clear ValueError when the rows cannot fill the split."""
    n_test_min = 1 if n_test is None else n_test
    need = n_train + n_hillclimb + n_test_min
    if n_train < 1 or n_hillclimb < 1 or n_test_min < 1:
        raise ValueError(f"train, hillclimb and test parts must be >= 1 row; got {n_train}, "
                         f"{n_hillclimb}, {n_test}")
    if n_rows < need:
        raise ValueError(f"too few rows for the split: {n_rows} rows, need at least {need} "
                         f"({n_train} train + {n_hillclimb} hillclimb + {n_test_min} test)")


def split_protocol(
    n_rows: int, n_train: int, n_hillclimb: int, n_test: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random disjoint train / hillclimb / test row indices (test: the rest, or ``n_test``)."""
    check_split_sizes(n_rows, n_train, n_hillclimb, n_test)
    perm = np.random.default_rng(seed).permutation(n_rows)
    train = perm[:n_train]
    hill = perm[n_train:n_train + n_hillclimb]
    rest = perm[n_train + n_hillclimb:]
    test = rest if n_test is None else rest[:n_test]
    return np.sort(train), np.sort(hill), np.sort(test)


# ---------------------------------------------------------------------------------- encoding

def _is_nominal_dtype(dtype: Any) -> bool:
    return (not pd.api.types.is_numeric_dtype(dtype)) or pd.api.types.is_bool_dtype(dtype)


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
            nominal = [c for c in columns if _is_nominal_dtype(frame[c].dtype)]
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


# ---------------------------------------------------------------------------------- CSV

def read_csv_problem(
    path: str | os.PathLike, target: str
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Inputs, integer labels and class names from a CSV file with a header row.

    Classes are the target's distinct values sorted as text; rows with a missing target raise.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot parse as CSV ({str(exc).splitlines()[0]})") from None
    if target not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        raise ValueError(f"target column {target!r} not in {path.name} (columns: {shown})")
    labels = frame[target]
    if labels.isna().any():
        raise ValueError(f"target column {target!r} has {int(labels.isna().sum())} missing "
                         f"values")
    X = frame.drop(columns=[target])
    if X.shape[1] == 0:
        raise ValueError(f"{path.name} has no input columns besides {target!r}")
    text = labels.astype(str)
    classes = sorted(text.unique())
    if len(classes) < 2:
        raise ValueError(f"target column {target!r} has a single class ({classes[0]!r})")
    y = text.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    return X, y, classes
