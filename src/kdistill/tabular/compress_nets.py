"""The nets of :func:`kdistill.tabular.compress.compress_split`: the ANN baseline's grid, the
MUNGE transfer set labelled by the ensemble, and the mimic candidates, each chosen on the
hillclimb rows by the run's metric, with a progress line per trial.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .gain import better
from .library import _proba_one
from .metrics import metric_score
from .mimic import MimicClassifier, build_transfer_set
from .progress import Progress

__all__ = ["fit_ann", "fit_mimics", "budget_widths", "aligned", "export_size", "LoggedTeacher"]


class LoggedTeacher:
    """The ensemble as a teacher that logs, member by member, while it labels rows."""

    def __init__(self, ensemble: Any, log: Callable[[str], None], what: str) -> None:
        self.ensemble = ensemble
        self.classes_ = ensemble.classes_
        self.log = log
        self.what = what

    def predict_proba(self, X: Any) -> np.ndarray:
        e = self.ensemble
        self.log(f"  {self.what}: {len(X)} rows to label by the ensemble's {len(e.models)} "
                 "models")
        Z = np.asarray(e.encoder.transform(X) if e.encoder is not None else X, dtype=np.float64)
        total = np.zeros((len(Z), len(e.classes_)))
        progress = Progress(self.log, f"{self.what} labelling: model", len(e.models))
        for i, (w, name, model) in enumerate(zip(e.weights, e.names, e.models), 1):
            total += w * _proba_one(model, Z, e.classes_)
            progress(i, name)
        return total


def aligned(model: Any, X: Any, y_train: np.ndarray) -> np.ndarray:
    """Probabilities over all training classes, in the order of np.unique(y_train)."""
    proba = model.predict_proba(X)
    classes = np.unique(y_train)
    if len(model.classes_) == len(classes):
        return proba
    out = np.zeros((len(proba), len(classes)))
    out[:, np.searchsorted(classes, model.classes_)] = proba
    return out


def export_size(model: MimicClassifier) -> int:
    """Bytes of the exported checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        return model.export(Path(tmp) / "m.pt").stat().st_size


def _best(trials: list[dict], metric: str, among: list[int] | None = None) -> int:
    """Index of the trial with the best hillclimb score (the first on ties)."""
    among = list(range(len(trials))) if among is None else among
    return max(among, key=lambda i: (better(metric) * trials[i]["hillclimb_score"], -i))


def fit_ann(cfg: Any, enc: dict, X_train: Any, y_train: np.ndarray, X_hill: Any,
            y_hill: np.ndarray, log: Callable[[str], None]
            ) -> tuple[MimicClassifier, list[dict]]:
    """The best hard-label net over architectures x epochs, judged by the hillclimb metric."""
    grid = [(tuple(h), e) for h in cfg.ann_hidden for e in cfg.ann_epochs]
    progress = Progress(log, "ann: trial", len(grid), every=0.0)
    nets, trials = [], []
    for i, (hidden, epochs) in enumerate(grid, 1):
        ann = MimicClassifier(teacher=None, pseudo="none", **enc, hidden=hidden, epochs=epochs,
                              batch_size=128, lr=1e-3, random_state=cfg.seed).fit(X_train,
                                                                                   y_train)
        proba = aligned(ann, X_hill, y_train)
        trials.append({"hidden": list(hidden), "epochs": epochs,
                       "hillclimb_score": metric_score(y_hill, proba, cfg.metric),
                       "hillclimb_rmse": metric_score(y_hill, proba, "rmse")})
        nets.append(ann)
        progress(i, f"{'x'.join(map(str, hidden))} x {epochs} epochs, hillclimb {cfg.metric} "
                    f"{trials[-1]['hillclimb_score']:.4f}")
    best = _best(trials, cfg.metric)
    trials[best]["chosen"] = True
    log(f"  ann: chose {list(nets[best].hidden)} x {nets[best].epochs} epochs on the hillclimb "
        f"{cfg.metric}")
    return nets[best], trials


def _mimic(cfg: Any, ensemble: Any, enc: dict, hidden: tuple[int, ...]) -> MimicClassifier:
    """``enc``: the encoder's settings, {"nominal": ..., "missing": ...}."""
    return MimicClassifier(teacher=ensemble, **enc, hidden=tuple(hidden),
                           epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                           random_state=cfg.seed)


def budget_widths(n_in: int, n_out: int, n_bytes: float) -> list[tuple[int, ...]]:
    """The widest one-layer and two-layer (equal widths) nets whose float32 weights take at
    most ``n_bytes``: the size-budgeted mimic spends its whole budget instead of settling for
    the largest fixed candidate that happens to fit."""
    n = n_bytes / 4 - n_out                       # parameters left after the output bias
    one = math.floor(n / (n_in + 1 + n_out))
    b = n_in + 2 + n_out                          # two layers: h^2 + b h <= n
    two = math.floor((-b + math.sqrt(b * b + 4 * n)) / 2) if n > 0 else 0
    return [h for h in ((one,), (two, two)) if min(h) >= 4]


def _n_weights(n_in: int, hidden: tuple[int, ...], n_out: int) -> int:
    widths = [n_in, *hidden, n_out]
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def _budget_fitted(fitted: list[MimicClassifier], trials: list[dict],
                   max_bytes: float) -> list[tuple[int, ...]]:
    """Budget-fitted architectures not among the candidates, from the export overhead the
    candidates measured (bytes beyond their float32 weights) for the same depth, with 3% to
    spare."""
    first = next(m for m in fitted[0].model_.modules() if isinstance(m, nn.Linear))
    n_in, n_out = first.in_features, len(fitted[0].classes_)
    overheads = [(len(r["hidden"]), r["size_bytes"] - 4 * _n_weights(n_in, tuple(r["hidden"]),
                                                                     n_out)) for r in trials]
    out = []
    for hidden in budget_widths(n_in, n_out, max_bytes):
        same = [o for depth, o in overheads if depth == len(hidden)]
        overhead = max(same or [o for _, o in overheads])
        room = 0.97 * max_bytes - overhead
        fit = [h for h in budget_widths(n_in, n_out, room) if len(h) == len(hidden)]
        if fit and list(fit[0]) not in [r["hidden"] for r in trials]:
            out.append(fit[0])
    return out


def _trial(cfg: Any, mimic: MimicClassifier, X_hill: Any, y_hill: np.ndarray,
           y_train: np.ndarray, max_bytes: float) -> dict:
    """One mimic's record: hillclimb scores, export size, whether it fits the budget."""
    proba = aligned(mimic, X_hill, y_train)
    size = export_size(mimic)
    return {"hidden": list(mimic.hidden),
            "hillclimb_score": metric_score(y_hill, proba, cfg.metric),
            "hillclimb_rmse": metric_score(y_hill, proba, "rmse"),
            "size_bytes": size, "within_budget": bool(size <= max_bytes),
            "fit_seconds": round(mimic.fit_seconds_, 2)}


def fit_mimics(cfg: Any, ensemble: Any, enc: dict, X_train: Any, y_train: np.ndarray,
               X_hill: Any, y_hill: np.ndarray, max_bytes: float, timings: dict[str, float],
               log: Callable[[str], None], random: bool = True
               ) -> tuple[dict[str, MimicClassifier], list[dict]]:
    """Every candidate architecture on one MUNGE transfer set; keep the best candidate, and
    the best within ``max_bytes`` among the candidates and (``cfg.budget_fitted``) the widest
    nets that fit it, trained ``cfg.small_epochs``; then (``random``) the best one's
    architecture on RANDOM pseudo-data."""
    t = time.perf_counter()
    log(f"  MUNGE: generating {cfg.munge_k} pseudo rows per training row")
    munge = build_transfer_set(LoggedTeacher(ensemble, log, "MUNGE"), X_train, pseudo="munge",
                               k=cfg.munge_k, p=cfg.munge_p, s=cfg.munge_s,
                               munge_algorithm=cfg.munge_algorithm, nominal=enc["nominal"],
                               random_state=cfg.seed)
    timings["munge_label"] = time.perf_counter() - t
    log(f"  MUNGE: {len(munge.proba)} transfer rows labelled by the ensemble in "
        f"{timings['munge_label']:.0f} s")
    t = time.perf_counter()
    fitted, trials = [], []
    progress = Progress(log, "mimic: candidate", len(cfg.mimic_hidden), every=0.0)
    for i, hidden in enumerate(cfg.mimic_hidden, 1):
        mimic = _mimic(cfg, ensemble, enc, hidden).fit(X_train, transfer_set=munge)
        fitted.append(mimic)
        trials.append(_trial(cfg, mimic, X_hill, y_hill, y_train, max_bytes))
        progress(i, f"{'x'.join(map(str, hidden))}: hillclimb {cfg.metric} "
                    f"{trials[-1]['hillclimb_score']:.4f}, {trials[-1]['size_bytes']} bytes")
    best = _best(trials, cfg.metric)
    extra = _budget_fitted(fitted, trials, max_bytes) if cfg.budget_fitted else []
    for hidden in extra:
        mimic = _mimic(cfg, ensemble, enc, hidden)
        mimic.set_params(epochs=cfg.small_epochs).fit(X_train, transfer_set=munge)
        fitted.append(mimic)
        trials.append({**_trial(cfg, mimic, X_hill, y_hill, y_train, max_bytes),
                       "budget_fitted": True, "epochs": cfg.small_epochs})
        log(f"  mimic: budget-fitted {'x'.join(map(str, hidden))} x {cfg.small_epochs} epochs: "
            f"hillclimb {cfg.metric} {trials[-1]['hillclimb_score']:.4f}, "
            f"{trials[-1]['size_bytes']} bytes")
    timings["mimic_candidates"] = time.perf_counter() - t
    within = [i for i, r in enumerate(trials) if r["within_budget"]]
    # Nothing fits the budget: the smallest candidate, flagged in the trials.
    small = (_best(trials, cfg.metric, within) if within
             else min(range(len(trials)), key=lambda i: trials[i]["size_bytes"]))
    for key, i in (("chosen", best), ("chosen_small", small)):
        trials[i][key] = True
    mimics = {"mimic_munge": fitted[best], "mimic_small": fitted[small]}
    if random:
        t = time.perf_counter()
        log(f"  RANDOM: the mimic {list(fitted[best].hidden)} on RANDOM pseudo-data")
        rows = build_transfer_set(LoggedTeacher(ensemble, log, "RANDOM"), X_train,
                                  pseudo="random", k=cfg.munge_k, nominal=enc["nominal"],
                                  random_state=cfg.seed)
        mimics["mimic_random"] = _mimic(cfg, ensemble, enc, fitted[best].hidden).fit(
            X_train, transfer_set=rows)
        timings["mimic_random"] = time.perf_counter() - t
    return mimics, trials
