"""A diverse library of scikit-learn classifiers for ensemble selection (Caruana et al. 2004).

Caruana's library held about 2,000 models of many families, each over a grid of settings, and
let every model in "whatever its quality" (SPEC §6.1): selection, not the library, decides.
:func:`model_grid` (in :mod:`.library_grid`, importable from here) builds such a list from
scikit-learn; presets :data:`PRESETS`.

:class:`ModelLibrary` fits them all in parallel with joblib and caches each input's predictions
(``(n_models, n_samples, n_classes)`` probabilities) in memory, and on disk with ``cache_dir``,
keyed by a fingerprint of the input, so the hillclimb set and new data are predicted once.
:class:`WeightedEnsemble` is the deployable result: the encoder, the models with non-zero
selection weight and their weights.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
import warnings
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..files import atomic_write
from .inputs import check_table
from .library_grid import PRESETS, Entry, model_grid
from .progress import Progress

_log = logging.getLogger(__name__)

__all__ = ["PRESETS", "model_grid", "ModelLibrary", "WeightedEnsemble", "model_size_bytes"]


def model_size_bytes(model: Any) -> int:
    """Bytes of the pickled model: what storing or shipping it costs."""
    return len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))


def _fit_one(name: str, estimator: BaseEstimator, X: np.ndarray, y: np.ndarray
             ) -> tuple[str, BaseEstimator | None, float, str]:
    """Fit a clone; a model that fails is reported, not fatal (the library keeps the rest)."""
    model = clone(estimator)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings from short MLP/LR runs
            model.fit(X, y)
    except Exception as exc:  # noqa: BLE001 - any family may fail on odd data
        return name, None, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    return name, model, time.perf_counter() - start, ""


def _proba_one(model: Any, X: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(n_samples, n_classes) probabilities in the library's class order."""
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    if len(model.classes_) == len(classes):
        return proba
    out = np.zeros((len(X), len(classes)))  # a model that never saw a class gives it 0
    out[:, np.searchsorted(classes, model.classes_)] = proba
    return out


def _fingerprint(X: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str((X.shape, X.dtype.str)).encode())
    h.update(np.ascontiguousarray(X).tobytes())
    return h.hexdigest()[:24]


class ModelLibrary(ClassifierMixin, BaseEstimator):
    """Fit a grid of scikit-learn classifiers on encoded (numeric) inputs; predict them all.

    Parameters: ``preset`` (see :data:`PRESETS`) or an explicit ``models`` list of
    ``(name, estimator)`` pairs; ``n_jobs`` joblib workers; ``random_state`` seeds the grid's
    estimators; ``cache_dir`` keeps predictions on disk across runs (an in-memory cache is
    always on). Fitted attributes: ``names_``, ``estimators_``, ``fit_seconds_``, ``failed_``
    (name -> error of models that could not be fitted), ``classes_``, ``n_features_in_``.
    ``fit`` logs its progress ("model i of n, elapsed") to this module's logger at INFO.
    """

    def __init__(self, preset: str = "default", models: list[Entry] | None = None,
                 n_jobs: int = 2, random_state: int | None = 0,
                 cache_dir: str | os.PathLike | None = None) -> None:
        self.preset = preset
        self.models = models
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.cache_dir = cache_dir

    def _entries(self) -> list[Entry]:
        if self.models is not None:
            entries = list(self.models)
            if not entries:
                raise ValueError("models is an empty list")
            names = [n for n, _ in entries]
            if len(set(names)) != len(names):
                raise ValueError("model names must be distinct")
            return entries
        seed = 0 if self.random_state is None else self.random_state
        if not isinstance(seed, Integral):
            raise ValueError(f"random_state must be an int or None; got {seed!r}")
        return model_grid(self.preset, int(seed))

    def fit(self, X: Any, y: Any) -> ModelLibrary:
        if not isinstance(self.n_jobs, Integral) or self.n_jobs == 0:
            raise ValueError(f"n_jobs must be a non-zero integer; got {self.n_jobs!r}")
        X, y = _check_xy(X, y)
        entries = self._entries()
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"y contains one class ({self.classes_[0]}); need at least 2")
        progress, results = Progress(_log.info, "library: model", len(entries)), []
        for result in Parallel(n_jobs=self.n_jobs, return_as="generator")(
                delayed(_fit_one)(name, est, X, y) for name, est in entries):
            results.append(result)  # in order; progress as they come, at INFO
            progress(len(results), result[0] + ("" if result[1] is not None else ", failed"))
        self.names_ = [name for name, model, _, _ in results if model is not None]
        self.estimators_ = [model for _, model, _, _ in results if model is not None]
        self.fit_seconds_ = {name: seconds for name, _, seconds, _ in results}
        self.failed_ = {name: err for name, model, _, err in results if model is None}
        if not self.estimators_:
            first = next(iter(self.failed_.items()))
            raise ValueError(f"every library model failed to fit; first: {first[0]}: {first[1]}")
        self.n_features_in_ = X.shape[1]
        self._cache: dict[str, np.ndarray] = {}
        return self

    def predict_all(self, X: Any) -> np.ndarray:
        """Probabilities of every model, ``(n_models, n_samples, n_classes)``, cached per input."""
        check_is_fitted(self, "estimators_")
        X = _check_x(X, self.n_features_in_)
        key = _fingerprint(X)
        if key in self._cache:
            return self._cache[key]
        path = None
        if self.cache_dir is not None:
            path = Path(self.cache_dir) / f"preds-{key}-{self._library_key()}.npy"
            if path.is_file():
                preds = np.load(path)
                self._cache[key] = preds
                return preds
        # threads: predict_proba of trees, k-NN and BLAS release the GIL, and no model is copied
        parts = Parallel(n_jobs=self.n_jobs, prefer="threads")(
            delayed(_proba_one)(model, X, self.classes_) for model in self.estimators_)
        preds = np.stack(parts)
        if path is not None:
            atomic_write(path, lambda tmp: _save_npy(tmp, preds))
        self._cache[key] = preds
        return preds

    def _library_key(self) -> str:
        """Changes whenever the fitted library could predict differently."""
        text = repr((self.names_, [m.get_params() for m in self.estimators_],
                     self.classes_.tolist(), self.n_features_in_, self.random_state))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Plain average of all models (the AVG_ALL baseline)."""
        return self.predict_all(X).mean(axis=0)

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append ".npy" to a name
        np.save(fh, array)


def _check_x(X: Any, n_features: int | None = None) -> np.ndarray:
    X = check_table(X, "ModelLibrary")
    try:
        X = np.asarray(X, dtype=np.float64)
    except ValueError:  # text; other objects raise numpy's TypeError
        raise ValueError("X must be numeric: encode it first (TabularEncoder)") from None
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but ModelLibrary is expecting "
                         f"{n_features} features as input")
    return X


def _check_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X = _check_x(X)
    if y is None:
        raise ValueError("ModelLibrary requires y to be passed, but the target y is None")
    y = column_or_1d(y, warn=True)  # a column vector is raveled with a warning, as in sklearn
    if len(y) != len(X):
        raise ValueError(f"y must be 1-D with {len(X)} labels; got {len(y)}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinite values")
    check_classification_targets(y)  # a continuous target is not a set of classes
    return X, y


class WeightedEnsemble:
    """The deployable ensemble: an encoder, the selected models and their weights.

    ``predict_proba(X)`` encodes raw rows (a DataFrame or array, as the encoder expects) and
    returns ``sum_m w_m P_m(x)``. Not a scikit-learn estimator on purpose: it is built already
    fitted, and ``sklearn.base.clone`` deep-copies it rather than resetting it.
    """

    def __init__(self, encoder: Any, names: list[str], models: list[Any], weights: np.ndarray,
                 classes: np.ndarray) -> None:
        weights = np.asarray(weights, dtype=np.float64)
        if len(names) != len(models) or len(models) != len(weights) or not len(models):
            raise ValueError("names, models and weights must be non-empty and of equal length")
        if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0):
            raise ValueError("weights must be non-negative and sum to 1")
        self.encoder = encoder
        self.names = list(names)
        self.models = list(models)
        self.weights = weights
        self.classes_ = np.asarray(classes)

    @classmethod
    def from_selection(cls, library: ModelLibrary, weights: np.ndarray, encoder: Any = None
                       ) -> WeightedEnsemble:
        """Keep the library models with non-zero weight."""
        keep = np.flatnonzero(np.asarray(weights) > 0)
        return cls(encoder, [library.names_[i] for i in keep],
                   [library.estimators_[i] for i in keep], np.asarray(weights)[keep],
                   library.classes_)

    def predict_proba(self, X: Any) -> np.ndarray:
        Z = self.encoder.transform(X) if self.encoder is not None else X
        Z = np.asarray(Z, dtype=np.float64)
        total = np.zeros((len(Z), len(self.classes_)))
        for w, model in zip(self.weights, self.models):
            total += w * _proba_one(model, Z, self.classes_)
        return total

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def size_bytes(self) -> int:
        return model_size_bytes(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Pickle (joblib) atomically; load with ``joblib.load`` from a trusted source only."""
        import joblib

        return atomic_write(path, lambda tmp: joblib.dump(self, tmp))
