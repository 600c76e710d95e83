"""Model compression (Bucila, Caruana & Niculescu-Mizil 2006) on one split: the pipeline.

:func:`compress_split`, per problem (SPEC §6-§7):
  1. a library of scikit-learn models (:mod:`kdistill.tabular.library`) on the training rows;
  2. ensemble selection (:mod:`kdistill.tabular.selection`) on the hillclimb rows, optimizing
     RMSE, with sorted initialization, replacement, bagging and the best prefix; the best single
     model is also chosen on the hillclimb rows;
  3. the "ANN" baseline: the best net trained on the training rows' hard labels, architecture
     and epochs chosen on the hillclimb rows;
  4. MUNGE pseudo-data plus the training rows, labelled once by the ensemble; on it, one mimic
     net per candidate architecture. Two are kept, both chosen on the hillclimb rows:
     ``mimic_munge``, the best of all, and ``mimic_small``, the best of those whose export is at
     most ``1 / size_budget`` of the ensemble's size (the deployment constraint: "1000x
     smaller"). ``mimic_random`` is mimic_munge's architecture on RANDOM pseudo-data;
  5. test RMSE, accuracy and AUC of all of them, model sizes in bytes and the time to predict
     10,000 rows on one thread.

The test rows choose nothing. This is library code a notebook can call; the reproduction over
the paper's problems is :mod:`kdistill.experiments.model_compression`, a CSV file is
:mod:`kdistill.tabular.compress_csv`. Torch comes in only through :mod:`.mimic`.
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
from .compress_report import arch_label, plot_trajectory
from .encoding import TabularEncoder
from .library import ModelLibrary, WeightedEnsemble, model_size_bytes
from .metrics import metric_score
from .mimic import MimicClassifier, build_transfer_set
from .selection import EnsembleSelection

__all__ = ["CompressionConfig", "compress_split", "gain_captured", "plot_trajectory", "METHODS",
           "MIMICS", "BASELINES", "ARCHITECTURES", "arch_label"]

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
    ann_hidden: tuple[tuple[int, ...], ...] = ARCHITECTURES
    ann_epochs: tuple[int, ...] = (40, 160)
    timing_rows: int = 10000
    seed: int = 0

    def validate(self) -> None:
        for name in ("n_jobs", "selection_bags", "selection_max_iter", "munge_k",
                     "epochs", "batch_size", "timing_rows"):
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


def gain_captured(ann: float, mimic: float, ensemble: float) -> float | None:
    """(ann - mimic) / (ann - ensemble): the share of the ensemble's gain the mimic keeps."""
    if ann - ensemble <= 0:
        return None
    return (ann - mimic) / (ann - ensemble)


def _scores(y: np.ndarray, proba: np.ndarray) -> dict:
    """RMSE (the paper's metric, on the class-1 column for binary), accuracy and AUC."""
    return {m: metric_score(y, proba, m) for m in ("rmse", "accuracy", "roc_auc")}


def _time_predict(predict: Callable[[Any], Any], rows: Any, repeats: int) -> float:
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


def _fit_ann(cfg: CompressionConfig, enc: dict, X_train: Any, y_train: np.ndarray,
             X_hill: Any, y_hill: np.ndarray, log: Callable[[str], None]
             ) -> tuple[MimicClassifier, list[dict]]:
    """The best hard-label net over architectures x epochs, judged by hillclimb RMSE."""
    best, trials = None, []
    for hidden in cfg.ann_hidden:
        for epochs in cfg.ann_epochs:
            ann = MimicClassifier(teacher=None, pseudo="none", **enc,
                                  hidden=tuple(hidden), epochs=epochs, batch_size=128,
                                  lr=1e-3, random_state=cfg.seed).fit(X_train, y_train)
            proba = _aligned(ann, X_hill, y_train)
            rmse = metric_score(y_hill, proba, "rmse")
            trials.append({"hidden": list(hidden), "epochs": epochs, "hillclimb_rmse": rmse})
            if best is None or rmse < best[0]:
                best = (rmse, ann)
    log(f"  ann: chose {list(best[1].hidden)} x {best[1].epochs} epochs on the hillclimb set")
    return best[1], trials


def _mimic(cfg: CompressionConfig, ensemble: Any, enc: dict, hidden: tuple[int, ...]
           ) -> MimicClassifier:
    """``enc``: the encoder's settings, {"nominal": ..., "missing": ...}."""
    return MimicClassifier(teacher=ensemble, **enc, hidden=tuple(hidden),
                           epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                           random_state=cfg.seed)


def _fit_mimics(cfg: CompressionConfig, ensemble: Any, enc: dict, X_train: Any,
                y_train: np.ndarray, X_hill: Any, y_hill: np.ndarray, max_bytes: float,
                timings: dict[str, float], log: Callable[[str], None], random: bool = True
                ) -> tuple[dict[str, MimicClassifier], list[dict]]:
    """Every candidate architecture on one MUNGE transfer set; keep the best, and the best
    within ``max_bytes``; then (``random``) the best one's architecture on RANDOM pseudo-data."""
    t = time.perf_counter()
    munge = build_transfer_set(ensemble, X_train, pseudo="munge", k=cfg.munge_k, p=cfg.munge_p,
                               s=cfg.munge_s, munge_algorithm=cfg.munge_algorithm,
                               nominal=enc["nominal"], random_state=cfg.seed)
    timings["munge_label"] = time.perf_counter() - t
    log(f"  MUNGE: {len(munge.proba)} transfer rows labelled by the ensemble in "
        f"{timings['munge_label']:.0f} s")
    t = time.perf_counter()
    fitted, trials = [], []
    for hidden in cfg.mimic_hidden:
        mimic = _mimic(cfg, ensemble, enc, hidden).fit(X_train, transfer_set=munge)
        rmse = metric_score(y_hill, _aligned(mimic, X_hill, y_train), "rmse")
        size = _export_size(mimic)
        fitted.append(mimic)
        trials.append({"hidden": list(hidden), "hillclimb_rmse": rmse, "size_bytes": size,
                       "within_budget": bool(size <= max_bytes),
                       "fit_seconds": round(mimic.fit_seconds_, 2)})
        log(f"  mimic {list(hidden)}: hillclimb RMSE {rmse:.4f}, {size} bytes")
    timings["mimic_candidates"] = time.perf_counter() - t
    best = min(range(len(trials)), key=lambda i: trials[i]["hillclimb_rmse"])
    within = [i for i, r in enumerate(trials) if r["within_budget"]]
    # Nothing fits the budget: the smallest candidate, flagged in the trials.
    small = (min(within, key=lambda i: trials[i]["hillclimb_rmse"]) if within
             else min(range(len(trials)), key=lambda i: trials[i]["size_bytes"]))
    for key, i in (("chosen", best), ("chosen_small", small)):
        trials[i][key] = True
    mimics = {"mimic_munge": fitted[best], "mimic_small": fitted[small]}
    if random:
        t = time.perf_counter()
        rows = build_transfer_set(ensemble, X_train, pseudo="random", k=cfg.munge_k,
                                  nominal=enc["nominal"], random_state=cfg.seed)
        mimics["mimic_random"] = _mimic(cfg, ensemble, enc, fitted[best].hidden).fit(
            X_train, transfer_set=rows)
        timings["mimic_random"] = time.perf_counter() - t
    return mimics, trials


def _aligned(model: Any, X: Any, y_train: np.ndarray) -> np.ndarray:
    """Probabilities over all training classes, in the order of np.unique(y_train)."""
    proba = model.predict_proba(X)
    classes = np.unique(y_train)
    if len(model.classes_) == len(classes):
        return proba
    out = np.zeros((len(proba), len(classes)))
    out[:, np.searchsorted(classes, model.classes_)] = proba
    return out


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
    enc = {"nominal": encoder.nominal_, "missing": missing}
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
    selector = EnsembleSelection(metric="rmse", max_iter=cfg.selection_max_iter,
                                 n_bags=cfg.selection_bags,
                                 bag_fraction=cfg.selection_bag_fraction,
                                 random_state=cfg.seed).fit(P_hill, y_hill)
    timings["selection"] = time.perf_counter() - t
    ensemble = WeightedEnsemble.from_selection(library, selector.weights_, encoder)
    hill_rmse = np.array([metric_score(y_hill, P_hill[m], "rmse") for m in range(len(P_hill))])
    best = int(np.argmin(hill_rmse))
    log(f"  selection: {len(ensemble.models)} distinct models, hillclimb RMSE "
        f"{selector.score_:.4f} (best single {library.names_[best]}: {hill_rmse[best]:.4f})")

    nets: dict[str, MimicClassifier] = {}
    ann_trials = None
    if not skip_baselines:
        t = time.perf_counter()
        nets["ann"], ann_trials = _fit_ann(cfg, enc, X_train, y_train, X_hill, y_hill, log)
        timings["ann"] = time.perf_counter() - t
    ensemble_bytes = ensemble.size_bytes()
    mimics, mimic_trials = _fit_mimics(cfg, ensemble, enc, X_train, y_train, X_hill, y_hill,
                                       ensemble_bytes / cfg.size_budget, timings, log,
                                       random=not skip_baselines)
    nets.update(mimics)
    small_fits = any(t["within_budget"] for t in mimic_trials)
    log(f"  mimic: chose {list(mimics['mimic_munge'].hidden)}; " + _budget_line(
        small_fits, cfg.size_budget, ensemble_bytes, mimics["mimic_small"]))

    proba = {
        "single": P_test[best],
        "ensemble": np.tensordot(selector.weights_, P_test, axes=1),
        **{m: _aligned(nets[m], X_test, y_train) for m in nets},
    }
    test = {m: _scores(y_test, proba[m]) for m in methods}

    # Sizes: pickled scikit-learn models with the encoder, the exported file for nets.
    sizes = {
        "single": model_size_bytes((encoder, library.estimators_[best])),
        "ensemble": ensemble_bytes,
        **{m: _export_size(nets[m]) for m in nets},
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
        "single": _time_predict(single.predict_proba, encoded, 2),
        "ensemble": _time_predict(bare.predict_proba, encoded, 1),
        **{m: _time_predict(nets[m].proba_from_encoded, nets[m].encoder_.transform(rows), 5)
           for m in nets},
    }
    raw_seconds = {
        "encoding": _time_predict(encoder.transform, rows, 3),
        "ensemble": _time_predict(ensemble.predict_proba, rows, 1),
        "mimic_munge": _time_predict(mimics["mimic_munge"].predict_proba, rows, 3),
        "mimic_small": _time_predict(mimics["mimic_small"].predict_proba, rows, 3),
    }
    rmse = {m: test[m]["rmse"] for m in methods}

    def gain(mimic: str) -> float | None:
        if "ann" not in rmse or mimic not in rmse:
            return None
        return gain_captured(rmse["ann"], rmse[mimic], rmse["ensemble"])

    result = {
        "methods": methods,
        "rmse": rmse,
        "accuracy": {m: test[m]["accuracy"] for m in methods},
        "auc": {m: test[m]["roc_auc"] for m in methods},
        "gain_captured": gain("mimic_munge"),
        "gain_captured_small": gain("mimic_small"),
        "gain_captured_random": gain("mimic_random"),
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
            "hillclimb_rmse": float(selector.score_),
            "distinct_models": len(ensemble.models),
            "members": {n: round(float(w), 5) for n, w in zip(ensemble.names, ensemble.weights)},
            "trajectory_mean": np.nanmean(selector.trajectory_, axis=0).tolist()
            if np.ndim(selector.trajectory_) == 2 else list(selector.trajectory_),
            "best_single": library.names_[best],
            "best_single_hillclimb_rmse": float(hill_rmse[best]),
        },
        "ann_selection": ann_trials,
        "ann_chosen": ({"hidden": list(nets["ann"].hidden), "epochs": nets["ann"].epochs}
                       if "ann" in nets else None),
        "size_budget": cfg.size_budget,
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
        save_figure(plot_trajectory(selector.trajectory_, hill_rmse[best]), out / "selection.png")
    return result


def _budget_line(fits: bool, budget: float, ensemble_bytes: int, small: MimicClassifier) -> str:
    """What the log says of mimic_small: "within budget" only when it is."""
    if fits:
        return (f"the best within 1/{budget:g} of the ensemble's {ensemble_bytes} bytes: "
                f"{list(small.hidden)}")
    return (f"no candidate is within 1/{budget:g} of the ensemble's {ensemble_bytes} bytes; "
            f"mimic_small is the smallest, {list(small.hidden)}, over budget")


def _export_size(model: MimicClassifier) -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = model.export(Path(tmp) / "m.pt")
        return path.stat().st_size
