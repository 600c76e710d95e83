"""Soft targets as a regularizer (Hinton et al. 2015 sec. 6, Table 5; SPEC 5).

The same model and recipe trained three ways: on the whole training set (the reference, and
the teacher); on a random 3% of it with hard labels only (it overfits: the paper had to stop it
early at its peak); and on the same 3% with the teacher's soft targets, which needs no early
stopping. Train and test accuracy are recorded every epoch.

The temperature of the soft run is chosen on a validation split that none of the runs train
on. The hard run's peak test accuracy is an early stop on the test set, exactly the paper's
44.5% figure, so it is labelled as such; the epoch a validation split would have chosen is
reported beside it. Optional rows add a 1-pixel jitter to the 3% (hard labels, and soft targets
from the teacher run online on the jittered images), to separate augmentation from the soft
targets' own effect. Every other figure is the last epoch. `seeds` repeats everything per
seed (split, subset, init) and reports mean +- sd with paired intervals; `curve_fractions`
adds the gap recovered at other data fractions.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..distill.cache import cached_teacher_logits
from ..distill.data import load_dataset
from ..distill.losses import check_temperature, check_weights
from ..distill.trainer import evaluate, resolve_device
from ..reporting import provenance
from . import setting, soft_regularizer_stats
from .common import (
    Recipe,
    build_config,
    fit_run,
    jsonable,
    mlp_spec,
    split_validation,
    train_config,
    write_reports,
)
from .soft_regularizer_report import percent, plot, render_markdown

__all__ = ["summary", "SoftRegularizerConfig", "config_from", "run"]

_log = logging.getLogger(__name__)


@dataclass
class SoftRegularizerConfig:
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    out: str = "runs/soft-regularizer"
    fraction: float = setting(0.03, "share of the training set (digits: 0.1)")
    hidden: tuple[int, ...] = setting((512, 512), "MLP hidden widths")
    hidden_dropout: float = setting(0.2, "hidden dropout")
    temperatures: tuple[float, ...] = setting(
        (1.0, 2.0, 4.0, 8.0),
        "candidate T, chosen on validation")
    soft_weight: float = 1.0
    # soft targets only, as the paper's "Soft Targets" row
    hard_weight: float = setting(0.0, "hard-term weight of the soft run (0: soft targets only)")
    jitter: int = setting(
        1,
        "also train on the fraction with this many pixels of jitter (0 skips those rows)")
    full_epochs: int = setting(20, "epochs of the full-data model")
    small_epochs: int = setting(100, "epochs of the runs on the fraction")
    batch_size: int = 256
    small_batch_size: int = setting(128, "batch size of the runs on the fraction")
    validation_size: int = 5000
    lr: float = 1e-3
    optimizer: str = "adam"
    seed: int = 0
    seeds: tuple[int, ...] = setting(
        (), "repeat everything (split, subset, init) with each of these seeds (default: "
            "--seed alone)", nargs="*")
    curve_fractions: tuple[float, ...] = setting(
        (), "also run these fractions (hard labels and soft targets, no jitter rows; epochs "
            "scaled to the same number of steps, at least --full-epochs) for a curve of "
            "the gap recovered against the data fraction", nargs="*")
    device: str = "auto"
    progress: bool = True
    fresh: bool = False
    report_dir: str | None = None

    def validate(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must lie strictly between 0 and 1, got {self.fraction}")
        if not self.temperatures:
            raise ValueError("give at least one temperature")
        for t in self.temperatures:
            check_temperature(t)
        check_weights(self.soft_weight, self.hard_weight)
        if self.soft_weight == 0:
            raise ValueError("soft_weight must be > 0: this experiment is about soft targets")
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {self.jitter}")
        for name in ("full_epochs", "small_epochs", "batch_size", "small_batch_size",
                     "validation_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(not 0.0 < f < 1.0 for f in self.curve_fractions):
            raise ValueError("curve fractions must lie strictly between 0 and 1, got "
                             f"{list(self.curve_fractions)}")
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be distinct and >= 0, got {list(self.seeds)}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {list(self.hidden)}")


def config_from(dataset: str, **overrides) -> SoftRegularizerConfig:
    """Class defaults, then the data set's, then yours. On the tiny
    digits set 3% is 40 images, so its default fraction is 10%."""
    defaults = {"digits": {"fraction": 0.1, "batch_size": 64, "small_batch_size": 32,
                           "full_epochs": 60, "small_epochs": 200, "validation_size": 270,
                           "jitter": 0},
                "fashion-mnist": {"seeds": (0, 1, 2), "curve_fractions": (0.01, 0.1, 0.3)},
                }.get(dataset, {})
    return build_config(SoftRegularizerConfig, dataset, defaults, overrides, "soft-regularizer")


def run(cfg: SoftRegularizerConfig, log: Callable[[str], None] = _log.info) -> dict:
    """Every seed at the headline fraction (and at each curve fraction), then the figures
    over seeds; the first seed's run gives the per-epoch curves and the single-seed keys."""
    cfg.validate()
    t_start = time.perf_counter()
    splits = load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
    seeds = list(cfg.seeds or (cfg.seed,))
    fractions = sorted({cfg.fraction, *cfg.curve_fractions})
    runs = {f: [_run_one(cfg, splits, f, seed, log) for seed in seeds] for f in fractions}
    results = dict(runs[cfg.fraction][0])
    results.update(soft_regularizer_stats.over_seeds(runs[cfg.fraction]))
    results["seeds"] = seeds
    results["fraction_curve"] = [soft_regularizer_stats.curve_point(f, runs[f])
                                 for f in fractions]
    results["config"] = jsonable(dataclasses.asdict(cfg))
    results["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    results["compute_seconds"] = round(sum(r["compute_seconds"] for rows in runs.values()
                                           for r in rows), 1)
    write_reports(results, cfg, render_markdown, plot)
    return results


def _run_one(cfg: SoftRegularizerConfig, splits, fraction: float, seed: int, log) -> dict:
    """One seed at one fraction: the full-data model (shared by every fraction of the seed),
    hard labels and soft targets on the fraction; the jitter rows at the headline fraction."""
    headline = fraction == cfg.fraction
    fit, val = split_validation(splits.train, cfg.validation_size, seed + 12345)
    test = splits.test
    n_small = max(round(fraction * len(fit)), 2)
    perm = torch.randperm(len(fit), generator=torch.Generator().manual_seed(seed + 777))
    small = fit.subset(perm[:n_small], f"{100 * fraction:g}% of the training set")
    out = Path(cfg.out) / (f"seed-{seed}" if seed != 0 else "")
    out.mkdir(parents=True, exist_ok=True)
    device = str(resolve_device(cfg.device))
    spec = mlp_spec(fit, cfg.hidden, hidden_dropout=cfg.hidden_dropout)
    resume = not cfg.fresh
    tag = "" if headline else f"f{fraction:g}-"
    # Off the headline fraction: the same number of steps as the headline's runs.
    small_epochs = cfg.small_epochs if headline else max(
        cfg.full_epochs, round(cfg.small_epochs * cfg.fraction / fraction))

    def tcfg(epochs: int, batch: int, **kw) -> Recipe:
        return train_config(cfg, epochs, batch_size=batch, seed=seed, **kw)

    # 1. The full-data model: the reference row and the teacher.
    teacher, full_row = fit_run("full-data", spec, fit, test,
                                tcfg(cfg.full_epochs, cfg.batch_size), out,
                                init_seed=seed * 7919 + 1, resume=resume, log=log)
    full_train = evaluate(teacher, fit, device=device)
    logits = cached_teacher_logits(teacher, small.x, out / "cache" / f"{tag}teacher-small",
                                   device=device, batch_size=4096).logits

    # Every 3% run starts from the same initial weights and sees the same batches.
    def small_run(name: str, **kw):
        teacher_kw = {}
        if kw.get("jitter") and "temperature" in kw:
            teacher_kw = {"teacher": teacher}
        elif "temperature" in kw:
            teacher_kw = {"teacher_logits": logits}
        return fit_run(tag + name, spec, small, test,
                       tcfg(small_epochs, cfg.small_batch_size, **kw), out,
                       init_seed=seed * 7919 + 2, val_data=val, eval_extra={"train": small},
                       resume=resume, log=log, **teacher_kw)

    # 2. Hard labels only: it overfits.
    _, hard = small_run("small-hard", hard_weight=1.0)
    # 3. Soft targets at each T; the headline T is the best on validation at the last epoch.
    soft = {t: small_run(f"small-soft-T{t:g}", temperature=t, soft_weight=cfg.soft_weight,
                         hard_weight=cfg.hard_weight)[1] for t in sorted(cfg.temperatures)}
    best_t = max(sorted(soft), key=lambda t: soft[t]["val_accuracy"])
    head = soft[best_t]
    # 4. Optional: the same with jittered images (teacher run online on them).
    jittered = {}
    if cfg.jitter and headline:
        jittered["hard"] = small_run(f"small-hard-jitter{cfg.jitter}", hard_weight=1.0,
                                     jitter=cfg.jitter)[1]
        jittered["soft"] = small_run(f"small-soft-T{best_t:g}-jitter{cfg.jitter}",
                                     temperature=best_t, soft_weight=cfg.soft_weight,
                                     hard_weight=cfg.hard_weight, jitter=cfg.jitter)[1]

    curve = hard["test_accuracy_curve"]
    peak_epoch = int(np.argmax(curve)) + 1
    val_epoch = int(np.argmax(hard["val_accuracy_curve"])) + 1
    full_acc, peak = full_row["test_accuracy"], curve[peak_epoch - 1]
    gap = full_acc - peak
    results = {
        "experiment": "soft-regularizer",
        "dataset": cfg.dataset,
        "data_source": splits.source,
        "full_train_size": len(fit),
        "small_train_size": len(small),
        "fraction": fraction,
        "small_epochs": small_epochs,
        "validation_size": len(val),
        "test_size": len(test),
        "model": spec,
        "full_data_accuracy": full_acc,
        "full_data_train_accuracy": full_train["accuracy"],
        "hard_peak_accuracy": peak,
        "hard_peak_epoch": peak_epoch,
        "hard_peak_note": "the best test accuracy over epochs: an early stop on the test set, "
                          "as the paper's 44.5%",
        "hard_validation_stop_accuracy": curve[val_epoch - 1],
        "hard_validation_stop_epoch": val_epoch,
        "hard_final_accuracy": curve[-1],
        "hard_final_train_accuracy": hard["train_accuracy"],
        "soft_final_accuracy": head["test_accuracy"],
        "soft_final_train_accuracy": head["train_accuracy"],
        "soft_peak_accuracy": max(head["test_accuracy_curve"]),
        "temperature": best_t,
        "temperature_chosen_on": "validation accuracy at the last epoch",
        "soft_weight": cfg.soft_weight,
        "hard_weight": cfg.hard_weight,
        "gap_recovered": (head["test_accuracy"] - peak) / gap if gap > 0 else None,
        "soft_by_temperature": {f"{t:g}": _row(r) for t, r in soft.items()},
        "hard": _row(hard),
        "full": _row(full_row),
        "jitter": cfg.jitter,
        "jittered": {k: _row(r) for k, r in jittered.items()},
        "seed": seed,
        "reported_epoch": "last (except hard_peak_accuracy and hard_validation_stop_accuracy)",
        # the full-data model is shared by every fraction of a seed: counted once
        "compute_seconds": round(sum(r["train_seconds"] for r in
                                     [*([full_row] if headline else []), hard, *soft.values(),
                                      *jittered.values()]), 1),
        **provenance(),
    }
    return results


def _row(r: dict) -> dict:
    keep = ("test_accuracy", "train_accuracy", "val_accuracy", "test_nll",
            "train_seconds", "test_accuracy_curve", "train_accuracy_curve")
    return {k: r[k] for k in keep if k in r}


def summary(r: dict, cfg: SoftRegularizerConfig) -> list[str]:
    """The lines `kdistill reproduce soft-regularizer` prints at the end."""
    return [f"test accuracy: full data {r['full_data_accuracy']:.4f}; "
            f"{100 * r['fraction']:g}% hard labels peak {r['hard_peak_accuracy']:.4f} (on "
            f"test), final {r['hard_final_accuracy']:.4f}; soft targets (T="
            f"{r['temperature']:g}) final {r['soft_final_accuracy']:.4f}; gap recovered "
            f"{percent(r['gap_recovered'])}",
            f"report: {Path(cfg.out) / 'results.md'} (+ .json, .png); wall time "
            f"{r['wall_seconds']:.0f} s"]
