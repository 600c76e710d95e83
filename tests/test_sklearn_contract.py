"""The scikit-learn estimator contract, checked by scikit-learn itself (issue 14, part 5).

`parametrize_with_checks` runs scikit-learn's own battery on every tabular estimator. The only
expected failures are where the API differs by design, each with its reason; everything else
must pass. The bugs the battery found (predict before fit, a continuous target, extra or
too few columns, sparse and complex input, a cloned mimic whose teacher came back unfitted)
are also pinned by plain tests below, so that a regression names itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn
from scipy import sparse
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.tree import DecisionTreeClassifier

from kdistill.tabular.encoding import TabularEncoder
from kdistill.tabular.library import ModelLibrary
from kdistill.tabular.mimic import MimicClassifier
from kdistill.tabular.munge import Munge
from kdistill.tabular.random_marginals import RandomMarginals

if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 6):
    pytest.skip("expected_failed_checks needs scikit-learn >= 1.6", allow_module_level=True)

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

# Small and quick: the battery fits each estimator a few dozen times.
NET = dict(hidden=(16,), epochs=20, batch_size=64, lr=1e-2)

OBJECT_COLUMNS = ("an object column is nominal by design (one-hot over its distinct values); "
                  "the check's columns of distinct floats exceed max_categories and are "
                  "refused as identifier-like columns, with a message naming the column")
DESIGN = {
    "TabularEncoder": {
        "check_dtype_object": OBJECT_COLUMNS,
        "check_transformer_preserve_dtypes": "the output is float32 whatever the input: it "
                                             "is what the networks take",
    },
    "MimicClassifier": {"check_dtype_object": OBJECT_COLUMNS},
    "Munge": {"check_dtype_object": "a non-numeric value in a column not listed as nominal is "
                                    "a ValueError naming the column (kdistill's rule for bad "
                                    "input, which the CLI prints as one line), not numpy's "
                                    "TypeError"},
}


def expected_failures(estimator) -> dict[str, str]:
    return DESIGN.get(type(estimator).__name__, {})


ESTIMATORS = [
    TabularEncoder(),
    MimicClassifier(pseudo="none", **NET),  # the hard-label net (the "ANN" baseline)
    # a teacher-mode mimic: the unfitted teacher is fitted (a copy) on fit's X, y
    MimicClassifier(teacher=LogisticRegression(), pseudo="munge", k=1, **NET),
    ModelLibrary(models=[("logreg", LogisticRegression()),
                         ("tree", DecisionTreeClassifier(max_depth=3))], n_jobs=1),
    Munge(k=1),
    RandomMarginals(k=1),
]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)


def blobs(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)


def test_the_bugs_the_battery_found_stay_fixed() -> None:
    X, y = blobs()
    with pytest.raises(NotFittedError):
        MimicClassifier(pseudo="none").predict(X)
    with pytest.raises(NotFittedError):
        ModelLibrary().predict(X)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        MimicClassifier(pseudo="none", **NET).fit(X, np.random.default_rng(0).random(len(X)))
    with pytest.raises(ValueError, match="Complex data not supported"):
        MimicClassifier(pseudo="none", **NET).fit(X + 1j, y)
    for est in (MimicClassifier(pseudo="none", **NET), TabularEncoder(), Munge(),
                RandomMarginals()):
        with pytest.raises(ValueError, match="sparse input"):
            est.fit(sparse.csr_matrix(X), y)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    mimic = MimicClassifier(pseudo="none", **NET).fit(frame, y)
    with pytest.raises(ValueError, match="column 'extra', not seen in fit"):
        mimic.predict_proba(frame.assign(extra=1.0))
    with pytest.raises(ValueError, match="X has 2 features, but TabularEncoder is expecting 3"):
        mimic.predict_proba(X[:, :2])
    # an array with the fitted columns in fit order is the same rows as the frame
    np.testing.assert_array_equal(mimic.predict_proba(X), mimic.predict_proba(frame))


def test_a_cloned_mimic_with_a_fitted_teacher_is_fittable() -> None:
    X, y = blobs(160)
    mimic = MimicClassifier(teacher=LogisticRegression().fit(X, y), k=2, **NET)
    assert not hasattr(clone(mimic).teacher, "coef_")  # clone unfits the teacher ...
    scores = cross_val_score(mimic, X, y, cv=3)  # ... and each fold fits a copy on its rows
    assert scores.shape == (3,) and scores.min() > 0.8
    search = GridSearchCV(mimic, {"hidden": [(4,), (16,)]}, cv=2).fit(X, y)
    assert search.best_params_["hidden"] in [(4,), (16,)]
    assert hasattr(search.best_estimator_.teacher_, "coef_")
    assert not hasattr(search.best_estimator_.teacher, "coef_")  # the parameter is untouched
    with pytest.raises(ValueError, match="requires y to be passed.*FrozenEstimator"):
        clone(mimic).fit(X)
