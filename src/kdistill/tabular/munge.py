"""Pseudo-data for model compression: MUNGE (Bucila et al. 2006, §2); RANDOM is in
:mod:`kdistill.tabular.random_marginals`.

MUNGE (Algorithm 1, SPEC §7.2) makes ``k`` perturbed copies of the training set. In each round
every example ``e`` of the copy ``T'`` finds its nearest neighbour ``e'`` in ``T'`` and, for each
attribute with probability ``p``, the pair exchanges values: nominal values are swapped;
continuous values are redrawn as ``e_a ~ N(e'_a, sd)`` and ``e'_a ~ N(e_a, sd)`` with
``sd = |e_a - e'_a| / s``, both from the values before the update. Samples therefore stay near
the data manifold, unlike RANDOM, which keeps only the per-column marginals.

Distance: continuous columns are scaled linearly to [0, 1] with the training minimum and range,
nominal columns count 1 per mismatch (Hamming), combined as
``sqrt(sum_continuous (x_a - z_a)^2 + #nominal mismatches)``.

Algorithms:
- ``"sequential"`` (default, Algorithm 1 as written): the neighbour of ``e`` is searched in the
  copy being modified, so it sees the perturbations made earlier in the round. The copy changes
  after every example, so each search is one exact vectorised brute-force pass, O(n d) per
  example; ties go to the lowest row index.
- ``"precomputed"``: neighbours are found once on the original data with scikit-learn's
  ``NearestNeighbors`` (every round starts from the same copy of T, so one search serves all
  rounds); the pair updates are the same. Faster, not Algorithm 1 to the letter.

Inputs are numpy arrays or pandas DataFrames (pandas is optional). Numeric arrays come back as
float64 arrays, other arrays as object arrays; DataFrames come back as DataFrames with the same
columns, continuous columns as float64 and nominal columns in their original dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from .inputs import check_table

try:
    import pandas as pd
except ImportError:  # pandas is optional
    pd = None

ALGORITHMS: tuple[str, ...] = ("sequential", "precomputed")

NominalSpec = Sequence[int | str] | None


def _is_dataframe(X: Any) -> bool:
    return pd is not None and isinstance(X, pd.DataFrame)


def _is_missing(values: np.ndarray) -> np.ndarray:
    """Element-wise missing test that works for numeric and object arrays."""
    if values.dtype.kind in "fc":
        return ~np.isfinite(values)
    if values.dtype.kind == "O":
        if pd is not None:
            return np.asarray(pd.isna(values), dtype=bool)
        return np.array([v is None or (isinstance(v, float) and v != v) for v in values.ravel()])
    return np.zeros(values.shape, dtype=bool)


@dataclass
class _Table:
    """A training table split into scaled continuous columns and integer-coded nominal columns."""

    cont: np.ndarray  # (n, n_cont) float64, original units
    codes: np.ndarray  # (n, n_nom) int64
    categories: list[np.ndarray]  # per nominal column, code -> original value
    cont_cols: np.ndarray  # positions of the continuous columns in the input
    nom_cols: np.ndarray  # positions of the nominal columns
    low: np.ndarray  # per continuous column, the training minimum
    span: np.ndarray  # per continuous column, max - min (1 where constant)
    columns: list[Any] | None  # DataFrame column labels, None for arrays
    dtypes: list[Any] | None  # DataFrame dtypes
    numeric: bool  # array input was numeric

    def scaled(self, cont: np.ndarray) -> np.ndarray:
        return (cont - self.low) / self.span

    def decode(self, cont: np.ndarray, codes: np.ndarray) -> Any:
        """Rebuild the input's format from continuous values and nominal codes."""
        n = cont.shape[0]
        n_cols = len(self.cont_cols) + len(self.nom_cols)
        if self.columns is not None:
            series = []
            for j in range(n_cols):
                where = np.flatnonzero(self.cont_cols == j)
                if len(where):
                    series.append(pd.Series(cont[:, where[0]]))
                else:
                    i = int(np.flatnonzero(self.nom_cols == j)[0])
                    values = self.categories[i][codes[:, i]]
                    series.append(pd.Series(values).astype(self.dtypes[j]))
            frame = pd.concat(series, axis=1)
            frame.columns = self.columns
            return frame
        out = np.empty((n, n_cols), dtype=np.float64 if self.numeric else object)
        out[:, self.cont_cols] = cont
        for i, j in enumerate(self.nom_cols):
            out[:, j] = self.categories[i][codes[:, i]]
        return out


def _nominal_positions(nominal: NominalSpec, columns: list[Any] | None, n_cols: int) -> list[int]:
    """Column positions named by ``nominal`` (ints, or DataFrame labels)."""
    positions: list[int] = []
    for item in nominal or []:
        if columns is not None and not isinstance(item, int | np.integer) and item in columns:
            positions.append(columns.index(item))
        elif isinstance(item, int | np.integer) and not isinstance(item, bool):
            if not 0 <= item < n_cols:
                raise ValueError(f"nominal index {item} out of range for {n_cols} columns")
            positions.append(int(item))
        else:
            raise ValueError(f"nominal column {item!r} not found")
    return sorted(set(positions))


def _encode(X: Any, nominal: NominalSpec) -> _Table:
    """Validate ``X`` and split it into continuous and nominal parts."""
    X = check_table(X, "MUNGE", min_rows=2)  # sparse, complex, not 2-D, no columns, one row
    if _is_dataframe(X):
        columns = list(X.columns)
        dtypes = list(X.dtypes)
        raw = [X.iloc[:, j].to_numpy() for j in range(X.shape[1])]
        if nominal is None:  # non-numeric and boolean columns are nominal
            nominal = [
                j
                for j in range(len(raw))
                if not pd.api.types.is_numeric_dtype(dtypes[j])
                or pd.api.types.is_bool_dtype(dtypes[j])
            ]
        numeric = False
        n_rows = X.shape[0]
    else:
        array = X
        columns = dtypes = None
        raw = [array[:, j] for j in range(array.shape[1])]
        numeric = array.dtype.kind in "biuf"
        n_rows = array.shape[0]
    n_cols = len(raw)
    nom_cols = _nominal_positions(nominal, columns, n_cols)
    cont_cols = [j for j in range(n_cols) if j not in nom_cols]

    cont = np.empty((n_rows, len(cont_cols)))
    for i, j in enumerate(cont_cols):
        try:
            cont[:, i] = np.asarray(raw[j], dtype=np.float64)
        except (TypeError, ValueError):
            name = columns[j] if columns is not None else j
            raise ValueError(f"column {name!r} is not numeric; list it in nominal") from None
    if not np.all(np.isfinite(cont)):
        j = cont_cols[int(np.flatnonzero(~np.isfinite(cont).all(axis=0))[0])]
        raise ValueError(f"X contains NaN or infinite values in column "
                         f"{columns[j] if columns is not None else j!r}")
    codes = np.empty((n_rows, len(nom_cols)), dtype=np.int64)
    categories = []
    for i, j in enumerate(nom_cols):
        values = np.asarray(raw[j])
        if pd is not None:  # a missing nominal value is a category of its own, swapped as one
            inverse, uniques = pd.factorize(values, use_na_sentinel=False)
            uniques = np.asarray(uniques, dtype=values.dtype)
        elif _is_missing(values).any():
            raise ValueError("X contains NaN or missing nominal values (install pandas)")
        else:
            uniques, inverse = np.unique(values, return_inverse=True)
        codes[:, i] = inverse
        categories.append(uniques)
    low = cont.min(axis=0) if len(cont_cols) else np.zeros(0)
    span = cont.max(axis=0) - low if len(cont_cols) else np.zeros(0)
    span[span == 0] = 1.0
    return _Table(
        cont, codes, categories, np.array(cont_cols, dtype=np.int64),
        np.array(nom_cols, dtype=np.int64), low, span, columns, dtypes, numeric,
    )  # fmt: skip


_HALF_SQRT = np.sqrt(0.5)


def _features(table: _Table, cont: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Rows in the distance space: scaled continuous columns, then one-hot nominal columns.

    The one-hot entries are 1/sqrt(2), so a nominal mismatch adds exactly 1 to the squared
    Euclidean distance (the Hamming term).
    """
    parts = [table.scaled(cont)]
    for i in range(codes.shape[1]):
        parts.append(np.eye(len(table.categories[i]))[codes[:, i]] * _HALF_SQRT)
    return np.hstack(parts)


def _precomputed_neighbours(table: _Table) -> np.ndarray:
    """Nearest other row of each row of the original data (scikit-learn, exact search)."""
    index = NearestNeighbors(n_neighbors=1).fit(_features(table, table.cont, table.codes))
    return index.kneighbors(return_distance=False)[:, 0]


def _munge_round(
    table: _Table,
    p: float,
    s: float,
    rng: np.random.Generator,
    neighbours: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One pass of Algorithm 1 over a fresh copy of the training set."""
    cont = table.cont.copy()
    codes = table.codes.copy()
    n, n_cont = cont.shape
    n_nom = codes.shape[1]
    # All random numbers of the round up front: one swap decision per (example, attribute) and
    # two standard normals per continuous attribute (for e and for its neighbour).
    swap = rng.random((n, n_cont + n_nom)) < p
    noise = rng.standard_normal((n, 2, n_cont)) / s
    swap_cont = swap[:, :n_cont]
    swap_nom = swap[:, n_cont:]
    active = swap.any(axis=1)

    if neighbours is not None:
        _apply_in_waves(cont, codes, neighbours, swap_cont, swap_nom, noise, active)
        return cont, codes

    # Algorithm 1: squared distances from cached features and norms, d2(e, j) = |f_j|^2
    # - 2 f_j.f_e + const, one matrix-vector product per example; the rows of e and e' are
    # refreshed after every change so later searches see the perturbed copy.
    features = _features(table, cont, codes)
    norms = np.einsum("ij,ij->i", features, features)
    offsets = n_cont + np.concatenate([[0], np.cumsum([len(c) for c in table.categories])])
    for e in np.flatnonzero(active):  # an example with no swap changes nothing: skip its search
        dist = norms - 2.0 * (features @ features[e])
        dist[e] = np.inf
        j = int(np.argmin(dist))
        _update_pairs(cont, codes, np.array([e]), np.array([j]), swap_cont, swap_nom, noise)
        for row in (e, j):
            features[row, :n_cont] = (cont[row] - table.low) / table.span
            if n_nom:
                features[row, n_cont:] = 0.0
                features[row, offsets[:-1] + codes[row]] = _HALF_SQRT
            norms[row] = features[row] @ features[row]
    return cont, codes


def _update_pairs(
    cont: np.ndarray,
    codes: np.ndarray,
    rows: np.ndarray,
    partners: np.ndarray,
    swap_cont: np.ndarray,
    swap_nom: np.ndarray,
    noise: np.ndarray,
) -> None:
    """Apply the MUNGE exchange to the pairs (rows[i], partners[i]), which must be disjoint.

    ``noise`` holds standard normals already divided by s, so ``spread * noise`` is a draw with
    sd = |e_a - e'_a| / s; both new values come from the values before the update.
    """
    if cont.shape[1]:
        a = cont[rows]
        b = cont[partners]
        spread = np.abs(a - b)
        mask = swap_cont[rows]
        cont[rows] = np.where(mask, b + spread * noise[rows, 0], a)
        cont[partners] = np.where(mask, a + spread * noise[rows, 1], b)
    if codes.shape[1]:
        a_codes = codes[rows]
        b_codes = codes[partners]
        mask = swap_nom[rows]
        codes[rows] = np.where(mask, b_codes, a_codes)
        codes[partners] = np.where(mask, a_codes, b_codes)


def _apply_in_waves(
    cont: np.ndarray,
    codes: np.ndarray,
    neighbours: np.ndarray,
    swap_cont: np.ndarray,
    swap_nom: np.ndarray,
    noise: np.ndarray,
    active: np.ndarray,
) -> None:
    """Same result as updating the pairs (e, neighbours[e]) one by one in order of e.

    Each step touches two rows. A step's wave is one more than the last wave that touched
    either of its rows, so steps in one wave touch disjoint rows and depend only on earlier
    waves; applying whole waves at once then reproduces the sequential order exactly. Nearest
    neighbour graphs give about ten waves, so a round costs about ten array operations.
    """
    last_wave = [0] * len(cont)
    steps = np.flatnonzero(active)
    waves = np.empty(len(steps), dtype=np.int64)
    for i, e in enumerate(steps.tolist()):
        j = int(neighbours[e])
        wave = max(last_wave[e], last_wave[j]) + 1
        last_wave[e] = last_wave[j] = wave
        waves[i] = wave
    for wave in range(1, int(waves.max(initial=0)) + 1):
        rows = steps[waves == wave]
        _update_pairs(cont, codes, rows, neighbours[rows], swap_cont, swap_nom, noise)


def _check_munge_params(k: int, p: float, s: float, algorithm: str) -> None:
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1; got {k!r}")
    if not isinstance(p, Real) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1]; got {p!r}")
    if not isinstance(s, Real) or isinstance(s, bool) or not 0.0 < s < np.inf:
        raise ValueError(f"s must be a finite number > 0; got {s!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}; got {algorithm!r}")


def munge(
    X: Any,
    k: int = 10,
    p: float = 0.5,
    s: float = 10.0,
    nominal: NominalSpec = None,
    algorithm: str = "sequential",
    random_state: int | np.random.Generator | None = None,
) -> Any:
    """MUNGE pseudo-data: ``k * n`` rows, round ``r`` in rows ``r*n .. (r+1)*n - 1``.

    ``nominal`` lists the nominal columns (positions, or labels for a DataFrame); by default a
    DataFrame's non-numeric and boolean columns are nominal and an array has none. The paper does
    not state p and s; p = 0.5, s = 10 follow a public implementation (SPEC §7.2).
    """
    return Munge(k, p, s, nominal, algorithm, random_state).fit_sample(X)


class Munge(BaseEstimator):
    """MUNGE generator with scikit-learn conventions: ``fit(X)`` then ``sample()``.

    ``fit`` validates the parameters and the data and, for ``algorithm="precomputed"``, finds
    the neighbours. Each ``sample()`` call returns ``k * n`` fresh rows; a refit restarts the
    random stream from ``random_state``. Fitted attributes: ``n_features_in_``, ``nominal_``
    (positions of the nominal columns) and ``neighbours_`` (precomputed only, else None).
    """

    def __init__(
        self,
        k: int = 10,
        p: float = 0.5,
        s: float = 10.0,
        nominal: NominalSpec = None,
        algorithm: str = "sequential",
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.k = k
        self.p = p
        self.s = s
        self.nominal = nominal
        self.algorithm = algorithm
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> Munge:
        """Store the encoded training table (``y`` is ignored; pseudo-data are unlabeled)."""
        _check_munge_params(self.k, self.p, self.s, self.algorithm)
        self.table_ = _encode(X, self.nominal)
        self.n_features_in_ = len(self.table_.cont_cols) + len(self.table_.nom_cols)
        self.nominal_ = self.table_.nom_cols.copy()
        self.neighbours_ = None
        if self.algorithm == "precomputed":
            self.neighbours_ = _precomputed_neighbours(self.table_)
        self.rng_ = np.random.default_rng(self.random_state)
        return self

    def sample(self) -> Any:
        """``k * n`` pseudo examples in the training data's format."""
        check_is_fitted(self, "table_")
        conts, codes = [], []
        # one BLAS thread: the per-example products are small, threads only add overhead
        with threadpool_limits(limits=1, user_api="blas"):
            for _ in range(self.k):
                if self.p == 0:
                    cont, code = self.table_.cont.copy(), self.table_.codes.copy()
                else:
                    table, rng = self.table_, self.rng_
                    cont, code = _munge_round(table, self.p, self.s, rng, self.neighbours_)
                conts.append(cont)
                codes.append(code)
        return self.table_.decode(np.vstack(conts), np.vstack(codes))

    def fit_sample(self, X: Any, y: Any = None) -> Any:
        return self.fit(X).sample()
