"""MUNGE and RANDOM pseudo-data (SPEC §7.2), checked against a literal Algorithm 1 loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from kdistill.tabular.munge import Munge, munge
from kdistill.tabular.random_marginals import RandomMarginals, random_marginals


def mixed_data(n: int = 40, seed: int = 0) -> np.ndarray:
    """Three continuous columns on different scales and two nominal columns (codes 0..3)."""
    rng = np.random.default_rng(seed)
    cont = rng.standard_normal((n, 3)) * np.array([1.0, 10.0, 0.1]) + np.array([0.0, 50.0, -2.0])
    nom = rng.integers(0, 4, (n, 2)).astype(float)
    return np.column_stack([cont[:, 0], nom[:, 0], cont[:, 1], cont[:, 2], nom[:, 1]])


NOMINAL = [1, 4]
CONTINUOUS = [0, 2, 3]


def reference_munge(
    X: np.ndarray,
    nominal: list[int],
    k: int,
    p: float,
    s: float,
    seed: int,
    neighbours: list[int] | None = None,
) -> np.ndarray:
    """Algorithm 1 literally, one example and one attribute at a time, with the module's draws.

    The random numbers are drawn in the module's order (per round: swap decisions for all
    (example, attribute), then two normals per continuous attribute) so results can be compared.
    """
    rng = np.random.default_rng(seed)
    n, d = X.shape
    cont = [a for a in range(d) if a not in nominal]
    low = X[:, cont].min(axis=0)
    span = X[:, cont].max(axis=0) - low
    rounds = []
    for _ in range(k):
        swap = rng.random((n, d)) < p  # columns: continuous first, then nominal
        normals = rng.standard_normal((n, 2, len(cont)))
        T = [list(row) for row in X]
        for e in range(n):
            if not swap[e].any():
                continue
            if neighbours is None:
                best, j = np.inf, -1
                for other in range(n):
                    if other == e:
                        continue
                    dist = 0.0
                    for i, a in enumerate(cont):
                        dist += ((T[e][a] - T[other][a]) / span[i]) ** 2
                    for a in nominal:
                        dist += T[e][a] != T[other][a]
                    if dist < best:
                        best, j = dist, other
            else:
                j = neighbours[e]
            for i, a in enumerate(cont):
                if swap[e, i]:
                    ea, ja = T[e][a], T[j][a]
                    sd = abs(ea - ja) / s
                    T[e][a] = ja + sd * normals[e, 0, i]
                    T[j][a] = ea + sd * normals[e, 1, i]
            for i, a in enumerate(nominal):
                if swap[e, len(cont) + i]:
                    T[e][a], T[j][a] = T[j][a], T[e][a]
        rounds.append(np.array(T))
    return np.vstack(rounds)


def brute_neighbours(X: np.ndarray, nominal: list[int]) -> list[int]:
    cont = [a for a in range(X.shape[1]) if a not in nominal]
    scaled = (X[:, cont] - X[:, cont].min(0)) / np.ptp(X[:, cont], axis=0)
    out = []
    for e in range(len(X)):
        dist = ((scaled - scaled[e]) ** 2).sum(1) + (X[:, nominal] != X[e, nominal]).sum(1)
        dist[e] = np.inf
        out.append(int(np.argmin(dist)))
    return out


# ----------------------------------------------------------------------------------------------
# Algorithm 1
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.3, 1.0])
def test_sequential_matches_literal_algorithm(p: float) -> None:
    X = mixed_data(30, seed=1)
    ours = munge(X, k=2, p=p, s=3.0, nominal=NOMINAL, random_state=7)
    ref = reference_munge(X, NOMINAL, k=2, p=p, s=3.0, seed=7)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_precomputed_neighbours_are_exact() -> None:
    X = mixed_data(60, seed=2)
    model = Munge(nominal=NOMINAL, algorithm="precomputed").fit(X)
    assert model.neighbours_.tolist() == brute_neighbours(X, NOMINAL)


@pytest.mark.parametrize("p", [0.3, 1.0])
def test_precomputed_matches_sequential_updates(p: float) -> None:
    # The waves must give what updating the pairs one by one, in order, gives.
    X = mixed_data(50, seed=3)
    ours = munge(X, k=3, p=p, s=2.0, nominal=NOMINAL, algorithm="precomputed", random_state=4)
    ref = reference_munge(
        X, NOMINAL, k=3, p=p, s=2.0, seed=4, neighbours=brute_neighbours(X, NOMINAL)
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_neighbour_searched_in_the_modified_copy() -> None:
    # s huge: every update is a swap. Rows 0, 3, 5 (one column).
    # Algorithm 1: e=0 swaps with 3 -> [3, 0, 5]; row 1 (now 0) is nearest to row 0 (3) ->
    # [0, 3, 5]; row 2 (5) is nearest to row 1 (3) -> [0, 5, 3].
    # Neighbours of the original data (0->1, 1->2, 2->1): [3, 0, 5], [3, 5, 0], [3, 0, 5].
    X = np.array([[0.0], [3.0], [5.0]])
    faithful = munge(X, k=1, p=1.0, s=1e12, random_state=0)
    fast = munge(X, k=1, p=1.0, s=1e12, algorithm="precomputed", random_state=0)
    np.testing.assert_allclose(faithful.ravel(), [0.0, 5.0, 3.0], atol=1e-9)
    np.testing.assert_allclose(fast.ravel(), [3.0, 0.0, 5.0], atol=1e-9)


def test_continuous_values_drawn_around_the_neighbour() -> None:
    # Same three points, s = 20: the last step draws row 1 from N(5, |5 - 3| / 20) and row 2
    # from N(row 1 before the step, ~0.1), itself drawn around 3.
    X = np.array([[0.0], [3.0], [5.0]])
    out = munge(X, k=3000, p=1.0, s=20.0, random_state=1).reshape(3000, 3)
    assert out[:, 1].mean() == pytest.approx(5.0, abs=0.01)
    assert out[:, 1].std() == pytest.approx(0.1, rel=0.1)
    assert out[:, 2].mean() == pytest.approx(3.0, abs=0.02)
    assert out[:, 0].mean() == pytest.approx(0.0, abs=0.02)
    assert 0.0 < out[:, 0].std() < 0.5


def test_nominal_values_are_swapped_not_invented() -> None:
    X = mixed_data(40, seed=5)
    for algorithm in ("sequential", "precomputed"):
        out = munge(X, k=4, p=0.7, nominal=NOMINAL, algorithm=algorithm, random_state=2)
        for a in NOMINAL:
            assert set(np.unique(out[:, a])) <= set(np.unique(X[:, a]))
            for r in range(4):  # a swap keeps each round's multiset of values
                block = out[r * 40 : (r + 1) * 40, a]
                np.testing.assert_array_equal(np.sort(block), np.sort(X[:, a]))


@pytest.mark.parametrize("algorithm", ["sequential", "precomputed"])
def test_p_zero_gives_k_copies(algorithm: str) -> None:
    X = mixed_data(25, seed=6)
    out = munge(X, k=3, p=0.0, nominal=NOMINAL, algorithm=algorithm, random_state=0)
    np.testing.assert_array_equal(out, np.vstack([X, X, X]))


@pytest.mark.parametrize("k", [1, 4])
def test_output_size_is_k_times_n(k: int) -> None:
    X = mixed_data(17, seed=7)
    out = munge(X, k=k, nominal=NOMINAL, random_state=0)
    assert out.shape == (k * 17, 5)
    assert np.all(np.isfinite(out))


def test_constant_and_duplicate_rows() -> None:
    X = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 2.0], [1.0, 2.0]])
    out = munge(X, k=2, p=1.0, random_state=0)
    assert set(map(tuple, out)) <= set(map(tuple, X))  # duplicates: sd 0, constant column


# ----------------------------------------------------------------------------------------------
# Data frames and formats
# ----------------------------------------------------------------------------------------------


def test_dataframe_round_trip() -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(8)
    df = pd.DataFrame(
        {
            "x": rng.random(30),
            "colour": pd.Categorical(rng.choice(["red", "green", "blue"], 30)),
            "n": rng.integers(0, 5, 30),
            "flag": rng.random(30) < 0.5,
            "city": rng.choice(["a", "b"], 30).astype(object),
        }
    )
    out = munge(df, k=2, p=0.5, random_state=0)
    assert list(out.columns) == list(df.columns) and len(out) == 60
    assert out["colour"].dtype == df["colour"].dtype
    assert out["flag"].dtype == bool and out["x"].dtype == np.float64
    assert set(out["city"]) <= {"a", "b"} and set(out["colour"]) <= {"red", "green", "blue"}
    copies = munge(df, k=2, p=0.0)
    pd.testing.assert_frame_equal(copies, pd.concat([df, df], ignore_index=True), check_dtype=False)
    assert Munge().fit(df).nominal_.tolist() == [1, 3, 4]  # non-numeric and boolean columns
    named = Munge(nominal=["colour", "n", "flag", 4]).fit(df)
    assert named.nominal_.tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="'city' is not numeric"):
        Munge(nominal=["colour", "flag"]).fit(df)


def test_object_array_with_strings() -> None:
    X = np.array([[0.1, "u"], [0.4, "v"], [0.2, "u"], [0.9, "w"]], dtype=object)
    out = munge(X, k=3, p=0.5, nominal=[1], random_state=0)
    assert out.dtype == object and out.shape == (12, 2)
    assert set(out[:, 1]) <= {"u", "v", "w"}


def test_reproducible_and_fresh_samples() -> None:
    X = mixed_data(20, seed=9)
    model = Munge(k=2, nominal=NOMINAL, random_state=3).fit(X)
    first = model.sample()
    second = model.sample()
    assert not np.array_equal(first, second)  # the stream continues
    np.testing.assert_array_equal(clone(model).fit(X).sample(), first)  # a refit restarts it


# ----------------------------------------------------------------------------------------------
# RANDOM baseline
# ----------------------------------------------------------------------------------------------


def test_random_marginals() -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal(200)
    X = np.column_stack([x, x, rng.integers(0, 3, 200)])  # two identical columns
    out = random_marginals(X, k=5, random_state=0)
    assert out.shape == (1000, 3)
    for a in range(3):
        assert set(np.unique(out[:, a])) <= set(np.unique(X[:, a]))
    assert abs(np.corrcoef(out[:, 0], out[:, 1])[0, 1]) < 0.1  # dependence is gone
    assert out[:, 0].mean() == pytest.approx(x.mean(), abs=0.1)


def test_random_marginals_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1, 2, 3], "b": pd.Categorical(["x", "y", "x"])})
    out = RandomMarginals(k=4, random_state=0).fit_sample(df)
    assert len(out) == 12 and list(out.dtypes) == list(df.dtypes)


# ----------------------------------------------------------------------------------------------
# Estimator conventions and errors
# ----------------------------------------------------------------------------------------------


def test_sklearn_conventions() -> None:
    model = Munge(k=3, p=0.2, s=5.0, nominal=[1], algorithm="precomputed", random_state=1)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    copy.set_params(k=7)
    assert copy.k == 7 and model.k == 3
    with pytest.raises(NotFittedError):
        model.sample()
    with pytest.raises(NotFittedError):
        RandomMarginals().sample()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k": 0}, "k must"),
        ({"k": 1.5}, "k must"),
        ({"p": -0.1}, "p must"),
        ({"p": 1.1}, "p must"),
        ({"s": 0.0}, "s must"),
        ({"s": -1.0}, "s must"),
        ({"nominal": [5]}, "out of range"),
        ({"nominal": ["colour"]}, "not found"),
        ({"algorithm": "fast"}, "algorithm"),
    ],
)
def test_bad_parameters(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Munge(**params).fit(mixed_data(10))


def test_bad_data() -> None:
    X = mixed_data(10)
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values in column 2"):
        Munge().fit(X)
    # RANDOM only copies values: a missing one is resampled within its own column
    drawn = RandomMarginals(k=20, random_state=0).fit(X).sample()
    assert np.isnan(drawn[:, 2]).any() and not np.isnan(np.delete(drawn, 2, axis=1)).any()
    with pytest.raises(ValueError, match="2 rows"):
        Munge().fit(mixed_data(1))
    with pytest.raises(ValueError, match="2-D"):
        Munge().fit(np.zeros(5))
    with pytest.raises(ValueError, match="not numeric"):
        Munge().fit(np.array([[0.1, "u"], [0.2, "v"]], dtype=object))
    with pytest.raises(ValueError, match="k must"):
        RandomMarginals(k=0).fit(mixed_data(5))


def test_a_missing_nominal_value_is_a_category_swapped_as_one() -> None:
    # Swaps only exchange values between two rows, so each round keeps the column's multiset:
    # k rounds hold exactly k times the original number of missing values, and nothing new.
    rng = np.random.default_rng(0)
    colour = rng.choice(np.array(["red", "blue", None], dtype=object), 60)
    X = pd.DataFrame({"x": rng.standard_normal(60), "colour": colour})
    out = Munge(k=4, p=0.5, nominal=["colour"], random_state=0).fit_sample(X)
    assert out["colour"].isna().sum() == 4 * X["colour"].isna().sum() > 0
    assert set(out["colour"].dropna()) == {"red", "blue"}
    assert not out["x"].isna().any()
