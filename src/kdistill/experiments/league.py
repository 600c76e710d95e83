"""The league table (issue #12): every distillation method of the registry into two students,
from one CNN teacher, on one fixed schedule and several seeds, against the plain student on
labels alone.

Protocol. One wide ResNet teacher trains on the training images minus a validation split (SGD with
momentum 0.9, cosine, weight decay 5e-4, images shifted by up to 2 pixels). Two students: resnet8
(depth 8, widths w-2w-4w, w = `student_width`; 8 gives 11.5% of WRN-16-1's multiply-adds) and the
paper's 784-800-800-10 MLP (cross-architecture). Each student, method and seed is one *cell*: its
own resumable run under `<out>/runs/<student>-<transfer>-e<epochs>/<method>/seed<k>`, so cells can
train in parallel processes into one folder (`cells`: a shard "i/n" or patterns
"student:method:seed") and `assemble_only` builds the report from the finished ones. Every cell has
the same schedule (the students' SGD recipe, `epochs`, no augmentation unless `student_jitter`) and
each method the registry's defaults, the papers' settings; only what a cross-architecture pair
forces is set (layers, CRD's bank size), and DKD's warm-up over the first twelfth of the steps (the
paper's 20 of 240 epochs). Methods that read only logits take the teacher's cached logits; methods
that read features take its cached outputs on the transfer set (a view cache of the layers they
name, K = 1: league_teacher.py); with `student_jitter` and `views` K > 1 every distilled cell reads
the teacher's outputs on K cached shifted views of each image instead. So no cell runs the teacher
per batch; where the cache cannot serve a cell the teacher runs online and the report says so. Every
epoch is evaluated on the validation split and the test set: the table gives the last epoch's test
accuracy and the test accuracy at the epoch of best validation accuracy (the test set never chooses
anything).

CPU tier: resnet8 learns from a fixed stratified `subset` of the training images, the MLP from
all of them; `full` trains every cell on all images (for a GPU, where the trainer uses CUDA,
bf16 autocast, and the CNNs run channels_last; benchmarks/gpu/league.sh runs the full table).

Cost of the default CPU table, measured (2-core AMD EPYC, one torch thread per process, two
processes at a time; docs/results/league/): the WRN-16-1 teacher 1,163 s for 15 epochs (two
threads, alone), its logits and five view caches about 470 s more (1.2 GB, float32); a resnet8
cell (10,000 images, 10 epochs) 50-60 s, RKD and CRD about 100 s; an MLP cell (55,000 images)
52-69 s, RKD 470 s, CRD about 1,000 s (its 16,384 negatives score against the whole
55,000-row bank every step). 9,638 s of training in all: about 1.6 hours of wall time with two
processes. (Before the view caches and RKD's Gram form, WRN-16-2 for 30 epochs and 20-epoch
students extrapolated to 41 hours.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..distill import methods
from ..distill.data import load_dataset
from ..distill.loop import TrainingDiverged
from ..distill.models import build_model, count_flops, count_parameters
from ..distill.trainer import resolve_device
from ..files import atomic_write_json
from ..reporting import provenance
from . import setting
from .common import build_config, fit_run, jsonable, split_validation, write_reports
from .league_plan import (
    METHODS,
    SKIPPED,
    STUDENTS,
    Plan,
    cell_row,
    parse_cells,
    select_cells,
)
from .league_report import aggregate, plot, render_markdown
from .league_teacher import TeacherOutputs, planned_source

__all__ = ["LeagueConfig", "config_from", "run", "summary"]

_log = logging.getLogger(__name__)
DIVERGED = "diverged.json"   # beside a cell's checkpoint: why it stopped (the report lists it)


@dataclass
class LeagueConfig:
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    out: str = "runs/league"
    teacher_depth: int = setting(16, "depth of the wide-ResNet teacher (6n + 4)")
    teacher_width: int = setting(1, "widen factor of the wide-ResNet teacher")
    teacher_epochs: int = setting(15, "epochs of the teacher")
    teacher_lr: float = setting(0.1, "SGD learning rate of the teacher (peak of the cosine)")
    teacher_jitter: int = setting(2, "pixels of random shift of the teacher's training images")
    students: tuple[str, ...] = setting(
        STUDENTS, "students: resnet8 (depth 8, one block per stage of --student-width, 2x, "
                  "4x channels), mlp800 (784-800-800-10)", choices=STUDENTS)
    student_width: int = setting(
        8, "channels of resnet8's first stage (8: about a tenth of WRN-16-1's multiply-adds; "
           "16 for a WRN-16-2 or wider teacher)")
    methods: tuple[str, ...] = setting(
        METHODS, "methods, each into every student (the plain student on labels alone is "
                 "always trained)")
    seeds: int = setting(3, "seeds of every cell (the students' initialization and batch "
                            "order; the teacher is one)")
    epochs: int = setting(10, "epochs of every student cell (one schedule for all)")
    student_jitter: int = setting(
        0, "pixels of random shift of the students' images (0: none, the default table)")
    views: int = setting(
        1, "K: with --student-jitter, the teacher's outputs on K shifted views of each image "
           "are cached and every distilled cell replays one of them per epoch (1: the "
           "teacher runs online on fresh shifts)")
    subset: int | None = setting(
        10000, "images of a fixed stratified subset of the training set that resnet8 learns "
               "from (0: all; the MLP always learns from all)", none_if=0)
    full: bool = setting(False, "every student learns from all training images (for a GPU)")
    cells: str = setting(
        "", "train only these cells, then stop (the report is --assemble-only's): 'teacher', "
            "a shard 'i/n', or comma-separated 'student:method:seed' patterns with * "
            "(method 'plain' is the student on labels alone)")
    view_dtype: str = setting(
        "float32", "how the teacher's cached features are stored: float32 (a cell trains "
                   "bit-identically to the online teacher), auto (float16 where its range "
                   "allows: half the disk, a slightly perturbed run), float16",
        choices=("float32", "auto", "float16"))
    view_cache_gb: float = setting(
        8.0, "largest view cache (GiB on disk) a feature method reads; one whose teacher "
             "features would need more runs the teacher online (0: every feature method online)")
    assemble_only: bool = setting(
        False, "build the report from the finished cells under --out, training nothing")
    validation_size: int = 5000
    batch_size: int = 128
    lr: float = setting(0.05, "SGD learning rate of the students (peak of the cosine)")
    optimizer: str = "sgd"
    weight_decay: float = setting(5e-4, "weight decay of every run")
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    fresh: bool = False
    report_dir: str | None = None

    def validate(self) -> None:
        for name in ("teacher_epochs", "teacher_width", "student_width", "seeds", "epochs",
                     "batch_size", "validation_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("teacher_jitter", "student_jitter"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if isinstance(self.views, bool) or not isinstance(self.views, int) or self.views < 1:
            raise ValueError(f"views must be an integer >= 1, got {self.views!r}")
        if self.views > 1 and not self.student_jitter:
            raise ValueError(f"views {self.views} without student_jitter would cache "
                             f"{self.views} identical copies: set --student-jitter too")
        if self.subset is not None and self.subset < 2:
            raise ValueError(f"subset must be >= 2 images (0: all), got {self.subset}")
        if not self.students or any(s not in STUDENTS for s in self.students):
            raise ValueError(f"students must be among {list(STUDENTS)}, got "
                             f"{list(self.students)}")
        known = [m for m in methods.available() if m != "ce"]
        for m in self.methods:
            if m not in known:
                raise ValueError(f"unknown method {m!r}; known: {', '.join(known)}")
        if len(set(self.methods)) != len(self.methods) or len(set(self.students)) != len(
                self.students):
            raise ValueError("name each method and student once")
        if self.assemble_only and self.cells:
            raise ValueError("assemble_only reads every finished cell: drop cells")
        if self.fresh and self.cells:
            raise ValueError("fresh with cells would retrain shared runs: clear --out instead")
        parse_cells(self.cells)
        if not self.view_cache_gb >= 0:
            raise ValueError(f"view_cache_gb must be >= 0, got {self.view_cache_gb}")
        if not 0 <= self.weight_decay < 1:
            raise ValueError(f"weight_decay must lie in [0, 1), got {self.weight_decay}")


def config_from(dataset: str, **overrides) -> LeagueConfig:
    """Class defaults, then the data set's, then yours."""
    defaults = {"digits": {"batch_size": 64, "validation_size": 270, "subset": None}}
    return build_config(LeagueConfig, dataset, defaults.get(dataset, {}), overrides, "league")


def _train_teacher(plan: Plan, cfg: LeagueConfig, log) -> nn.Module:
    model, _ = fit_run(plan.teacher_name, plan.teacher_spec, plan.fit, plan.test,
                       plan.teacher_recipe(), plan.out, val_data=plan.val,
                       model=plan.build(plan.teacher_spec, cfg.seed * 7919 + 1),
                       resume=not cfg.fresh, log=log)
    return model.eval()


def _train_cell(plan: Plan, cell, outputs: TeacherOutputs, log) -> None:
    student, name, seed = cell
    transfer = plan.transfer[student]
    method = plan.method(student, name)
    recipe = plan.student_recipe(seed)
    fit_run(plan.run_name(cell), plan.specs[student], transfer, plan.test, recipe, plan.out,
            model=plan.build(plan.specs[student], seed * 7919 + 2), val_data=plan.val,
            resume=not plan.cfg.fresh, log=log, method=method,
            **outputs.for_cell(student, method, recipe))


def run(cfg: LeagueConfig, log: Callable[[str], None] = _log.info) -> dict:
    cfg.validate()
    t_start = time.perf_counter()
    splits = load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
    if splits.train.x.dim() != 4:
        raise ValueError(f"{cfg.dataset}: the league's CNNs need images (N, C, H, W), got "
                         f"inputs of shape {list(splits.train.x.shape)}")
    fit, val = split_validation(splits.train, cfg.validation_size, cfg.seed + 12345)
    device = resolve_device(cfg.device)
    plan = Plan(cfg, fit, val, splits.test, splits.source, Path(cfg.out), device.type == "cuda")
    plan.out.mkdir(parents=True, exist_ok=True)
    if not cfg.assemble_only:
        teacher_ckpt = plan.out / "runs" / plan.teacher_name / "checkpoint.pt"
        if parse_cells(cfg.cells)[0] in ("shard", "patterns") and cell_row(
                teacher_ckpt, plan.teacher_recipe(), None) is None:
            raise ValueError(f"the teacher is not trained under {plan.out}: run --cells "
                             "teacher first (parallel cells would all train it)")
        outputs = TeacherOutputs(plan, _train_teacher(plan, cfg, log), device, log)
        selected = select_cells(plan.cells, cfg.cells)
        if cfg.cells == "teacher":   # built once here, so parallel cells only read them
            outputs.build_all(cfg.students, lambda s: [
                (plan.method(s, m), plan.student_recipe(seed))
                for seed in plan.seeds[:1] for m in cfg.methods if m not in SKIPPED.get(s, {})])
        diverged = {}
        for i, cell in enumerate(selected, 1):
            name = ":".join(map(str, cell))
            log(f"cell {i}/{len(selected)}: {name}")
            marker = plan.out / "runs" / plan.run_name(cell) / DIVERGED
            try:
                _train_cell(plan, cell, outputs, log)
            except TrainingDiverged as exc:   # one cell's failure is a result, not a crash
                diverged[name] = str(exc)
                atomic_write_json(marker, {"cell": name, "error": str(exc)})
                log(f"cell {name} diverged ({exc}); going on with the others")
                continue
            marker.unlink(missing_ok=True)
        if cfg.cells:
            return {"experiment": "league",
                    "cells_trained": [":".join(map(str, c)) for c in selected
                                      if ":".join(map(str, c)) not in diverged],
                    "cells_diverged": diverged,
                    "wall_seconds": round(time.perf_counter() - t_start, 1)}
    results = _assemble(plan, cfg)
    results["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    write_reports(results, cfg, render_markdown, plot)
    return results


def _assemble(plan: Plan, cfg: LeagueConfig) -> dict:
    teacher_row = cell_row(plan.out / "runs" / plan.teacher_name / "checkpoint.pt",
                           plan.teacher_recipe(), None)
    if teacher_row is None:
        raise ValueError(f"no finished teacher under {plan.out / 'runs' / plan.teacher_name}: "
                         "train it first (without --assemble-only)")
    shape = plan.fit.input_shape
    t_flops = count_flops(build_model(plan.teacher_spec), shape)
    rows: dict[str, dict[str, dict[int, dict]]] = {s: {} for s in cfg.students}
    missing, diverged = [], {}
    for cell in plan.cells:
        s, m, seed = cell
        row = cell_row(plan.out / "runs" / plan.run_name(cell) / "checkpoint.pt",
                       plan.student_recipe(seed), plan.method(s, m))
        marker = plan.out / "runs" / plan.run_name(cell) / DIVERGED
        if row is None and marker.exists():
            diverged[":".join(map(str, cell))] = json.loads(marker.read_text())["error"]
        elif row is None:
            missing.append(":".join(map(str, cell)))
        else:
            rows[s].setdefault(m, {})[seed] = row
    students = {}
    for s in cfg.students:
        model = build_model(plan.specs[s])
        flops = count_flops(model, shape)
        outputs = {}
        for m in cfg.methods:
            if m in SKIPPED.get(s, {}):
                continue
            method = plan.method(s, m)
            how, why = planned_source(plan, s, method, plan.student_recipe(cfg.seed))
            done = sorted({r["teacher_outputs"] for r in rows[s].get(m, {}).values()})
            how = how if not done else " + ".join(done)   # as the finished cells trained
            outputs[m] = {"teacher_outputs": how, "parameters": method.describe(),
                          **({"teacher_outputs_why": why} if "online" in how else {})}
        students[s] = {"spec": plan.specs[s], "flops": flops,
                       "flops_vs_teacher": flops / t_flops,
                       "parameters": count_parameters(model),
                       "transfer_size": len(plan.transfer[s]),
                       "skipped": {m: r for m, r in SKIPPED.get(s, {}).items()
                                   if m in cfg.methods},
                       **aggregate(rows[s], teacher_row["test_accuracy"], list(cfg.methods),
                                   outputs)}
    compute = teacher_row["train_seconds"] + sum(
        r["train_seconds"] for per in rows.values() for seeds in per.values()
        for r in seeds.values())
    return {
        "experiment": "league", "dataset": cfg.dataset, "data_source": plan.source,
        "train_size": len(plan.fit), "validation_size": len(plan.val),
        "test_size": len(plan.test),
        "teacher": {"name": f"WRN-{cfg.teacher_depth}-{cfg.teacher_width}",
                    "spec": plan.teacher_spec, "accuracy": teacher_row["test_accuracy"],
                    "val_accuracy": teacher_row["val_accuracy"], "flops": t_flops,
                    "parameters": count_parameters(build_model(plan.teacher_spec)),
                    "epochs": cfg.teacher_epochs, "jitter": cfg.teacher_jitter,
                    "train_seconds": teacher_row["train_seconds"],
                    "test_accuracy_curve": teacher_row["test_accuracy_curve"]},
        "seeds": plan.seeds,
        "schedule": {**plan.student_recipe(cfg.seed).config.to_dict(),
                     "augmentation": ({"jitter": cfg.student_jitter, "views": cfg.views}
                                      if cfg.student_jitter else None)},
        "students": students,
        "missing_cells": missing,
        "diverged_cells": diverged,
        "reported_epoch": "last, and the epoch of best validation accuracy",
        "config": jsonable(dataclasses.asdict(cfg)),
        "compute_seconds": round(compute, 1),
        **provenance(),
    }


def summary(r: dict, cfg: LeagueConfig) -> list[str]:
    """The lines `kdistill reproduce league` prints at the end."""
    if "cells_trained" in r:
        return [f"trained {len(r['cells_trained'])} cell(s) in {r['wall_seconds']:.0f} s"
                + (f", {len(r['cells_diverged'])} diverged ({', '.join(r['cells_diverged'])})"
                   if r["cells_diverged"] else "")
                + f"; build the report with --assemble-only --out {cfg.out}"]
    lines = [f"teacher {r['teacher']['name']}: {100 * r['teacher']['accuracy']:.2f}%"]
    for s, st in r["students"].items():
        best = max(((m, e) for m, e in st["methods"].items()
                    if e["accuracy_mean"] is not None),
                   key=lambda kv: kv[1]["accuracy_mean"], default=(None, None))
        plain = st["plain"]["accuracy_mean"]
        lines.append(f"{s}: plain {'n/a' if plain is None else f'{100 * plain:.2f}%'}"
                     + (f", best {best[0]} {100 * best[1]['accuracy_mean']:.2f}%"
                        if best[0] else ""))
    if r["missing_cells"]:
        lines.append(f"{len(r['missing_cells'])} cell(s) not finished yet")
    if r["diverged_cells"]:
        lines.append(f"{len(r['diverged_cells'])} cell(s) diverged: "
                     f"{', '.join(r['diverged_cells'])}")
    lines.append(f"report: {Path(cfg.out) / 'results.md'} (+ .json, .png); wall time "
                 f"{r['wall_seconds']:.0f} s")
    return lines
