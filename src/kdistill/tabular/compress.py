"""Model compression (Bucila, Caruana & Niculescu-Mizil 2006) on one split: the pipeline.

:func:`compress_split`, per problem (SPEC §6-§7):
  1. a library of scikit-learn models (:mod:`kdistill.tabular.library`) on the training rows;
  2. ensemble selection (:mod:`kdistill.tabular.selection`) on the hillclimb rows, optimizing
     ``cfg.metric`` (RMSE, the paper's, by default; accuracy, log-loss or ROC AUC), with sorted
     initialization, replacement, bagging and the best prefix; the best single model is also
     chosen on the hillclimb rows, and a warning logged when it beats the ensemble there;
  3. the "ANN" baseline: the best net trained on the training rows' hard labels, architecture
     and epochs chosen on the hillclimb rows (by ``cfg.metric``, as every choice below);
  4. MUNGE pseudo-data plus the training rows, labelled once by the ensemble; on it, one mimic
     net per candidate architecture. Two are kept, both chosen on the hillclimb rows:
     ``mimic_munge``, the best of all, and ``mimic_small``, the best of those whose export is at
     most ``1 / size_budget`` of the ensemble's size (the deployment constraint: "1000x
     smaller"). ``mimic_random`` is mimic_munge's architecture on RANDOM pseudo-data;
  5. test RMSE, accuracy, AUC and log-loss of all of them, model sizes in bytes and the time
     to predict 10,000 rows on one thread; the gain captured, shown only where the ensemble's
     gain over the ANN is beyond the test rows' noise (:mod:`kdistill.tabular.gain`).

The test rows choose nothing. Long steps log their progress (model i of n, elapsed). This is
library code a notebook can call; the reproduction over the paper's problems is
:mod:`kdistill.experiments.model_compression`, a CSV file is
:mod:`kdistill.tabular.compress_csv`. Torch comes in only through :mod:`.mimic` (the nets are
in :mod:`.compress_nets`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from ..distill.models import check_model_size
from ..reporting import save_figure
from .compress_nets import aligned, export_size, fit_ann, fit_mimics
from .compress_report import arch_label, plot_trajectory
from .encoding import NUMERIC, TabularEncoder
from .gain import better, bootstrap_gain, check_metric, gain_captured, gain_verdict
from .library import ModelLibrary, WeightedEnsemble, model_size_bytes
from .metrics import metric_score
from .mimic import MimicClassifier
from .selection import EnsembleSelection

__all__ = ["CompressionConfig", "compress_split", "gain_captured", "time_predict",
           "plot_trajectory", "METHODS", "MIMICS", "BASELINES", "ARCHITECTURES", "SCORE_KEYS",
           "arch_label"]

_log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("single", "ensemble", "ann", "mimic_munge", "mimic_small",
                            "mimic_random")
MIMICS: tuple[str, ...] = ("mimic_munge", "mimic_small", "mimic_random")
BASELINES: tuple[str, ...] = ("ann", "mimic_random")  # what skip_baselines leaves out
# Candidate architectures for the mimic and the ANN: the paper's one layer of up to 256 units,
# and two layers, which on our problems imitate the ensemble much more closely.
ARCHITECTURES: tuple[tuple[int, ...], ...] = ((32,), (128,), (256,), (32, 32), (64, 64),
                                              (128, 128), (256, 256))


@dataclass
class CompressionConfig:
    """Every knob of the pipeline; the defaults are the committed reproduction's."""

    preset: str = "default"            # library preset (kdistill.library.PRESETS)
    n_jobs: int = 2
    selection_bags: int = 20           # Caruana's 20 bags of half the library
    selection_bag_fraction: float = 0.5
    selection_max_iter: int = 200
    munge_k: int = 25                  # 4k real + 96k MUNGE rows, as in the paper's Fig. 3
    munge_p: float = 0.5
    munge_s: float = 10.0
    munge_algorithm: str = "sequential"
    mimic_hidden: tuple[tuple[int, ...], ...] = ARCHITECTURES  # candidates, chosen on hillclimb
    epochs: int = 60
    batch_size: int = 512
    lr: float = 2e-3
    size_budget: float = 1000.0        # mimic_small: at most ensemble bytes / size_budget
    budget_fitted: bool = True         # mimic_small also from the widest nets within budget,
    small_epochs: int = 180            # trained this long (small nets need longer schedules)
    numeric: str = "standard"          # numeric inputs of the nets (ANN, mimics): "robust", "auto"
    ann_hidden: tuple[tuple[int, ...], ...] = ARCHITECTURES
    ann_epochs: tuple[int, ...] = (40, 160)
    timing_rows: int = 10000
    seed: int = 0
    metric: str = "rmse"               # selection and every choice on the hillclimb rows

    def validate(self) -> None:
        """Raise ValueError on a bad setting; normalizes ``metric`` ('log-loss' -> 'log_loss')."""
        self.metric = check_metric(self.metric)
        if self.numeric not in NUMERIC:
            raise ValueError(f"numeric must be one of {NUMERIC}, got {self.numeric!r}")
        for name in ("n_jobs", "selection_bags", "selection_max_iter", "munge_k",
                     "epochs", "small_epochs", "batch_size", "timing_rows"):
            if not 1 <= getattr(self, name) <= 2 ** 31 - 1:
                raise ValueError(f"{name} must be an integer in [1, {2 ** 31 - 1}], got "
                                 f"{getattr(self, name)}")
        if not 0 <= self.seed <= 2 ** 32 - 1:
            raise ValueError(f"seed must be an integer in [0, {2 ** 32 - 1}], got {self.seed}")
        for name in ("mimic_hidden", "ann_hidden"):
            archs = getattr(self, name)
            if not archs or any(not arch or any(int(h) < 1 for h in arch) for arch in archs):
                raise ValueError(f"{name} must be a non-empty list of architectures, each a "
                                 f"non-empty list of widths >= 1; got {archs!r}")
            for arch in archs:  # a lower bound (one input, two classes) before any data
                check_model_size({"name": "mlp", "in_features": 1, "num_classes": 2,
                                  "hidden": list(arch)}, f"{name} {arch_label(arch)}")
        if not (math.isfinite(self.size_budget) and self.size_budget > 0):
            raise ValueError(f"size_budget must be a finite number > 0, got {self.size_budget}")
        if any(e < 1 for e in self.ann_epochs):
            raise ValueError(f"ann_epochs must all be >= 1, got {self.ann_epochs}")
        if not 0 < self.selection_bag_fraction <= 1:
            raise ValueError(f"selection_bag_fraction must be in (0, 1], "
                             f"got {self.selection_bag_fraction}")
        if not self.ann_hidden or not self.ann_epochs:
            raise ValueError("ann_hidden and ann_epochs must not be empty")


# result key of each metric's test scores
SCORE_KEYS = {"rmse": "rmse", "accuracy": "accuracy", "roc_auc": "auc", "log_loss": "log_loss"}


def _scores(y: np.ndarray, proba: np.ndarray) -> dict:
    """RMSE (the paper's metric, on the class-1 column for binary), accuracy, AUC, log-loss."""
    return {m: metric_score(y, proba, m) for m in SCORE_KEYS}


def time_predict(predict: Callable[[Any], Any], rows: Any, repeats: int) -> float:
    """Best wall time of ``repeats`` calls, one thread for torch and BLAS."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                predict(rows)
                best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return best


def _rows(X: Any, n: int, seed: int) -> Any:
    """``n`` rows drawn (with replacement) from X, for timing."""
    index = np.random.default_rng(seed).integers(0, len(X), n)
    return X.iloc[index].reset_index(drop=True) if isinstance(X, pd.DataFrame) else X[index]


def compress_split(
    X_train: Any, y_train: np.ndarray, X_hill: Any, y_hill: np.ndarray, X_test: Any,
    y_test: np.ndarray, cfg: CompressionConfig, *, nominal: list[Any] | None = None,
    missing: str = "category", skip_baselines: bool = False, labels: list[Any] | None = None,
    target: str | None = None, out_dir: str | Path | None = None,
    log: Callable[[str], None] = _log.info,
) -> dict:
    """The whole pipeline on one split; with ``out_dir``, also save the models and the plot.

    ``missing``: "category" or "impute" (:class:`TabularEncoder`); ``skip_baselines``: no ANN
    grid and no RANDOM mimic (their entries are absent, gains None); ``labels``: the class
    names of the integer labels, and ``target`` the target column, both stored in the saved
    mimics so that they predict the user's labels and refuse a frame holding the target.
    """
    cfg.validate()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    encoder = TabularEncoder(nominal=nominal, missing=missing).fit(X_train)
    if missing == "impute":  # MUNGE, RANDOM and the teacher see the rows the encoder sees
        X_train, X_hill, X_test = (encoder.fill_missing(X) for X in (X_train, X_hill, X_test))
    enc = {"nominal": encoder.nominal_, "missing": missing, "numeric": cfg.numeric}
    methods = [m for m in METHODS if not (skip_baselines and m in BASELINES)]
    Z_train, Z_hill, Z_test = (encoder.transform(X) for X in (X_train, X_hill, X_test))
    if len(np.unique(y_train)) < 2:
        raise ValueError("the training rows hold a single class; need at least two")

    library = ModelLibrary(preset=cfg.preset, n_jobs=cfg.n_jobs, random_state=cfg.seed)
    library.fit(Z_train, y_train)
    timings["library_fit"] = time.perf_counter() - t0
    log(f"  library: {len(library.names_)} models fitted in {timings['library_fit']:.0f} s"
        + (f" ({len(library.failed_)} failed)" if library.failed_ else ""))
    P_hill = library.predict_all(Z_hill)
    P_test = library.predict_all(Z_test)

    t = time.perf_counter()
    metric = cfg.metric
    log(f"  selection: hillclimbing {metric} over {len(P_hill)} models, "
        f"{cfg.selection_bags} bags")
    selector = EnsembleSelection(metric=metric, max_iter=cfg.selection_max_iter,
                                 n_bags=cfg.selection_bags,
                                 bag_fraction=cfg.selection_bag_fraction,
                                 random_state=cfg.seed).fit(P_hill, y_hill)
    timings["selection"] = time.perf_counter() - t
    ensemble = WeightedEnsemble.from_selection(library, selector.weights_, encoder)
    hill_score = np.array([metric_score(y_hill, P, metric) for P in P_hill])
    best = int(np.argmax(better(metric) * hill_score))  # the first on ties
    log(f"  selection: {len(ensemble.models)} distinct models, hillclimb {metric} "
        f"{selector.score_:.4f} (best single {library.names_[best]}: {hill_score[best]:.4f})")
    alerts: list[str] = []
    if better(metric) * (selector.score_ - hill_score[best]) < 0:
        alerts.append(f"the selected ensemble is worse on the hillclimb rows than its best "
                        f"single model, {library.names_[best]} ({metric} {selector.score_:.4f} "
                        f"against {hill_score[best]:.4f}); a larger library or hillclimb set "
                        f"may help")
        _log.warning(alerts[-1])

    nets: dict[str, MimicClassifier] = {}
    ann_trials = None
    if not skip_baselines:
        t = time.perf_counter()
        nets["ann"], ann_trials = fit_ann(cfg, enc, X_train, y_train, X_hill, y_hill, log)
        timings["ann"] = time.perf_counter() - t
    ensemble_bytes = ensemble.size_bytes()
    mimics, mimic_trials = fit_mimics(cfg, ensemble, enc, X_train, y_train, X_hill, y_hill,
                                      ensemble_bytes / cfg.size_budget, timings, log,
                                      random=not skip_baselines)
    nets.update(mimics)
    small_fits = any(t["within_budget"] for t in mimic_trials)
    log(f"  mimic: chose {list(mimics['mimic_munge'].hidden)}; " + _budget_line(
        small_fits, cfg.size_budget, ensemble_bytes, mimics["mimic_small"]))

    proba = {
        "single": P_test[best],
        "ensemble": np.tensordot(selector.weights_, P_test, axes=1),
        **{m: aligned(nets[m], X_test, y_train) for m in nets},
    }
    test = {m: _scores(y_test, proba[m]) for m in methods}

    # Sizes: pickled scikit-learn models with the encoder, the exported file for nets.
    sizes = {
        "single": model_size_bytes((encoder, library.estimators_[best])),
        "ensemble": ensemble_bytes,
        **{m: export_size(nets[m]) for m in nets},
    }
    # Time on encoded rows: the encoding (the same for every model) is preprocessing, as in
    # the paper's timings; the time with encoding from raw rows is reported alongside.
    rows = _rows(X_test, cfg.timing_rows, cfg.seed)
    encoded = encoder.transform(rows)
    single = WeightedEnsemble(None, [library.names_[best]], [library.estimators_[best]],
                              np.ones(1), library.classes_)
    bare = WeightedEnsemble(None, ensemble.names, ensemble.models, ensemble.weights,
                            ensemble.classes_)
    predict_seconds = {
        "single": time_predict(single.predict_proba, encoded, 2),
        "ensemble": time_predict(bare.predict_proba, encoded, 1),
        **{m: time_predict(nets[m].proba_from_encoded, nets[m].encoder_.transform(rows), 5)
           for m in nets},
    }
    raw_seconds = {
        "encoding": time_predict(encoder.transform, rows, 3),
        "ensemble": time_predict(ensemble.predict_proba, rows, 1),
        "mimic_munge": time_predict(mimics["mimic_munge"].predict_proba, rows, 3),
        "mimic_small": time_predict(mimics["mimic_small"].predict_proba, rows, 3),
    }
    score = {m: test[m][metric] for m in methods}
    noise = (bootstrap_gain(y_test, proba["ensemble"], proba["ann"], metric, seed=cfg.seed)
             if "ann" in nets else None)
    show, reason = gain_verdict(noise)
    if noise is not None:
        log(f"  gain of the ensemble over the ANN: {noise['gain']:+.4f} test {metric}, 95% "
            f"bootstrap interval [{noise['ci95'][0]:+.4f}, {noise['ci95'][1]:+.4f}]"
            + ("" if show else f"; no gain captured reported ({reason.split(':')[0]})"))

    def gain(mimic: str) -> float | None:
        if not show or mimic not in score:
            return None
        return gain_captured(score["ann"], score[mimic], score["ensemble"], metric)

    result = {
        "methods": methods,
        "metric": metric,
        **{key: {m: test[m][name] for m in methods} for name, key in SCORE_KEYS.items()},
        "gain_captured": gain("mimic_munge"),
        "gain_captured_small": gain("mimic_small"),
        "gain_captured_random": gain("mimic_random"),
        "gain_captured_reason": reason,
        "gain_noise": noise,
        "warnings": alerts,
        "size_bytes": sizes,
        "predict_seconds_10k": {m: v * 10000 / cfg.timing_rows
                                for m, v in predict_seconds.items()},
        "predict_seconds_10k_from_raw_rows": {m: v * 10000 / cfg.timing_rows
                                              for m, v in raw_seconds.items()},
        "speedup_vs_ensemble": predict_seconds["ensemble"] / predict_seconds["mimic_munge"],
        "speedup_vs_ensemble_small": predict_seconds["ensemble"]
        / predict_seconds["mimic_small"],
        "speedup_vs_ensemble_from_raw_rows": raw_seconds["ensemble"]
        / raw_seconds["mimic_munge"],
        "size_ratio_vs_ensemble": sizes["ensemble"] / sizes["mimic_munge"],
        "size_ratio_vs_ensemble_small": sizes["ensemble"] / sizes["mimic_small"],
        "rows": {"train": len(y_train), "hillclimb": len(y_hill), "test": len(y_test),
                 "transfer": mimics["mimic_munge"].n_transfer_,
                 "input_features": Z_train.shape[1]},
        "positive_rate_test": float(np.mean(y_test == 1)) if len(np.unique(y_train)) == 2
        else None,
        "library": {"models": len(library.names_), "failed": library.failed_,
                    "preset": cfg.preset},
        "selection": {
            "metric": metric,
            "hillclimb_score": float(selector.score_),
            "hillclimb_rmse": metric_score(
                y_hill, np.tensordot(selector.weights_, P_hill, axes=1), "rmse"),
            "distinct_models": len(ensemble.models),
            "members": {n: round(float(w), 5) for n, w in zip(ensemble.names, ensemble.weights)},
            "trajectory_mean": np.nanmean(selector.trajectory_, axis=0).tolist()
            if np.ndim(selector.trajectory_) == 2 else list(selector.trajectory_),
            "best_single": library.names_[best],
            "best_single_hillclimb_score": float(hill_score[best]),
            "best_single_hillclimb_rmse": metric_score(y_hill, P_hill[best], "rmse"),
            "worse_than_best_single": bool(alerts),
        },
        "ann_selection": ann_trials,
        "ann_chosen": ({"hidden": list(nets["ann"].hidden), "epochs": nets["ann"].epochs}
                       if "ann" in nets else None),
        "size_budget": cfg.size_budget,
        "nets_numeric": cfg.numeric,
        "mimic_small_within_budget": small_fits,
        "mimic_selection": mimic_trials,
        "mimic_chosen": {m: list(mimics[m].hidden) for m in mimics},
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    if out_dir is not None:
        out = Path(out_dir)
        mimics["mimic_munge"].export(out / "mimic.pt", classes=labels, target=target)
        mimics["mimic_small"].export(out / "mimic-small.pt", classes=labels, target=target)
        ensemble.save(out / "ensemble.joblib")
        figure = plot_trajectory(selector.trajectory_, hill_score[best],
                                 ylabel=f"hillclimb {metric}")
        save_figure(figure, out / "selection.png")
    return result


def _budget_line(fits: bool, budget: float, ensemble_bytes: int, small: MimicClassifier) -> str:
    """What the log says of mimic_small: "within budget" only when it is."""
    if fits:
        return (f"the best within 1/{budget:g} of the ensemble's {ensemble_bytes} bytes: "
                f"{list(small.hidden)}")
    return (f"no candidate is within 1/{budget:g} of the ensemble's {ensemble_bytes} bytes; "
            f"mimic_small is the smallest, {list(small.hidden)}, over budget")
