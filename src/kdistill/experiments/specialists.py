"""Hinton, Vinyals & Dean (2015) section 5: specialists with a dustbin class (SPEC §4).

Protocol, per seed:
  1. a generalist MLP trained on hard labels on the training set minus a validation split;
  2. confusable class subsets from the covariance of its predicted probabilities on the
     training inputs (no labels), overlapping when `subset_size` is set;
  3. one specialist per subset, initialized from the generalist (hidden layers and the subset's
     output rows copied, see `distill.specialist_models`), trained on half subset / half
     other examples, labels = subset classes + one dustbin, for a number of epochs chosen on
     validation (on small data sets "a little" training barely moves a converged generalist);
  4. the exact prior correction of each dustbin logit, then SPEC §4.4's combination of the
     generalist with the specialists whose subset holds the generalist's top class.

The validation split chooses the number of specialist epochs among `specialist_epochs` (by the
combined model's validation accuracy); the test set chooses nothing. Every run checkpoints
under `out/runs/<name>/` and resumes; a specialist's run is tied to its generalist's weights
and its subset, so a stale specialist is refused, never reused.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..distill import specialist_combine as spc
from ..distill import specialists as sp
from ..distill.data import DATASETS, ArrayDataset, DataSplits, load_dataset
from ..distill.models import MLP
from ..distill.specialist_eval import (
    combine_with_specialists,
    conditional_accuracy,
    gain_by_covering,
)
from ..distill.specialist_models import specialist_from_generalist
from ..distill.teachers import fingerprint_module, run_teacher
from ..distill.trainer import TrainConfig, resolve_device
from ..reporting import provenance
from . import setting
from .common import (
    Recipe,
    build_config,
    fit_run,
    jsonable,
    mlp_spec,
    split_validation,
    write_reports,
)
from .seeds import mean_sd, paired
from .specialists_report import plot_results, render_markdown, summary

__all__ = ["summary", "SpecialistsConfig", "config_from", "defaults_for", "run",
           "train_specialists"]

_log = logging.getLogger(__name__)

_KNOWN_CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10, "kmnist": 10, "letter": 26}
_DUSTBIN_FIT_ROWS = 10_000  # training inputs used to fit the dustbin row at initialization


@dataclass
class SpecialistsConfig:
    dataset: str = "letter"
    data_dir: str | None = None
    download: bool = False
    out: str = "runs/specialists"
    hidden: tuple[int, ...] = setting((256, 256), "generalist (and specialist) MLP hidden widths")
    generalist_epochs: int = setting(40, "generalist epochs")
    batch_size: int = 128
    lr: float = 1e-3                          # Adam, cosine schedule
    # k of the k-means on covariance columns
    num_subsets: int = setting(8, "number of k-means clusters of classes (specialists)")
    subset_size: int | None = setting(
        5,
        "classes per specialist (overlapping subsets); 0: the disjoint k-means partition",
        none_if=0)
    specialist_epochs: tuple[int, ...] = setting(
        (10, 30, 60),
        "candidate specialist epochs, chosen on validation")
    specialist_lr: float = setting(1e-3, "Adam learning rate of the specialists")
    special_fraction: float = setting(
        0.5,
        "share of subset examples in a specialist's training data")
    validation_size: int = 2000               # held out of the training set
    seeds: tuple[int, ...] = setting((0,), "one run per seed, pooled in the tables")
    device: str = "auto"
    progress: bool = False
    fresh: bool = False                       # ignore existing checkpoints under out/
    report_dir: str | None = None             # also write <report_dir>/<dataset>.{json,md,png}

    def validate(self, num_classes: int | None = None) -> None:
        """One clear line for bad settings; `num_classes` once the data are loaded (known data
        sets are checked before)."""
        if self.dataset not in DATASETS and not str(self.dataset).endswith(".npz"):
            raise ValueError(f"unknown dataset {self.dataset!r}; known: {sorted(DATASETS)} "
                             "or a .npz file")
        for name in ("generalist_epochs", "batch_size", "num_subsets", "validation_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {list(self.hidden)}")
        if not self.specialist_epochs or any(e < 1 for e in self.specialist_epochs):
            raise ValueError(f"specialist_epochs must be one or more values >= 1, got "
                             f"{list(self.specialist_epochs)}")
        for name in ("lr", "specialist_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if not 0.0 < self.special_fraction < 1.0:
            raise ValueError(f"special_fraction must lie strictly between 0 and 1, got "
                             f"{self.special_fraction}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be one or more distinct integers, got {self.seeds}")
        if self.subset_size is not None and self.subset_size < 1:
            raise ValueError(f"subset_size must be >= 1, got {self.subset_size}")
        classes = num_classes or _KNOWN_CLASSES.get(self.dataset)
        if classes is None:
            return
        if self.subset_size is not None and self.subset_size >= classes:
            raise ValueError(f"subset_size ({self.subset_size}) must be smaller than the number "
                             f"of classes of {self.dataset} ({classes}), or the dustbin is empty")
        if self.num_subsets > classes:
            raise ValueError(f"num_subsets ({self.num_subsets}) cannot exceed the number of "
                             f"classes of {self.dataset} ({classes})")


def defaults_for(dataset: str) -> dict:
    """Per-data-set defaults, chosen on the validation split of seed 0. Letter: 26 classes, 8
    subsets of 5 (40 slots: most letters in one or two subsets); cheap, so 3 seeds.
    Fashion-MNIST: 10 classes, 5 subsets of 4 (4 of 3 did as well on validation, with less
    overlap); 2 seeds."""
    if dataset == "letter":
        return {"hidden": (256, 256), "generalist_epochs": 40, "batch_size": 128,
                "num_subsets": 8, "subset_size": 5, "validation_size": 2000,
                "seeds": (0, 1, 2)}
    if dataset in ("fashion-mnist", "mnist", "kmnist"):
        return {"hidden": (512, 512), "generalist_epochs": 20, "batch_size": 256,
                "num_subsets": 5, "subset_size": 4, "validation_size": 5000,
                "specialist_epochs": (3, 10, 30), "seeds": (0, 1)}
    if dataset == "digits":
        return {"hidden": (128,), "generalist_epochs": 30, "batch_size": 64, "num_subsets": 3,
                "subset_size": 4, "validation_size": 270, "specialist_epochs": (3, 10)}
    return {}


def config_from(dataset: str, **overrides) -> SpecialistsConfig:
    """The experiment's config for a data set: class defaults, then the data set's, then yours."""
    cfg = build_config(SpecialistsConfig, dataset, defaults_for(dataset), overrides,
                       "specialists")
    for key in ("hidden", "specialist_epochs", "seeds"):
        setattr(cfg, key, tuple(getattr(cfg, key)))
    return cfg


# ----------------------------------------------------------------------------- models


def _probs(model: nn.Module, x: torch.Tensor, device: torch.device) -> np.ndarray:
    """Softmax of the model's logits in float64 (rows sum to 1 to rounding)."""
    logits = run_teacher(model.to(device), x, batch_size=4096)
    return torch.softmax(logits.double(), dim=1).numpy()


def train_specialists(generalist: MLP, spec: dict, subsets: list[np.ndarray],
                      fit: ArrayDataset, val: ArrayDataset, tcfg: Recipe, out: Path, *,
                      name: str, special_fraction: float = 0.5, sample_seed: int = 0,
                      resume: bool = True, log: Callable[[str], None] = _log.info,
                      ) -> tuple[list[nn.Module], list[dict]]:
    """One specialist per subset, each initialized from the generalist and trained with `tcfg`
    on specialist_sample(fit) with dustbin labels; returns (models, rows). Each run is tied to
    the generalist's fingerprint, its subset and its sample, so a stale checkpoint is refused."""
    y_fit = fit.y.numpy()
    num_classes = fit.num_classes
    origin = fingerprint_module(generalist)
    models, rows = [], []
    for m, subset in enumerate(subsets):
        idx = sp.specialist_sample(y_fit, subset, num_classes, special_fraction=special_fraction,
                                   seed=sample_seed * 1000 + m)
        names = [fit.class_names[c] if fit.class_names else str(c) for c in subset]
        names.append("dustbin")
        k = len(subset) + 1
        data = ArrayDataset(fit.x[idx], torch.from_numpy(
            sp.to_specialist_labels(y_fit[idx], subset, num_classes)), k, names,
            f"specialist-{m}-train")
        val_m = ArrayDataset(val.x, torch.from_numpy(
            sp.to_specialist_labels(val.y.numpy(), subset, num_classes)), k, names,
            f"specialist-{m}-validation")
        model = specialist_from_generalist(generalist, subset, fit.x[:_DUSTBIN_FIT_ROWS])
        extra = {"generalist": origin, "subset": [int(c) for c in subset],
                 "special_fraction": special_fraction, "sample_seed": sample_seed * 1000 + m,
                 "init": "generalist+lstsq-dustbin"}
        model, row = fit_run(f"{name}-m{m}", {**spec, "num_classes": k}, data, None, tcfg, out,
                             val_data=val_m, model=model, extra=extra, resume=resume, log=log)
        row["train_size"] = len(data)
        models.append(model)
        rows.append(row)
    return models, rows


# ----------------------------------------------------------------------------- combination


def _evaluate(pg: np.ndarray, pms: list[np.ndarray], subsets: list[np.ndarray],
              fractions: list[float], y: np.ndarray, special_fraction: float) -> dict:
    """Accuracies of the generalist and of the three dustbin variants, Table 3 and Table 4."""
    variants = {name: combine_with_specialists(pg, pms, subsets, fractions, special_fraction,
                                               literal=name == "literal",
                                               correct=name != "none")
                for name in ("exact", "literal", "none")}
    q = variants["exact"]
    g_ok, c_ok = pg.argmax(1) == y, q.argmax(1) == y
    active = spc.active_specialists(pg, subsets, top_n=1)
    return {
        "n": len(y),
        "generalist_correct": int(g_ok.sum()),
        "combined_correct": int(c_ok.sum()),
        "variant_correct": {k: int((v.argmax(1) == y).sum()) for k, v in variants.items()},
        "fixed": int((~g_ok & c_ok).sum()),
        "broken": int((g_ok & ~c_ok).sum()),
        "conditional_generalist": conditional_accuracy(pg, y, subsets),
        "conditional_combined": conditional_accuracy(q, y, subsets),
        "gain_by_covering": gain_by_covering(pg, q, y, subsets),
        "with_active_specialist": int(active.any(axis=1).sum()),
        "mean_active_specialists": float(active.sum(axis=1).mean()),
    }


# ----------------------------------------------------------------------------- protocol


def _train_config(cfg: SpecialistsConfig, seed: int, epochs: int, lr: float) -> Recipe:
    return Recipe(TrainConfig(epochs=epochs, batch_size=cfg.batch_size, optimizer="adam", lr=lr,
                              schedule="cosine", seed=seed, device=cfg.device,
                              progress=cfg.progress))


def _run_seed(cfg: SpecialistsConfig, splits: DataSplits, seed: int, out: Path,
              log: Callable[[str], None]) -> dict:
    """The whole protocol for one seed; returns its validation and test evaluations."""
    device = resolve_device(cfg.device)
    fit, val = split_validation(splits.train, cfg.validation_size, seed)
    test = splits.test
    spec = mlp_spec(fit, cfg.hidden)
    arch = "x".join(map(str, cfg.hidden))
    generalist, g_row = fit_run(f"generalist-{arch}-s{seed}", spec, fit, None,
                                _train_config(cfg, seed, cfg.generalist_epochs, cfg.lr), out,
                                val_data=val, init_seed=seed, resume=not cfg.fresh, log=log)
    subsets = sp.find_confusable_subsets(_probs(generalist, fit.x, device), cfg.num_subsets,
                                         cfg.subset_size, seed=seed)
    names = fit.class_names or [str(c) for c in range(fit.num_classes)]
    log(f"[seed {seed}] subsets: " + "; ".join(" ".join(names[c] for c in s) for s in subsets))
    y_fit, y_val, y_test = fit.y.numpy(), val.y.numpy(), test.y.numpy()
    fractions = [float(np.isin(y_fit, s).mean()) for s in subsets]
    pg_val, pg_test = _probs(generalist, val.x, device), _probs(generalist, test.x, device)

    candidates, rows_all = {}, []
    for epochs in sorted(set(cfg.specialist_epochs)):
        models, rows = train_specialists(
            generalist, spec, subsets, fit, val,
            _train_config(cfg, seed, epochs, cfg.specialist_lr), out,
            name=f"specialist-{arch}-s{seed}-{len(subsets)}x{cfg.subset_size or 'kmeans'}-e{epochs}"
                 f"-lr{cfg.specialist_lr:g}", special_fraction=cfg.special_fraction,
            sample_seed=seed, resume=not cfg.fresh, log=log)
        rows_all += rows
        pms_val = [_probs(m, val.x, device) for m in models]
        candidates[epochs] = (models, _evaluate(pg_val, pms_val, subsets, fractions, y_val,
                                                cfg.special_fraction), rows)
        log(f"[seed {seed}] specialists trained {epochs} epochs: validation correct "
            f"{candidates[epochs][1]['combined_correct']} (generalist "
            f"{candidates[epochs][1]['generalist_correct']}) of {len(y_val)}")
    chosen = max(candidates, key=lambda e: (candidates[e][1]["combined_correct"], -e))
    models, val_eval, rows = candidates[chosen]
    pms_test = [_probs(m, test.x, device) for m in models]
    t0 = time.perf_counter()
    test_eval = _evaluate(pg_test, pms_test, subsets, fractions, y_test, cfg.special_fraction)
    return {
        "seed": seed,
        "subsets": [s.tolist() for s in subsets],
        "clusters": [[names[c] for c in s] for s in subsets],
        "natural_fractions": fractions,
        "dustbin_corrections": {
            "exact": [sp.dustbin_correction(f, cfg.special_fraction) for f in fractions],
            "literal": [sp.dustbin_correction(f, cfg.special_fraction, literal=True)
                        for f in fractions]},
        "specialist_epochs": chosen,
        "validation_by_epochs": {e: {"combined_correct": c[1]["combined_correct"],
                                     "generalist_correct": c[1]["generalist_correct"]}
                                 for e, c in candidates.items()},
        "validation": val_eval,
        "test": test_eval,
        "combine_seconds": round(time.perf_counter() - t0, 2),
        "generalist": {k: v for k, v in g_row.items() if not k.endswith("curve")},
        "generalist_validation_curve": g_row.get("val_accuracy_curve"),
        "specialists": [{"train_size": r["train_size"], "validation_accuracy":
                         r["val_accuracy"], "train_seconds": r["train_seconds"]} for r in rows],
        "compute_seconds": g_row["train_seconds"] + sum(r["train_seconds"] for r in rows_all),
    }


def _pool(per_seed: list[dict], part: str) -> dict:
    """Sums over seeds (every seed sees the same examples), turned into accuracies."""
    evs = [s[part] for s in per_seed]
    n = sum(e["n"] for e in evs)
    cond = {k: [sum(e[k][i] for e in evs) for i in (0, 1)]
            for k in ("conditional_generalist", "conditional_combined")}
    buckets: dict[int, dict] = {}
    for e in evs:
        for row in e["gain_by_covering"]:
            b = buckets.setdefault(row["covering"], {"covering": row["covering"], "examples": 0,
                                                     "generalist_correct": 0,
                                                     "delta_correct": 0})
            for key in ("examples", "generalist_correct", "delta_correct"):
                b[key] += row[key]
    gains = [{**b, "relative_change": b["delta_correct"] / b["generalist_correct"]
              if b["generalist_correct"] else None} for _, b in sorted(buckets.items())]
    return {
        "examples": n,
        "generalist_accuracy": sum(e["generalist_correct"] for e in evs) / n,
        "combined_accuracy": sum(e["combined_correct"] for e in evs) / n,
        "variant_accuracy": {k: sum(e["variant_correct"][k] for e in evs) / n
                             for k in ("exact", "literal", "none")},
        "fixed": sum(e["fixed"] for e in evs),
        "broken": sum(e["broken"] for e in evs),
        "conditional_examples": cond["conditional_generalist"][1],
        "conditional_accuracy": {
            "generalist": cond["conditional_generalist"][0] / max(cond["conditional_generalist"][1],
                                                                  1),
            "combined": cond["conditional_combined"][0] / max(cond["conditional_combined"][1], 1)},
        "with_active_specialist": sum(e["with_active_specialist"] for e in evs) / n,
        "gain_by_covering": gains,
    }


def run(cfg: SpecialistsConfig, log: Callable[[str], None] = _log.info) -> dict:
    """Run the protocol for every seed and write `<out>/results.{json,md,png}` (and
    `<report_dir>/<dataset>.*`); returns the results."""
    cfg.validate()
    t_start = time.perf_counter()
    splits = load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
    cfg.validate(splits.train.num_classes)
    if cfg.validation_size >= len(splits.train):
        raise ValueError(f"validation_size ({cfg.validation_size}) must be smaller than the "
                         f"training set ({len(splits.train)})")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    per_seed = [_run_seed(cfg, splits, seed, out, log) for seed in cfg.seeds]
    test, val = _pool(per_seed, "test"), _pool(per_seed, "validation")
    results = {
        "experiment": "specialists",
        "dataset": cfg.dataset,
        "data_source": splits.source,
        "train_size": len(splits.train),
        "fit_size": len(splits.train) - cfg.validation_size,
        "validation_size": cfg.validation_size,
        "test_size": len(splits.test),
        "num_classes": splits.train.num_classes,
        "class_names": splits.train.class_names,
        "generalist_model": mlp_spec(splits.train, cfg.hidden),
        "generalist_accuracy": test["generalist_accuracy"],
        "combined_accuracy": test["combined_accuracy"],
        "literal_dustbin_accuracy": test["variant_accuracy"]["literal"],
        "uncorrected_dustbin_accuracy": test["variant_accuracy"]["none"],
        "conditional_accuracy": test["conditional_accuracy"],
        "gain_by_covering": test["gain_by_covering"],
        "clusters": per_seed[0]["clusters"],
        "num_specialists": [len(s["subsets"]) for s in per_seed],
        "subset_size": cfg.subset_size,
        "specialist_epochs_chosen": [s["specialist_epochs"] for s in per_seed],
        "test": test,
        "validation": val,
        "per_seed": per_seed,
        "seeds": list(cfg.seeds),
        "reported_epoch": "last",
        "config": jsonable(dataclasses.asdict(cfg)),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "compute_seconds": round(sum(s["compute_seconds"] for s in per_seed), 1),
        **provenance(),
    }
    acc = {k: [s["test"][f"{k}_correct"] / s["test"]["n"] for s in per_seed]
           for k in ("generalist", "combined")}
    for k, values in acc.items():
        results[f"{k}_accuracy_mean"], results[f"{k}_accuracy_sd"] = mean_sd(values)
    results["combined_minus_generalist"] = paired(acc["combined"], acc["generalist"])
    results = jsonable(results)
    write_reports(results, cfg, render_markdown, plot_results)
    return results

