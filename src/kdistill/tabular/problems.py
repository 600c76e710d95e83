"""Tabular problems for model compression: the UCI sets of R's mlbench, CSV files, the split.

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
Only numpy and pandas (and ``rdata`` when an mlbench file is read): no scikit-learn, no torch.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MLBENCH_DIR", "PROBLEMS", "TabularProblem", "load_mlbench", "load_problem",
    "split_protocol", "read_csv_problem", "read_csv_frame", "sniff_separator",
    "check_split_sizes", "is_nominal_dtype", "CSV_SEPARATORS",
]

CSV_SEPARATORS = ",;\t|"  # what sniffing chooses among

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
    nominal = [c for c in X.columns if is_nominal_dtype(X[c].dtype)]
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


def is_nominal_dtype(dtype: Any) -> bool:
    """Non-numeric and boolean columns are nominal (one-hot), the rest numeric."""
    return (not pd.api.types.is_numeric_dtype(dtype)) or pd.api.types.is_bool_dtype(dtype)


# ---------------------------------------------------------------------------------- CSV

def sniff_separator(path: str | os.PathLike) -> str:
    """The field separator of a CSV file: csv.Sniffer on its first 64 KiB (whole lines), among
    :data:`CSV_SEPARATORS`; "," when it cannot tell (one column, or no consistent choice)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        sample = fh.read(65536)
    if "\n" in sample.rstrip("\r\n"):
        sample = sample[:sample.rstrip("\r\n").rfind("\n")]  # no half line at the end
    try:
        return csv.Sniffer().sniff(sample, delimiters=CSV_SEPARATORS).delimiter
    except csv.Error:
        return ","


def read_csv_frame(path: str | os.PathLike, sep: str | None = None,
                   drop: tuple[str, ...] | list[str] = ()) -> tuple[pd.DataFrame, str]:
    """A CSV file with a header row as a DataFrame, and the separator used (``sep``, or
    sniffed when None); the ``drop`` columns removed (each must be there)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a CSV file")
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty: need a header row and data rows")
    if sep is not None and len(sep) != 1:
        raise ValueError(f"the separator must be one character; got {sep!r}")
    sep = sniff_separator(path) if sep is None else sep
    try:
        frame = pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot parse as CSV ({str(exc).splitlines()[0]})") from None
    if len(frame) == 0:
        raise ValueError(f"{path} has a header row but no data rows")
    for column in drop:
        if column not in frame.columns:
            raise ValueError(f"column to drop {column!r} not in {path.name} "
                             f"({_columns_text(frame, sep)})")
    return frame.drop(columns=list(drop)), sep


def _columns_text(frame: pd.DataFrame, sep: str) -> str:
    shown = ", ".join(map(str, list(frame.columns)[:20]))
    return f"columns: {shown}; separator {sep!r}"


def _class_labels(labels: pd.Series, target: str) -> tuple[list[Any], np.ndarray]:
    """Classes and integer codes: numbers sorted as numbers (1, 2, 10), text as text."""
    if pd.api.types.is_bool_dtype(labels.dtype):
        values = labels.to_numpy(dtype=bool)
    elif pd.api.types.is_numeric_dtype(labels.dtype):
        values = labels.to_numpy(dtype=np.float64)
        odd = values[~np.isfinite(values) | (values != np.round(values))]
        if len(odd):
            raise ValueError(f"target column {target!r} holds non-integer numbers (such as "
                             f"{odd[0]:g}): a continuous target; compress needs class labels")
        values = values.astype(np.int64)
    else:
        values = labels.astype(str).to_numpy()
    classes, y = np.unique(values, return_inverse=True)
    return [c.item() if isinstance(c, np.generic) else c for c in classes], y.astype(np.int64)


def read_csv_problem(
    path: str | os.PathLike, target: str, sep: str | None = None,
    drop: tuple[str, ...] | list[str] = (),
) -> tuple[pd.DataFrame, np.ndarray, list[Any]]:
    """Inputs, integer labels and class names from a CSV file with a header row.

    ``sep``: the field separator (None: sniffed); ``drop``: columns to leave out. Classes are
    the target's distinct values, numbers kept as numbers and sorted as numbers, anything else
    sorted as text; rows with a missing target, and a target with fractional numbers, raise.
    """
    path = Path(path)
    if target in drop:
        raise ValueError(f"cannot drop the target column {target!r}")
    frame, sep = read_csv_frame(path, sep, drop)
    if target not in frame.columns:
        raise ValueError(f"target column {target!r} not in {path.name} "
                         f"({_columns_text(frame, sep)})")
    labels = frame[target]
    if labels.isna().any():
        raise ValueError(f"target column {target!r} has {int(labels.isna().sum())} missing "
                         f"values")
    X = frame.drop(columns=[target])
    if X.shape[1] == 0:
        raise ValueError(f"{path.name} has no input columns besides {target!r}")
    for column in X.columns:  # NaN is a missing value the encoder fills; inf is not
        if pd.api.types.is_float_dtype(X[column]) and np.isinf(X[column].to_numpy()).any():
            raise ValueError(f"column {column!r} of {path.name} holds inf values")
    classes, y = _class_labels(labels, target)
    if len(classes) < 2:
        raise ValueError(f"target column {target!r} has a single class ({classes[0]!r})")
    return X, y, classes
