"""Ensemble selection from a library of stored predictions (Caruana et al. 2004, 2006).

Works on prediction arrays, never on models: ``preds`` has shape ``(n_models, n_samples)`` for
binary problems (probability of class 1) or ``(n_models, n_samples, n_classes)``, and ``y`` holds
integer labels ``0..n_classes-1`` of the hillclimb (validation) set. Never hillclimb on the test
set.

Layout: `metrics` scores prediction arrays (its conventions hold here too), `hillclimb` runs one
forward stepwise selection with running sums, and this module validates the inputs, bags the
library and averages the bags' weights (Caruana et al. 2006), behind `ensemble_selection` and the
scikit-learn style `EnsembleSelection`.

Scores within a relative ``1e-12`` of the best count as ties; ties go to the lowest model index
(the smallest ensemble for the best prefix), except in ``mode="autosklearn"``, which breaks them at
random like auto-sklearn.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from .hillclimb import Run, Scorer, hillclimb, prefix_weights
from .metrics import GREATER_IS_BETTER, METRICS, MetricLike

_MODES = ("caruana", "autosklearn")


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def _check_data(preds: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Return float64 preds (a binary 3-D input keeps its class-1 column), int labels, classes."""
    preds = np.asarray(preds)
    if preds.ndim not in (2, 3):
        raise ValueError(
            "preds must have shape (n_models, n_samples) or (n_models, n_samples, n_classes); "
            f"got {preds.ndim} dimension(s)"
        )
    if not np.issubdtype(preds.dtype, np.number) and preds.dtype != bool:
        raise ValueError(f"preds must be numeric; got dtype {preds.dtype}")
    preds = preds.astype(np.float64, copy=False)
    if preds.shape[0] < 1 or preds.shape[1] < 1:
        raise ValueError(f"preds needs at least one model and one sample; got shape {preds.shape}")
    if not np.all(np.isfinite(preds)):
        raise ValueError("preds contains NaN or infinite values")
    n_classes = 2 if preds.ndim == 2 else preds.shape[2]
    if n_classes < 2:
        raise ValueError(f"preds has {n_classes} class column; need at least 2")
    if preds.ndim == 3 and n_classes == 2:
        preds = preds[..., 1]
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D; got shape {y.shape}")
    if len(y) != preds.shape[1]:
        raise ValueError(f"y has {len(y)} labels but preds has {preds.shape[1]} samples")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinite values")
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and np.any(y != np.round(y))):
        raise ValueError(f"y must hold integer class labels 0..{n_classes - 1}")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(
            f"y must hold class labels 0..{n_classes - 1}; found values {y.min()}..{y.max()}"
        )
    present = np.unique(y)
    if len(present) < 2:
        raise ValueError(f"y contains a single class ({present[0]}); selection needs at least two")
    return preds, y, n_classes


def _check_params(
    metric: MetricLike,
    greater_is_better: bool | None,
    max_iter: int,
    replacement: bool,
    n_init: int | str,
    max_n_init: int,
    n_bags: int | None,
    bag_fraction: float,
    mode: str,
) -> float:
    """Validate the knobs; return the sign that turns the metric into higher-is-better."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}; got {mode!r}")
    if callable(metric):
        sign = 1.0 if greater_is_better in (None, True) else -1.0
    elif metric in METRICS:
        if greater_is_better is not None and greater_is_better != GREATER_IS_BETTER[metric]:
            raise ValueError(f"greater_is_better={greater_is_better} contradicts metric {metric!r}")
        sign = 1.0 if GREATER_IS_BETTER[metric] else -1.0
    else:
        raise ValueError(f"unknown metric {metric!r}; use one of {METRICS} or a callable")
    if not _is_int(max_iter) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1; got {max_iter!r}")
    if not isinstance(replacement, bool | np.bool_):
        raise ValueError(f"replacement must be True or False; got {replacement!r}")
    if not (n_init == "auto" or (_is_int(n_init) and n_init >= 0)):
        raise ValueError(f"n_init must be 'auto' or an integer >= 0; got {n_init!r}")
    if not _is_int(max_n_init) or max_n_init < 1:
        raise ValueError(f"max_n_init must be an integer >= 1; got {max_n_init!r}")
    if n_bags is not None and (not _is_int(n_bags) or n_bags < 1):
        raise ValueError(f"n_bags must be None or an integer >= 1; got {n_bags!r}")
    if not isinstance(bag_fraction, Real) or not 0.0 < bag_fraction <= 1.0:
        raise ValueError(f"bag_fraction must be in (0, 1]; got {bag_fraction!r}")
    return sign


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)

# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


@dataclass
class SelectionResult:
    """Outcome of :func:`ensemble_selection`.

    Without bagging ``trajectory`` is 1-D (the score after the sorted initialization, then after
    each pick), ``best_step``/``init_size`` are ints and ``picks`` is one index array. With bagging
    they hold one entry per bag: ``trajectory`` is (n_bags, n_states) padded with NaN, ``picks`` a
    list of arrays in library indices.
    """

    weights: np.ndarray  # (n_models,), non-negative, sums to 1
    score: float  # hillclimb score of sum_m weights[m] * preds[m]
    trajectory: np.ndarray
    best_step: int | np.ndarray
    init_size: int | np.ndarray
    picks: np.ndarray | list[np.ndarray]


def ensemble_selection(
    preds: np.ndarray,
    y: np.ndarray,
    *,
    metric: MetricLike = "rmse",
    greater_is_better: bool | None = None,
    max_iter: int = 200,
    replacement: bool = True,
    n_init: int | str = "auto",
    max_n_init: int = 25,
    n_bags: int | None = 20,
    bag_fraction: float = 0.5,
    mode: str = "caruana",
    random_state: int | np.random.Generator | None = None,
) -> SelectionResult:
    """Caruana's ensemble selection on stored hillclimb-set predictions.

    ``mode="caruana"`` (default): per bag (``n_bags`` random subsets of ``bag_fraction`` of the
    library; ``n_bags=None`` uses the whole library once), start from the ``N`` best single models
    (``n_init="auto"`` tries N = 1..``max_n_init`` on the hillclimb set; an int fixes N, 0 starts
    empty), add ``max_iter`` models greedily (with or without replacement) and keep the
    best-scoring prefix. Bag weights count/size are averaged, so the weights sum to 1.

    ``mode="autosklearn"`` mirrors auto-sklearn's ``EnsembleSelection``: empty start, no bagging,
    exactly ``max_iter`` picks with replacement, random tie-breaking, weights = counts / max_iter
    of the last step; ``replacement``, ``n_init`` and the bagging knobs are ignored.

    ``metric`` is a name from :data:`METRICS` or ``score(y, p) -> float`` with p of shape
    (n_samples,) or (n_samples, n_classes); ``greater_is_better`` (default True) orients a
    callable.
    """
    sign = _check_params(
        metric, greater_is_better, max_iter, replacement, n_init, max_n_init, n_bags,
        bag_fraction, mode,
    )  # fmt: skip
    preds, y, n_classes = _check_data(preds, y)
    # One BLAS thread: the per-step matrix-vector product is memory-bound, and on a busy
    # two-core machine a threaded gemv was measured 3-10x slower than a single thread.
    with threadpool_limits(limits=1, user_api="blas"):
        return _select(
            preds, y, n_classes, metric, sign, max_iter, replacement, n_init, max_n_init,
            n_bags, bag_fraction, mode, np.random.default_rng(random_state),
        )  # fmt: skip


def _select(
    preds: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    metric: MetricLike,
    sign: float,
    max_iter: int,
    replacement: bool,
    n_init: int | str,
    max_n_init: int,
    n_bags: int | None,
    bag_fraction: float,
    mode: str,
    rng: np.random.Generator,
) -> SelectionResult:
    """Body of :func:`ensemble_selection` after validation."""
    n_models = preds.shape[0]

    if mode == "autosklearn":
        scorer = Scorer(preds, y, n_classes, metric, sign)
        run = hillclimb(scorer, 0, 1, max_iter, True, last_step=True, tie_rng=rng)
        weights = prefix_weights(run, n_models)
        return SelectionResult(
            weights, _weighted_score(scorer, weights), run.trajectory, run.best_step, 0, run.picks
        )

    if n_bags is None:
        if n_init != "auto" and n_init > n_models:
            raise ValueError(f"n_init={n_init} exceeds the library size ({n_models})")
        scorer = Scorer(preds, y, n_classes, metric, sign)
        run = hillclimb(scorer, n_init, max_n_init, max_iter, replacement, False, None)
        weights = prefix_weights(run, n_models)
        return SelectionResult(
            weights,
            _weighted_score(scorer, weights),
            run.trajectory,
            run.best_step,
            run.init_size,
            run.picks,
        )

    bag_size = max(1, int(round(bag_fraction * n_models)))
    if n_init != "auto" and n_init > bag_size:
        raise ValueError(f"n_init={n_init} exceeds the models per bag ({bag_size})")
    weights = np.zeros(n_models)
    runs: list[Run] = []
    bag_members: list[np.ndarray] = []
    for _ in range(n_bags):
        members = np.sort(rng.choice(n_models, size=bag_size, replace=False))
        scorer = Scorer(preds[members], y, n_classes, metric, sign)
        run = hillclimb(scorer, n_init, max_n_init, max_iter, replacement, False, None)
        weights[members] += prefix_weights(run, bag_size) / n_bags
        runs.append(run)
        bag_members.append(members)
    n_states = max(len(run.trajectory) for run in runs)
    trajectory = np.full((n_bags, n_states), np.nan)
    for b, run in enumerate(runs):
        trajectory[b, : len(run.trajectory)] = run.trajectory
    full_scorer = Scorer(preds, y, n_classes, metric, sign)
    return SelectionResult(
        weights,
        _weighted_score(full_scorer, weights),
        trajectory,
        np.array([run.best_step for run in runs]),
        np.array([run.init_size for run in runs]),
        [members[run.picks] for members, run in zip(bag_members, runs, strict=True)],
    )


def _weighted_score(scorer: Scorer, weights: np.ndarray) -> float:
    return scorer.score(np.tensordot(weights, scorer.preds, axes=1))


class EnsembleSelection(BaseEstimator):
    """Scikit-learn style wrapper of :func:`ensemble_selection` for stored prediction arrays.

    ``fit(preds, y)`` selects on hillclimb predictions; ``predict_proba(preds)`` combines any
    prediction array of the same library (e.g. on new data) with ``weights_``. Parameters are
    those of :func:`ensemble_selection` and are validated in ``fit``.

    Fitted attributes: ``weights_``, ``score_`` (hillclimb score of the weighted ensemble),
    ``trajectory_``, ``best_step_``, ``init_size_``, ``picks_`` (see :class:`SelectionResult`),
    ``n_models_``, ``n_classes_``, ``classes_``.
    """

    def __init__(
        self,
        metric: MetricLike = "rmse",
        greater_is_better: bool | None = None,
        max_iter: int = 200,
        replacement: bool = True,
        n_init: int | str = "auto",
        max_n_init: int = 25,
        n_bags: int | None = 20,
        bag_fraction: float = 0.5,
        mode: str = "caruana",
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.max_iter = max_iter
        self.replacement = replacement
        self.n_init = n_init
        self.max_n_init = max_n_init
        self.n_bags = n_bags
        self.bag_fraction = bag_fraction
        self.mode = mode
        self.random_state = random_state

    def fit(self, preds: np.ndarray, y: np.ndarray) -> EnsembleSelection:
        result = ensemble_selection(preds, y, **self.get_params())
        preds = np.asarray(preds)
        self.n_models_ = preds.shape[0]
        self.n_classes_ = 2 if preds.ndim == 2 else preds.shape[2]
        self.classes_ = np.arange(self.n_classes_)
        self.weights_ = result.weights
        self.score_ = result.score
        self.trajectory_ = result.trajectory
        self.best_step_ = result.best_step
        self.init_size_ = result.init_size
        self.picks_ = result.picks
        return self

    def predict_proba(self, preds: np.ndarray) -> np.ndarray:
        """Weighted average of the library's predictions, shape (n_samples, n_classes)."""
        check_is_fitted(self)
        preds = np.asarray(preds, dtype=np.float64)
        if preds.ndim not in (2, 3) or preds.shape[0] != self.n_models_:
            raise ValueError(
                f"preds must have {self.n_models_} models first; got shape {preds.shape}"
            )
        n_classes = 2 if preds.ndim == 2 else preds.shape[2]
        if n_classes != self.n_classes_:
            raise ValueError(f"preds has {n_classes} classes; fitted with {self.n_classes_}")
        if not np.all(np.isfinite(preds)):
            raise ValueError("preds contains NaN or infinite values")
        combined = np.tensordot(self.weights_, preds, axes=1)
        if combined.ndim == 1:
            return np.column_stack([1.0 - combined, combined])
        return combined

    def predict(self, preds: np.ndarray) -> np.ndarray:
        """Class labels: class 1 when its probability exceeds 0.5, else the arg-max."""
        proba = self.predict_proba(preds)
        if self.n_classes_ == 2:
            return (proba[:, 1] > 0.5).astype(np.int64)
        return proba.argmax(axis=1)
