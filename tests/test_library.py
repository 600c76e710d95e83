"""The model library: grids, parallel fitting, cached predictions, the deployable ensemble."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier

from kdistill.tabular.encoding import TabularEncoder
from kdistill.tabular.library import ModelLibrary, WeightedEnsemble, model_grid, model_size_bytes
from kdistill.tabular.selection import EnsembleSelection


def problem(n: int = 160, seed: int = 0, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    score = X[:, 0] + 0.5 * X[:, 1] ** 2 + 0.3 * rng.standard_normal(n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    return X, y


FEW = [("logreg", LogisticRegression(max_iter=500)), ("knn", KNeighborsClassifier(7)),
       ("tree", DecisionTreeClassifier(max_depth=3, random_state=0)), ("nb", GaussianNB())]


def test_grids_are_large_diverse_and_distinct() -> None:
    default = model_grid("default")
    names = [n for n, _ in default]
    assert len(default) >= 250 and len(set(names)) == len(names)
    families = {n.split("-")[0] for n in names}
    assert {"logreg", "svm", "knn", "dt", "bag", "rf", "et", "gbt", "ada", "mlp"} <= families
    platt = [est for n, est in default if n.startswith("svm-rbf")]
    assert platt and all(est.probability for est in platt)
    assert 30 <= len(model_grid("small")) <= 60
    with pytest.raises(ValueError, match="preset"):
        model_grid("huge")


def test_predictions_equal_each_model_fitted_alone() -> None:
    X, y = problem(classes=3)
    lib = ModelLibrary(models=FEW, n_jobs=1).fit(X, y)
    assert lib.names_ == ["logreg", "knn", "tree", "nb"] and lib.failed_ == {}
    preds = lib.predict_all(X[:30])
    assert preds.shape == (4, 30, 3)
    for (_, est), p in zip(FEW, preds):
        np.testing.assert_allclose(p, clone(est).fit(X, y).predict_proba(X[:30]))
    np.testing.assert_allclose(lib.predict_proba(X[:30]), preds.mean(axis=0))
    assert lib.predict_all(X[:30]) is preds  # cached, not recomputed


def test_parallel_fit_gives_the_same_library() -> None:
    X, y = problem()
    one = ModelLibrary(models=FEW, n_jobs=1).fit(X, y).predict_all(X)
    two = ModelLibrary(models=FEW, n_jobs=2).fit(X, y).predict_all(X)
    np.testing.assert_allclose(one, two)


def test_disk_cache_is_reused(tmp_path) -> None:
    X, y = problem()
    lib = ModelLibrary(models=FEW, n_jobs=1, cache_dir=tmp_path).fit(X, y)
    first = lib.predict_all(X)
    files = list(tmp_path.glob("preds-*.npy"))
    assert len(files) == 1
    again = ModelLibrary(models=FEW, n_jobs=1, cache_dir=tmp_path).fit(X, y)
    np.testing.assert_array_equal(again.predict_all(X), first)
    assert len(list(tmp_path.glob("preds-*.npy"))) == 1


def test_failed_model_is_reported_and_left_out() -> None:
    X, y = problem()
    lib = ModelLibrary(models=[*FEW, ("broken", LogisticRegression(C=-1.0))], n_jobs=1)
    lib.fit(X, y)
    assert "broken" in lib.failed_ and "broken" not in lib.names_


def test_sklearn_conventions_and_validation() -> None:
    lib = ModelLibrary(preset="tiny", n_jobs=1, random_state=3)
    assert clone(lib).get_params()["random_state"] == 3
    assert lib.set_params(preset="small").preset == "small"
    X, y = problem()
    with pytest.raises(ValueError, match="NaN"):
        ModelLibrary("tiny", n_jobs=1).fit(np.where(X > 2, np.nan, X), y)
    with pytest.raises(ValueError, match="one class"):
        ModelLibrary("tiny", n_jobs=1).fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="n_jobs"):
        ModelLibrary("tiny", n_jobs=0).fit(X, y)
    with pytest.raises(ValueError, match="preset"):
        ModelLibrary("nope", n_jobs=1).fit(X, y)
    fitted = ModelLibrary("tiny", n_jobs=1).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but ModelLibrary is expecting 4"):
        fitted.predict_all(X[:, :3])


def test_weighted_ensemble_is_the_selected_average() -> None:
    X, y = problem(n=200)
    enc = TabularEncoder().fit(X[:120])
    lib = ModelLibrary("tiny", n_jobs=1).fit(enc.transform(X[:120]), y[:120])
    hill = lib.predict_all(enc.transform(X[120:]))
    sel = EnsembleSelection(n_bags=4, random_state=0).fit(hill, y[120:])
    ens = WeightedEnsemble.from_selection(lib, sel.weights_, enc)
    assert len(ens.models) == np.count_nonzero(sel.weights_)
    np.testing.assert_allclose(ens.predict_proba(X[120:]), sel.predict_proba(hill))
    assert ens.size_bytes() > model_size_bytes(ens.models[0])
    # a fitted ensemble passed as a parameter survives clone (deep-copied, not reset)
    copied = clone(ens, safe=False)
    assert copied is not ens
    np.testing.assert_allclose(copied.predict_proba(X[:5]), ens.predict_proba(X[:5]))
    with pytest.raises(ValueError, match="sum to 1"):
        WeightedEnsemble(enc, ["a"], [lib.estimators_[0]], np.array([0.5]), lib.classes_)
