"""Ensemble selection (SPEC §6): checked against scikit-learn metrics and a slow reference loop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_squared_error,
    roc_auc_score,
)

from kdistill.tabular.metrics import METRICS, metric_score
from kdistill.tabular.selection import EnsembleSelection, ensemble_selection

GREATER = {"accuracy": True, "roc_auc": True, "f1": True, "log_loss": False, "rmse": False}


def sk_score(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    """The metrics as scikit-learn computes them (independent of the module's formulas)."""
    if p.ndim == 1:
        labels = (p > 0.5).astype(int)
        if metric == "accuracy":
            return accuracy_score(y, labels)
        if metric == "f1":
            return f1_score(y, labels)
        if metric == "roc_auc":
            return roc_auc_score(y, p)
        if metric == "log_loss":
            return log_loss(y, p, labels=[0, 1])
        return float(np.sqrt(mean_squared_error(y, p)))
    n_classes = p.shape[1]
    if metric == "accuracy":
        return accuracy_score(y, p.argmax(axis=1))
    if metric == "f1":
        return f1_score(y, p.argmax(axis=1), average="macro")
    if metric == "roc_auc":
        return roc_auc_score(y, p, multi_class="ovr", labels=list(range(n_classes)))
    if metric == "log_loss":
        return log_loss(y, p, labels=list(range(n_classes)))
    return float(np.sqrt(mean_squared_error(np.eye(n_classes)[y], p)))


def make_library(
    n_models: int, n_samples: int, n_classes: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy models of varying quality; labels carry noise so no ensemble is perfect."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_samples)
    y[:n_classes] = np.arange(n_classes)  # every class present
    quality = rng.uniform(0.2, 1.5, (n_models, 1, 1))
    signal = np.eye(n_classes)[y] * quality
    noise = rng.standard_normal((n_models, n_samples, n_classes))
    logits = signal + noise + 0.5 * rng.standard_normal((1, n_samples, n_classes))
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    if n_classes == 2:
        return probs[..., 1], y
    return probs, y


def reference_selection(
    preds: np.ndarray,
    y: np.ndarray,
    metric: str,
    n_init: int | str,
    max_iter: int,
    replacement: bool,
) -> dict:
    """Caruana's algorithm as a plain loop: every candidate mean recomputed from its members."""
    sign = 1.0 if GREATER[metric] else -1.0
    n_models = len(preds)

    def objective(members: list[int]) -> float:
        return sign * sk_score(metric, y, np.mean([preds[m] for m in members], axis=0))

    def first_best(values: list[float]) -> int:
        best = max(values)
        tol = 1e-12 * max(1.0, abs(best))
        return next(i for i, v in enumerate(values) if v >= best - tol)

    single = [objective([m]) for m in range(n_models)]
    order = sorted(range(n_models), key=lambda m: (-round(single[m], 12), m))
    if n_init == "auto":
        n_init = first_best([objective(order[:n]) for n in range(1, min(25, n_models) + 1)]) + 1
    members = list(order[:n_init])
    trajectory = [objective(members)] if members else []
    for _ in range(max_iter):
        candidates = [m for m in range(n_models) if replacement or m not in members]
        if not candidates:
            break
        values = [objective(members + [m]) for m in candidates]
        members.append(candidates[first_best(values)])
        trajectory.append(objective(members))
    best_step = first_best(trajectory)
    size = n_init + best_step if n_init else best_step + 1
    weights = np.bincount(members[:size], minlength=n_models) / size
    return {
        "picks": members,
        "trajectory": sign * np.array(trajectory),
        "best_step": best_step,
        "weights": weights,
        "init_size": n_init,
    }


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("metric", METRICS)
def test_metrics_match_sklearn(metric: str, n_classes: int) -> None:
    preds, y = make_library(6, 120, n_classes, seed=1)
    if n_classes == 2:
        preds = np.round(preds, 2)  # ties in the scores exercise the tied-rank AUC
    for p in preds:
        assert metric_score(y, p, metric) == pytest.approx(sk_score(metric, y, p), abs=1e-12)


def test_two_column_binary_equals_one_column() -> None:
    preds, y = make_library(8, 100, seed=2)
    two = np.stack([1.0 - preds, preds], axis=2)
    for metric in METRICS:
        a = ensemble_selection(preds, y, metric=metric, n_bags=None, max_iter=10)
        b = ensemble_selection(two, y, metric=metric, n_bags=None, max_iter=10)
        np.testing.assert_allclose(a.weights, b.weights)


# ----------------------------------------------------------------------------------------------
# The algorithm against the reference loop
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("metric", METRICS)
def test_matches_reference_loop(metric: str, n_classes: int) -> None:
    preds, y = make_library(12, 80, n_classes, seed=3)
    ref = reference_selection(preds, y, metric, "auto", max_iter=8, replacement=True)
    res = ensemble_selection(preds, y, metric=metric, n_bags=None, max_iter=8)
    assert res.picks.tolist() == ref["picks"]
    assert res.init_size == ref["init_size"]
    assert res.best_step == ref["best_step"]
    np.testing.assert_allclose(res.trajectory, ref["trajectory"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.weights, ref["weights"])


@pytest.mark.parametrize(
    ("metric", "n_init", "replacement"),
    [("rmse", 0, True), ("accuracy", 3, False), ("log_loss", 0, False), ("roc_auc", 2, True)],
)
def test_matches_reference_loop_options(metric: str, n_init: int, replacement: bool) -> None:
    preds, y = make_library(10, 70, seed=4)
    ref = reference_selection(preds, y, metric, n_init, max_iter=12, replacement=replacement)
    res = ensemble_selection(
        preds, y, metric=metric, n_bags=None, n_init=n_init, replacement=replacement, max_iter=12
    )
    assert res.picks.tolist() == ref["picks"]
    assert res.best_step == ref["best_step"]
    np.testing.assert_allclose(res.trajectory, ref["trajectory"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.weights, ref["weights"])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("metric", METRICS)
def test_with_replacement_never_below_best_single(metric: str, seed: int) -> None:
    preds, y = make_library(30, 150, seed=seed)
    singles = np.array([sk_score(metric, y, p) for p in preds])
    best_single = singles.max() if GREATER[metric] else singles.min()
    for n_init in ("auto", 0):
        res = ensemble_selection(preds, y, metric=metric, n_bags=None, n_init=n_init, max_iter=20)
        if GREATER[metric]:
            assert res.score >= best_single - 1e-12
        else:
            assert res.score <= best_single + 1e-12


def test_best_prefix_rule() -> None:
    # Without replacement the curve peaks and then falls as the weak models get used up.
    preds, y = make_library(15, 200, seed=5)
    res = ensemble_selection(
        preds, y, metric="rmse", n_bags=None, n_init=0, replacement=False, max_iter=15
    )
    assert len(res.trajectory) == 15 and len(set(res.picks.tolist())) == 15
    assert res.best_step == int(np.argmin(res.trajectory))
    assert res.best_step < 14  # the last (full) ensemble is not the one returned
    assert res.score == pytest.approx(res.trajectory.min())
    expected = np.zeros(15)
    expected[res.picks[: res.best_step + 1]] = 1.0 / (res.best_step + 1)
    np.testing.assert_allclose(res.weights, expected)
    # the score really is that of the weighted prefix
    assert res.score == pytest.approx(sk_score("rmse", y, res.weights @ preds))


def test_sorted_init_picks_best_n() -> None:
    preds, y = make_library(20, 150, seed=6)
    rmse = np.array([sk_score("rmse", y, p) for p in preds])
    best5 = np.argsort(rmse)[:5]
    res = ensemble_selection(preds, y, metric="rmse", n_bags=None, n_init=5, max_iter=3)
    assert res.init_size == 5
    assert sorted(res.picks[:5].tolist()) == sorted(best5.tolist())
    assert res.trajectory[0] == pytest.approx(sk_score("rmse", y, preds[best5].mean(axis=0)))
    # "auto": N chosen on the hillclimb set among 1..max_n_init
    order = np.argsort(rmse)
    scores = [sk_score("rmse", y, preds[order[:n]].mean(axis=0)) for n in range(1, 11)]
    auto = ensemble_selection(preds, y, metric="rmse", n_bags=None, max_n_init=10, max_iter=1)
    assert auto.init_size == int(np.argmin(scores)) + 1


def test_bagged_weights_sum_to_one() -> None:
    preds, y = make_library(40, 120, seed=7)
    res = ensemble_selection(
        preds, y, metric="log_loss", n_bags=7, bag_fraction=0.3, max_iter=15, random_state=0
    )
    assert res.weights.sum() == pytest.approx(1.0)
    assert np.all(res.weights >= 0)
    assert res.trajectory.shape[0] == 7 and len(res.picks) == 7
    picked = np.unique(np.concatenate(res.picks))
    assert set(np.flatnonzero(res.weights)) <= set(picked.tolist())
    for picks in res.picks:  # each bag draws from round(0.3 * 40) = 12 models
        assert len(np.unique(picks)) <= 12
    again = ensemble_selection(
        preds, y, metric="log_loss", n_bags=7, bag_fraction=0.3, max_iter=15, random_state=0
    )
    np.testing.assert_array_equal(res.weights, again.weights)


def test_without_replacement_stops_when_bag_is_used_up() -> None:
    preds, y = make_library(10, 60, seed=8)
    res = ensemble_selection(
        preds, y, n_bags=3, bag_fraction=0.5, replacement=False, n_init=0, max_iter=50
    )
    assert res.trajectory.shape == (3, 5)  # 5 models per bag, so 5 picks each
    assert res.weights.sum() == pytest.approx(1.0)


def test_autosklearn_mode_counts_over_size() -> None:
    preds, y = make_library(25, 100, seed=9)
    res = ensemble_selection(preds, y, metric="rmse", mode="autosklearn", max_iter=50)
    assert len(res.picks) == 50 and len(res.trajectory) == 50
    assert res.best_step == 49  # the last step, not the best prefix
    counts = np.bincount(res.picks, minlength=25)
    np.testing.assert_allclose(res.weights, counts / 50)
    assert res.weights.sum() == pytest.approx(1.0)


def test_autosklearn_mode_breaks_ties_at_random() -> None:
    preds, y = make_library(1, 50, seed=10)
    library = np.repeat(preds, 6, axis=0)  # six identical models
    runs = [
        ensemble_selection(library, y, mode="autosklearn", max_iter=10, random_state=s).picks
        for s in range(3)
    ]
    assert any(not np.array_equal(runs[0], r) for r in runs[1:])
    caruana = ensemble_selection(library, y, n_bags=None, n_init=0, max_iter=10)
    assert set(caruana.picks.tolist()) == {0}  # default: ties go to the lowest index


def test_callable_metric() -> None:
    preds, y = make_library(10, 80, seed=11)

    def neg_rmse(y_true: np.ndarray, p: np.ndarray) -> float:
        return -float(np.sqrt(np.mean((p - y_true) ** 2)))

    def rmse(y_true: np.ndarray, p: np.ndarray) -> float:
        return -neg_rmse(y_true, p)

    named = ensemble_selection(preds, y, metric="rmse", n_bags=None, max_iter=10)
    up = ensemble_selection(preds, y, metric=neg_rmse, n_bags=None, max_iter=10)
    down = ensemble_selection(
        preds, y, metric=rmse, greater_is_better=False, n_bags=None, max_iter=10
    )
    assert up.picks.tolist() == named.picks.tolist() == down.picks.tolist()
    np.testing.assert_allclose(down.trajectory, named.trajectory)


# ----------------------------------------------------------------------------------------------
# The estimator
# ----------------------------------------------------------------------------------------------


def test_estimator_like_sklearn() -> None:
    preds, y = make_library(15, 90, n_classes=3, seed=12)
    est = EnsembleSelection(metric="accuracy", n_bags=4, max_iter=10, random_state=1)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    copy.set_params(max_iter=5, metric="log_loss")
    assert copy.get_params()["max_iter"] == 5 and est.max_iter == 10
    with pytest.raises(NotFittedError):
        est.predict_proba(preds)
    est.fit(preds, y)
    proba = est.predict_proba(preds)
    assert proba.shape == (90, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba, np.tensordot(est.weights_, preds, axes=1))
    np.testing.assert_array_equal(est.predict(preds), proba.argmax(axis=1))
    assert est.trajectory_.shape[0] == 4 and est.best_step_.shape == (4,)
    assert est.score_ == pytest.approx(accuracy_score(y, proba.argmax(axis=1)))
    refit = clone(est).fit(preds, y)
    np.testing.assert_array_equal(refit.weights_, est.weights_)


def test_estimator_binary_predict_proba() -> None:
    preds, y = make_library(10, 60, seed=13)
    est = EnsembleSelection(n_bags=None, max_iter=5).fit(preds, y)
    proba = est.predict_proba(preds)
    assert proba.shape == (60, 2)
    np.testing.assert_allclose(proba[:, 1], est.weights_ @ preds)
    assert isinstance(est.best_step_, int) and est.trajectory_.ndim == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metric": "auc"}, "unknown metric"),
        ({"bag_fraction": 0.0}, "bag_fraction"),
        ({"bag_fraction": 1.5}, "bag_fraction"),
        ({"n_bags": 0}, "n_bags"),
        ({"max_iter": 0}, "max_iter"),
        ({"n_init": -1}, "n_init"),
        ({"n_init": "many"}, "n_init"),
        ({"n_init": 30, "n_bags": None}, "exceeds"),
        ({"n_init": 8, "bag_fraction": 0.5}, "exceeds"),
        ({"mode": "fast"}, "mode"),
        ({"metric": "rmse", "greater_is_better": True}, "contradicts"),
    ],
)
def test_bad_parameters(change: dict, message: str) -> None:
    preds, y = make_library(10, 40, seed=14)
    with pytest.raises(ValueError, match=message):
        EnsembleSelection(**change).fit(preds, y)


def test_bad_data() -> None:
    preds, y = make_library(5, 40, seed=15)
    est = EnsembleSelection(n_bags=None, max_iter=3)
    nan = preds.copy()
    nan[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(nan, y)
    with pytest.raises(ValueError, match="39 labels"):
        est.fit(preds, y[:-1])
    with pytest.raises(ValueError, match="single class"):
        est.fit(preds, np.ones(40, dtype=int))
    with pytest.raises(ValueError, match="shape"):
        est.fit(preds[0], y)
    with pytest.raises(ValueError, match="class labels"):
        est.fit(preds, y + 1)
    est.fit(preds, y)
    with pytest.raises(ValueError, match="5 models"):
        est.predict_proba(preds[:4])
    with pytest.raises(ValueError, match="classes"):
        est.predict_proba(np.stack([preds, preds, preds], axis=2))
