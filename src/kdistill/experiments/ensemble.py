"""Ensemble distillation and self-distillation (Hinton et al. 2015 sec. 4, Table 1; Allen-Zhu &
Li 2020): a baseline model, an ensemble of N models of the same architecture and recipe that
differ only in their seed (optionally their bootstrap sample), one model of that architecture
distilled from the ensemble at each T, and self-distillation (a fresh model distilled from one
trained model).

Protocol (SPEC 3, 8): members and students train on the training set minus a validation split;
the headline T is the one with the best validation accuracy, never the test set's. The paper's
relative hard-label weight 0.5 is the default. The baseline is member 0, so "baseline", the
ensemble and the teacher of self-distillation are the same trained models. Every figure is the
last epoch; `seeds` repeats the whole protocol per seed and reports mean +- sd with intervals
paired by seed.
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

from ..distill.augment import jitter
from ..distill.cache import cached_teacher_logits
from ..distill.data import ArrayDataset, load_dataset
from ..distill.losses import check_temperature, check_weights
from ..distill.metrics import classification_metrics
from ..distill.teachers import COMBINE_RULES, combine_members, run_teacher
from ..distill.trainer import resolve_device
from ..reporting import provenance
from . import setting
from .common import (
    Recipe,
    build_config,
    fit_run,
    mlp_spec,
    ms_per_1000,
    over_seeds_results,
    split_validation,
    train_config,
    write_reports,
)
from .ensemble_report import pct_or_na, plot, render_markdown
from .ensemble_stats import over_seeds

__all__ = ["summary", "EnsembleConfig", "config_from", "run"]

_log = logging.getLogger(__name__)


@dataclass
class EnsembleConfig:
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    out: str = "runs/ensemble"
    members: int = setting(10, "ensemble size")
    bootstrap: bool = setting(False, "also give each member its own bootstrap sample")
    combine: str = setting(
        "arith_prob",
        "arith_prob: mean of the members' probabilities at T; geo_logit: normalized geometric"
        " mean (mean of logits)", choices=COMBINE_RULES)
    hidden: tuple[int, ...] = setting((512, 512), "MLP hidden widths of every model")
    member_jitter: int = setting(
        0,
        "train the members on images shifted online by up to this many pixels")
    # dropout makes the members alike: 0.2 gave a 0.25-point ensemble gain on Fashion-MNIST
    # (docs/results/ensemble)
    hidden_dropout: float = setting(0.0, "hidden dropout of every member")
    temperatures: tuple[float, ...] = setting(
        (1.0, 2.0, 5.0, 10.0),
        "distillation temperatures (the headline one chosen on validation)")
    soft_weight: float = 1.0
    hard_weight: float = setting(0.5, "hard-term weight")  # the paper's relative weight
    self_distill: bool = setting(True, "also distill a fresh model from one trained model")
    student_dropout: float | None = setting(
        None,
        "hidden dropout of distilled models (unset: the members')")
    # Jittered copies of the training images added to the students' transfer set, with the
    # ensemble's soft targets on each: on the training images alone a same-size student did not
    # match the ensemble (docs/results/ensemble/README.md). A baseline trained with hard labels
    # on the same transfer set is reported as a control for the augmentation.
    transfer_copies: int = setting(
        2,
        "jittered copies of the training images added to the students' transfer set, with the"
        " ensemble's soft targets on each (0: the training images only)")
    transfer_jitter: int = setting(1, "pixels of shift for those copies")
    epochs: int = setting(20, "epochs of every member")
    student_epochs: int | None = setting(
        None,
        "epochs of distilled models and of the hard-label control (unset: --epochs)")
    validation_size: int = 5000
    batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"
    seed: int = 0
    seeds: tuple[int, ...] = setting(
        (), "repeat everything (split, members, students) with each of these seeds (default: "
            "--seed alone)", nargs="*")
    device: str = "auto"
    progress: bool = True
    fresh: bool = False
    report_dir: str | None = None

    def validate(self) -> None:
        if self.members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {self.members}")
        if self.combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {COMBINE_RULES}, got {self.combine!r}")
        if not self.temperatures:
            raise ValueError("give at least one temperature")
        for t in self.temperatures:
            check_temperature(t)
        check_weights(self.soft_weight, self.hard_weight)
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {list(self.hidden)}")
        if not 0.0 <= self.hidden_dropout < 1.0:
            raise ValueError(f"hidden_dropout must lie in [0, 1), got {self.hidden_dropout}")
        for name in ("epochs", "batch_size", "validation_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.student_dropout is not None and not 0.0 <= self.student_dropout < 1.0:
            raise ValueError(f"student_dropout must lie in [0, 1), got {self.student_dropout}")
        if self.member_jitter < 0:
            raise ValueError(f"member_jitter must be >= 0, got {self.member_jitter}")
        if self.transfer_copies < 0 or self.transfer_jitter < 1:
            raise ValueError("transfer_copies must be >= 0 and transfer_jitter >= 1")
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be distinct and >= 0, got {list(self.seeds)}")
        if self.student_epochs is not None and self.student_epochs < 1:
            raise ValueError(f"student_epochs must be >= 1, got {self.student_epochs}")


def config_from(dataset: str, **overrides) -> EnsembleConfig:
    """Class defaults, then the data set's, then yours."""
    defaults = {"digits": {"batch_size": 64, "epochs": 40, "validation_size": 270,
                           "hidden": (256, 256)},
                # the plain transfer set (the training images alone) with students trained
                # long enough for the soft targets (docs/results/ensemble/README.md)
                "fashion-mnist": {"seeds": (0, 1, 2), "transfer_copies": 0,
                                  "student_epochs": 60, "temperatures": (2.0, 5.0)},
                }.get(dataset, {})
    return build_config(EnsembleConfig, dataset, defaults, overrides, "ensemble")


def run(cfg: EnsembleConfig, log: Callable[[str], None] = _log.info) -> dict:
    """Every seed in full (each under `<out>/seed-<s>/`, seed 0 under `<out>`), then the figures
    over seeds; the first seed's run gives the curves and the single-seed keys."""
    cfg.validate()
    t_start = time.perf_counter()
    splits = load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
    seeds = list(cfg.seeds or (cfg.seed,))
    runs = [_run_one(dataclasses.replace(cfg, seed=s), splits, log) for s in seeds]
    results = over_seeds_results(runs, seeds, cfg, t_start)
    results.update(over_seeds(runs))
    write_reports(results, cfg, render_markdown, plot)
    return results


def _run_one(cfg: EnsembleConfig, splits, log) -> dict:
    """The whole protocol with `cfg.seed`."""
    fit, val = split_validation(splits.train, cfg.validation_size, cfg.seed + 12345)
    test = splits.test
    out = Path(cfg.out) / (f"seed-{cfg.seed}" if cfg.seed else "")
    out.mkdir(parents=True, exist_ok=True)
    device = str(resolve_device(cfg.device))
    spec = mlp_spec(fit, cfg.hidden, hidden_dropout=cfg.hidden_dropout)
    student_spec = mlp_spec(fit, cfg.hidden, hidden_dropout=cfg.hidden_dropout
                            if cfg.student_dropout is None else cfg.student_dropout)

    def tcfg(epochs: int, seed: int, **kw) -> Recipe:
        return train_config(cfg, epochs, seed=seed, **kw)

    def fit_one(name, data, config, init_seed, teacher_logits=None, extra=None, student=False):
        return fit_run(name, student_spec if student else spec, data, test, config, out,
                       teacher_logits=teacher_logits,
                       init_seed=cfg.seed * 7919 + init_seed, val_data=val,
                       resume=not cfg.fresh, extra=extra, log=log)

    # 1. The members: same recipe, own seed (initialization, batch order, dropout masks).
    transfer = _transfer_set(fit, cfg)
    members, member_rows, transfer_logits = [], [], []
    for i in range(cfg.members):
        data, extra = fit, None
        if cfg.bootstrap:
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + i)
            data = fit.subset(torch.randint(len(fit), (len(fit),), generator=gen),
                              f"bootstrap-{i}")
            extra = {"bootstrap": i}
        model, row = fit_one(f"member-{i}", data,
                             tcfg(cfg.epochs, cfg.seed + i, jitter=cfg.member_jitter),
                             1 + 1000 * i, extra=extra)
        members.append(model)
        member_rows.append(row)
        cache = out / "cache" / (f"member-{i}" + (f"-copies{cfg.transfer_copies}-jitter"
                                                   f"{cfg.transfer_jitter}"
                                                   if cfg.transfer_copies else ""))
        transfer_logits.append(cached_teacher_logits(model, transfer.x, cache, device=device,
                                                     batch_size=4096).logits)
    stacked = torch.stack([torch.as_tensor(v) for v in transfer_logits])

    def ensemble_metrics(x, y) -> dict:
        logits = combine_members([run_teacher(m, x, device=device) for m in members], 1.0,
                                 cfg.combine)
        return classification_metrics(logits, y)

    ensemble_test = ensemble_metrics(test.x, test.y)
    ensemble_val = ensemble_metrics(val.x, val.y)

    # 2. One model distilled from the ensemble at each T; the headline T is chosen on
    # validation accuracy (ties: the lower T).
    student_epochs = cfg.student_epochs or cfg.epochs
    tag = _student_tag(cfg)
    distilled, distilled_models = {}, {}
    for t in sorted(cfg.temperatures):
        soft = combine_members(stacked, t, cfg.combine)
        model, row = fit_one(f"distilled-T{t:g}{tag}", transfer,
                             tcfg(student_epochs, cfg.seed + 500, temperature=t,
                                  soft_weight=cfg.soft_weight, hard_weight=cfg.hard_weight),
                             2, teacher_logits=soft, student=True)
        distilled[t], distilled_models[t] = row, model
    best_t = max(sorted(distilled), key=lambda t: distilled[t]["val_accuracy"])

    # 3. Self-distillation: a fresh, independently initialized model of the same architecture
    # taught by member 0 alone, at the T chosen above.
    self_row = None
    if cfg.self_distill:
        _, self_row = fit_one(f"self-distilled-T{best_t:g}{tag}", transfer,
                              tcfg(student_epochs, cfg.seed + 700, temperature=best_t,
                                   soft_weight=cfg.soft_weight, hard_weight=cfg.hard_weight),
                              3, teacher_logits=stacked[0], student=True)

    # A control for the students' transfer set and schedule: member 0's recipe trained on them
    # with hard labels only, so that a gain cannot come from augmentation or length alone.
    control_row = None
    if tag and not cfg.member_jitter:  # with augmented members, member 0 is that control
        _, control_row = fit_one(f"baseline{tag}", transfer, tcfg(student_epochs, cfg.seed), 1,
                                 student=True)

    # 4. Inference cost on the test inputs, in one process, one after the other.
    ms_ensemble = ms_per_1000(members, test.x, device=device)
    ms_single = ms_per_1000(distilled_models[best_t], test.x, device=device)

    baseline = member_rows[0]
    member_acc = np.array([r["test_accuracy"] for r in member_rows])
    gain = ensemble_test["accuracy"] - baseline["test_accuracy"]
    head = distilled[best_t]
    results = {
        "experiment": "ensemble",
        "dataset": cfg.dataset,
        "data_source": splits.source,
        "train_size": len(fit),
        "validation_size": len(val),
        "test_size": len(test),
        "model": spec,
        "student_model": student_spec,
        "transfer_size": len(transfer),
        "transfer_copies": cfg.transfer_copies,
        "members": cfg.members,
        "combine": cfg.combine,
        "bootstrap": cfg.bootstrap,
        "baseline_accuracy": baseline["test_accuracy"],
        "baseline_nll": baseline["test_nll"],
        "member_accuracies": member_acc.tolist(),
        "member_accuracy_mean": float(member_acc.mean()),
        "member_accuracy_std": float(member_acc.std(ddof=1)),
        "ensemble_accuracy": ensemble_test["accuracy"],
        "ensemble_nll": ensemble_test["nll"],
        "ensemble_validation_accuracy": ensemble_val["accuracy"],
        "temperature": best_t,
        "temperature_chosen_on": "validation accuracy",
        "distilled_accuracy": head["test_accuracy"],
        "distilled_nll": head["test_nll"],
        "distilled_by_temperature": {f"{t:g}": _row(r) for t, r in distilled.items()},
        "self_distilled_accuracy": None if self_row is None else self_row["test_accuracy"],
        "control_baseline_accuracy": None if control_row is None else control_row["test_accuracy"],
        "student_epochs": student_epochs,
        "self_distilled_nll": None if self_row is None else self_row["test_nll"],
        "gain_recovered": (head["test_accuracy"] - baseline["test_accuracy"]) / gain
        if gain > 0 else None,
        # Member 0 is one draw; the mean member is the less noisy baseline.
        "gain_recovered_vs_member_mean": (head["test_accuracy"] - member_acc.mean())
        / (ensemble_test["accuracy"] - member_acc.mean())
        if ensemble_test["accuracy"] > member_acc.mean() else None,
        "self_distillation_beats_teacher": None if self_row is None
        else self_row["test_accuracy"] > baseline["test_accuracy"],
        "single_parameters": baseline["parameters"],
        "ensemble_parameters": sum(r["parameters"] for r in member_rows),
        "ensemble_ms_per_1000": ms_ensemble,
        "distilled_ms_per_1000": ms_single,
        "cost_ratio": ms_ensemble / ms_single,
        "timing_device": device,
        "soft_weight": cfg.soft_weight,
        "hard_weight": cfg.hard_weight,
        "rows": {"baseline": _row(baseline), "self_distilled": _row(self_row),
                 "control_baseline": _row(control_row),
                 "members": [_row(r) for r in member_rows]},
        "seed": cfg.seed,
        "reported_epoch": "last",
        "compute_seconds": round(sum(r["train_seconds"] for r in
                                     [*member_rows, *distilled.values(), self_row, control_row]
                                     if r), 1),
        **provenance(),
    }
    return results


def _transfer_set(fit: ArrayDataset, cfg: EnsembleConfig) -> ArrayDataset:
    """The students' transfer set: the training images, plus `transfer_copies` copies of them
    each shifted by up to `transfer_jitter` pixels (fixed draws, so the cached soft targets stay
    valid). Every copy keeps its image's label; its soft targets come from the ensemble."""
    if not cfg.transfer_copies:
        return fit
    gen = torch.Generator().manual_seed(cfg.seed + 4242)
    xs = [fit.x] + [jitter(fit.x, cfg.transfer_jitter, gen) for _ in range(cfg.transfer_copies)]
    return ArrayDataset(torch.cat(xs), fit.y.repeat(cfg.transfer_copies + 1), fit.num_classes,
                        fit.class_names, f"{fit.name}+{cfg.transfer_copies} jittered copies")


def _student_tag(cfg: EnsembleConfig) -> str:
    """Run-name suffix for non-default student settings, so that variants never share a
    folder (they would be refused on resume anyway)."""
    tag = ""
    if cfg.student_dropout is not None and cfg.student_dropout != cfg.hidden_dropout:
        tag += f"-drop{cfg.student_dropout:g}"
    if cfg.transfer_copies:
        tag += f"-copies{cfg.transfer_copies}j{cfg.transfer_jitter}"
    if cfg.student_epochs and cfg.student_epochs != cfg.epochs:
        tag += f"-e{cfg.student_epochs}"
    return tag


def _row(r: dict | None) -> dict | None:
    if r is None:
        return None
    keep = ("test_accuracy", "test_nll", "test_ece", "val_accuracy", "val_nll",
            "parameters", "train_seconds", "test_accuracy_curve")
    return {k: r[k] for k in keep if k in r}


def summary(r: dict, cfg: EnsembleConfig) -> list[str]:
    """The lines `kdistill reproduce ensemble` prints at the end."""
    return [f"test accuracy: baseline {r['baseline_accuracy']:.4f}, {r['members']}x ensemble "
            f"{r['ensemble_accuracy']:.4f}, distilled (T={r['temperature']:g}) "
            f"{r['distilled_accuracy']:.4f}, self-distilled {r['self_distilled_accuracy']}; "
            f"gain recovered {pct_or_na(r['gain_recovered'])}; ms per 1,000: ensemble "
            f"{r['ensemble_ms_per_1000']:.2f}, distilled {r['distilled_ms_per_1000']:.2f}",
            f"report: {Path(cfg.out) / 'results.md'} (+ .json, .png); wall time "
            f"{r['wall_seconds']:.0f} s"]

