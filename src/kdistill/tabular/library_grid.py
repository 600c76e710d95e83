"""The model grids of the library (:mod:`kdistill.tabular.library`): unfitted scikit-learn
classifiers over hyperparameter grids, for ensemble selection (Caruana et al. 2004).

:func:`model_grid` builds the list: logistic regression, linear and kernel SVMs with Platt
scaling, k-NN (uniform and distance-weighted, two metrics), decision trees, bagged trees, random
forests, extra trees, gradient-boosted trees and stumps, AdaBoost, MLPs and naive Bayes.
Presets: ``"default"`` (about 250 models), ``"small"`` (about 50, for quick runs) and ``"tiny"``
(a handful, for tests).
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import BernoulliNB, GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier

__all__ = ["PRESETS", "Entry", "model_grid"]

PRESETS: tuple[str, ...] = ("default", "small", "tiny")

Entry = tuple[str, BaseEstimator]


def _svm_entries(seed: int, cs: list[float], gammas: list[float], degrees: list[int],
                 linear_cs: list[float]) -> list[Entry]:
    out: list[Entry] = []
    for c in linear_cs:
        # LinearSVC has no probabilities: Platt scaling (sigmoid) on 3 internal folds.
        svm = LinearSVC(C=c, dual="auto", max_iter=5000, random_state=seed)
        out.append((f"svm-linear-C{c:g}",
                    CalibratedClassifierCV(svm, method="sigmoid", cv=3)))
    for c in cs:
        for g in gammas:
            out.append((f"svm-rbf-C{c:g}-g{g:g}",
                        SVC(C=c, kernel="rbf", gamma=g, probability=True, random_state=seed)))
        for d in degrees:
            out.append((f"svm-poly{d}-C{c:g}",
                        SVC(C=c, kernel="poly", degree=d, gamma="scale", probability=True,
                            random_state=seed)))
    return out


def _knn_entries(ks: list[int], metrics: list[str]) -> list[Entry]:
    return [(f"knn-{m}-k{k}-{w}", KNeighborsClassifier(n_neighbors=k, weights=w, metric=m))
            for m in metrics for k in ks for w in ("uniform", "distance")]


def _tree_entries(seed: int, depths: list[int | None], leaves: list[int]) -> list[Entry]:
    return [(f"dt-{c}-d{d}-l{leaf}",
             DecisionTreeClassifier(criterion=c, max_depth=d, min_samples_leaf=leaf,
                                    random_state=seed))
            for c in ("gini", "entropy") for d in depths for leaf in leaves]


def _forest_entries(seed: int, n_trees: int, features: list[Any], leaves: list[int]
                    ) -> list[Entry]:
    out: list[Entry] = []
    for cls, tag in ((RandomForestClassifier, "rf"), (ExtraTreesClassifier, "et")):
        for f in features:
            for leaf in leaves:
                out.append((f"{tag}-f{f}-l{leaf}",
                            cls(n_estimators=n_trees, max_features=f, min_samples_leaf=leaf,
                                n_jobs=1, random_state=seed)))
    return out


def _bagged_entries(seed: int, n_bags: int, depths: list[int | None]) -> list[Entry]:
    return [(f"bag-dt-{c}-d{d}",
             BaggingClassifier(DecisionTreeClassifier(criterion=c, max_depth=d),
                               n_estimators=n_bags, n_jobs=1, random_state=seed))
            for c in ("gini", "entropy") for d in depths]


def _boost_entries(seed: int, iters: list[int], rates: list[float], depths: list[int | None],
                   stumps: list[int]) -> list[Entry]:
    out: list[Entry] = [
        (f"gbt-n{n}-lr{r:g}-d{d}",
         HistGradientBoostingClassifier(max_iter=n, learning_rate=r, max_depth=d,
                                        early_stopping=False, random_state=seed))
        for n in iters for r in rates for d in depths
    ]
    out += [(f"ada-stumps-n{n}",
             AdaBoostClassifier(DecisionTreeClassifier(max_depth=1), n_estimators=n,
                                random_state=seed))
            for n in stumps]
    return out


def _mlp_entries(seed: int, hidden: list[int], alphas: list[float], iters: list[int]
                 ) -> list[Entry]:
    return [(f"mlp-h{h}-a{a:g}-i{i}",
             MLPClassifier(hidden_layer_sizes=(h,), alpha=a, max_iter=i, learning_rate_init=1e-3,
                           random_state=seed))
            for h in hidden for a in alphas for i in iters]


def _logistic_entries(seed: int, cs: list[float]) -> list[Entry]:
    return [(f"logreg-C{c:g}", LogisticRegression(C=c, max_iter=2000, random_state=seed))
            for c in cs]


def model_grid(preset: str = "default", random_state: int = 0) -> list[Entry]:
    """``(name, unfitted estimator)`` pairs over hyperparameter grids, all names distinct.

    Inputs are assumed standardized (see :class:`kdistill.tabular.TabularEncoder`), so the RBF
    widths are absolute.
    """
    seed = int(random_state)
    if preset == "default":
        entries = (
            _logistic_entries(seed, [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3])
            + _svm_entries(seed, [0.1, 1.0, 10.0, 100.0], [0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
                           [2, 3], [1e-3, 1e-2, 1e-1, 1.0, 10.0])
            + _knn_entries([1, 3, 5, 7, 9, 11, 15, 21, 25, 31, 41, 51, 75, 101, 151, 201],
                           ["euclidean", "manhattan"])
            + _tree_entries(seed, [None, 2, 3, 4, 6, 8, 12, 16], [1, 2, 5, 10, 25])
            + _bagged_entries(seed, 25, [None, 4, 8, 12])
            + _forest_entries(seed, 200, ["sqrt", "log2", 0.3, 0.6, 1.0], [1, 3, 10])
            + _boost_entries(seed, [16, 64, 256, 1024], [0.03, 0.1, 0.3], [2, 4, None],
                             [8, 32, 128, 512])
            + _mlp_entries(seed, [1, 2, 4, 8, 32, 128], [1e-4, 1e-2], [50, 200])
            + [("gaussian-nb", GaussianNB()), ("bernoulli-nb", BernoulliNB())]
        )
    elif preset == "small":
        entries = (
            _logistic_entries(seed, [1e-2, 1.0, 100.0])
            + _svm_entries(seed, [1.0, 10.0], [0.03, 0.3], [], [0.1])
            + _knn_entries([1, 5, 15, 51], ["euclidean"])
            + _tree_entries(seed, [None, 4, 8], [1, 10])[:6]
            + _bagged_entries(seed, 25, [None])
            + _forest_entries(seed, 200, ["sqrt", 0.5], [1, 5])
            + _boost_entries(seed, [64, 256], [0.1], [3, None], [128])
            + _mlp_entries(seed, [8, 64], [1e-4], [100, 300])
            + [("gaussian-nb", GaussianNB())]
        )
    elif preset == "tiny":
        entries = [
            ("logreg-C1", LogisticRegression(C=1.0, max_iter=1000, random_state=seed)),
            ("knn-k5", KNeighborsClassifier(n_neighbors=5)),
            ("knn-k15-distance", KNeighborsClassifier(n_neighbors=15, weights="distance")),
            ("dt-d3", DecisionTreeClassifier(max_depth=3, random_state=seed)),
            ("dt-full", DecisionTreeClassifier(random_state=seed)),
            ("rf-20", RandomForestClassifier(n_estimators=20, n_jobs=1, random_state=seed)),
            ("gaussian-nb", GaussianNB()),
        ]
    else:
        raise ValueError(f"preset must be one of {PRESETS}; got {preset!r}")
    names = [name for name, _ in entries]
    assert len(set(names)) == len(names), "model names must be distinct"
    return entries
