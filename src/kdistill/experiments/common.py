"""What every reproduction shares: one resumable training run -> a result row, validation
splits, inference timing, and atomic JSON + Markdown + PNG reports.

Each run checkpoints under `<out>/runs/<name>/`; rerunning an interrupted reproduction resumes
every run where it stopped, and a run folder trained on other soft targets is refused, never
silently continued (the soft targets' fingerprint is part of the run's identity).
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
from torch import nn

from ..distill import methods
from ..distill.augment import Jitter
from ..distill.data import ArrayDataset
from ..distill.methods import Method
from ..distill.models import build_model, count_parameters
from ..distill.teachers import fingerprint_module, fingerprint_tensor
from ..distill.trainer import TrainConfig, predict_logits, train
from ..distill.view_cache import ViewCache
from ..files import atomic_write_json, atomic_write_text
from ..reporting import jsonable, save_figure

__all__ = ["fit_run", "split_validation", "ms_per_1000", "jsonable", "write_outputs",
           "write_reports", "over_seeds_results", "mlp_spec", "provenance_lines", "build_config",
           "train_config", "Recipe"]

_log = logging.getLogger(__name__)


def mlp_spec(data: ArrayDataset, hidden: list[int] | tuple[int, ...],
             num_classes: int | None = None, **fields) -> dict:
    """A model spec for an MLP on `data`'s inputs (build_model's registry format)."""
    return {"name": "mlp", "hidden": list(hidden), "in_features": data.in_features,
            "num_classes": num_classes or data.num_classes, **fields}


def build_config(cls, dataset: str, dataset_defaults: dict, overrides: dict, what: str):
    """An experiment config: class defaults, then the data set's, then yours. A setting you do
    not pass keeps its default; one you pass is used as given, None included (so a field such
    as ``report_dir`` or ``student_epochs`` can be set back to None over a data set's default).
    Unknown settings are one error."""
    fields = {f.name for f in dataclasses.fields(cls)}
    merged = {"dataset": dataset, **dataset_defaults, **overrides}
    unknown = set(merged) - fields
    if unknown:
        raise ValueError(f"unknown {what} settings: {sorted(unknown)}")
    return cls(**merged)


@dataclass
class Recipe:
    """What one reproduction run trains with: how to optimize (`config`), and what to learn
    from -- the KD method's temperature and weights when there is a teacher (cross-entropy on
    the labels when there is none) -- and the online pixel jitter, if any."""

    config: TrainConfig
    temperature: float = 1.0
    soft_weight: float = 1.0
    hard_weight: float = 1.0
    loss: str = "kd"            # kd | logit_matching
    jitter: int = 0

    def method(self, distilling: bool) -> Method:
        if not distilling:
            return methods.get("ce")
        if self.loss == "logit_matching":
            return methods.get("logit_matching", soft_weight=self.soft_weight,
                               hard_weight=self.hard_weight)
        return methods.get("kd", temperature=self.temperature, soft_weight=self.soft_weight,
                           hard_weight=self.hard_weight)

    def augment(self) -> Jitter | None:
        return Jitter(self.jitter) if self.jitter else None


_RECIPE_FIELDS = ("temperature", "soft_weight", "hard_weight", "loss", "jitter")


def train_config(cfg, epochs: int, **overrides) -> Recipe:
    """The recipe every reproduction uses: the experiment config's batch size, optimizer, lr,
    seed, device and progress, a cosine schedule, and `overrides` on top (TrainConfig fields,
    or the method's temperature / soft_weight / hard_weight / loss and the jitter)."""
    recipe = {k: overrides.pop(k) for k in _RECIPE_FIELDS if k in overrides}
    fields = {"batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr,
              "schedule": "cosine", "seed": cfg.seed, "device": cfg.device,
              "progress": cfg.progress}
    return Recipe(TrainConfig(epochs=epochs, **{**fields, **overrides}), **recipe)


def fit_run(name: str, spec: dict, data: ArrayDataset, test_data: ArrayDataset | None,
            recipe: Recipe, out: Path, *, teacher_logits: torch.Tensor | None = None,
            teacher: nn.Module | None = None, init_seed: int = 0, model: nn.Module | None = None,
            val_data: ArrayDataset | None = None,
            eval_extra: dict[str, ArrayDataset] | None = None, resume: bool = True,
            extra: dict | None = None, log: Callable[[str], None] = _log.info,
            method: Method | None = None,
            teacher_views: ViewCache | None = None) -> tuple[nn.Module, dict]:
    """Train one run (resuming its checkpoint) and return (model, row).

    The model is built from `spec` with torch seed `init_seed`, unless `model` is given (e.g. a
    specialist initialized from a generalist; its origin then belongs in `extra`). `method`
    replaces the recipe's (kd / logit_matching / ce) with any registry method.
    `teacher_views` (view_cache.cached_teacher_views) replaces the online teacher for feature
    methods; its fingerprint (teacher, data, views, layers, every array's checksum) is part of
    the run's identity, so a checkpoint made from other views is refused. `test_data`
    is reported as `test_*`; `val_data`, the set settings are chosen on, as `val_*`. The row
    has the last epoch's metrics, `parameters`, `train_seconds` (summed over epochs, so it
    stays right across resumed invocations) and per-epoch curves.
    """
    ident = dict(extra or {})
    if teacher_logits is not None:
        ident["teacher_logits"] = fingerprint_tensor(torch.as_tensor(teacher_logits))
    if teacher is not None:  # an online teacher (e.g. on jittered inputs)
        ident["teacher"] = fingerprint_module(teacher)
    if teacher_views is not None:
        ident["teacher_views"] = teacher_views.fingerprint
    if model is None:
        torch.manual_seed(init_seed)
        model = build_model(spec)
    log(f"[{name}] {count_parameters(model):,} parameters, {recipe.config.epochs} epochs, "
        f"{len(data):,} examples")
    sets = dict(eval_extra or {})
    if test_data is not None:
        sets = {"test": test_data, **sets}
    distilling = any(t is not None for t in (teacher, teacher_logits, teacher_views))
    result = train(model, data, recipe.config, method=method or recipe.method(distilling),
                   teacher=teacher, teacher_logits=teacher_logits, teacher_views=teacher_views,
                   augment=None if teacher_views is not None else recipe.augment(),  # replayed
                   val_data=val_data, eval_sets=sets, out_dir=out / "runs" / name,
                   resume=resume, model_spec=spec, extra=ident,
                   log=lambda s: log(f"[{name}] {s}"))
    row = dict(result.final)
    row["parameters"] = count_parameters(result.model)
    row["train_seconds"] = round(sum(r["seconds"] for r in result.history), 1)
    row["curve"] = [r.get("test_errors") for r in result.history]
    if val_data is not None:
        row["val_curve"] = [r.get("val_errors") for r in result.history]
    for prefix in ("test", "val", *(eval_extra or {})):
        key = f"{prefix}_accuracy"
        if key in result.history[-1]:
            row[f"{prefix}_accuracy_curve"] = [r[key] for r in result.history]
    return result.model, row


def over_seeds_results(runs: list[dict], seeds: list[int], cfg, t_start: float) -> dict:
    """A multi-seed experiment's result dict: the first seed's run (its curves and single-seed
    keys), then the seeds, the config, this invocation's wall time and the training time summed
    over every seed's runs."""
    results = dict(runs[0])
    results.update(seeds=seeds, config=jsonable(dataclasses.asdict(cfg)),
                   wall_seconds=round(time.perf_counter() - t_start, 1),
                   compute_seconds=round(sum(r["compute_seconds"] for r in runs), 1))
    return results


def split_validation(data: ArrayDataset, size: int, seed: int) -> tuple[ArrayDataset,
                                                                         ArrayDataset]:
    """(fit, validation): a random `size` examples held out of `data` for choosing settings, so
    that the test set never chooses anything."""
    if not 0 < size < len(data):
        raise ValueError(f"validation size must be between 1 and {len(data) - 1}, got {size}")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return (data.subset(perm[size:], f"{data.name}-minus-validation"),
            data.subset(perm[:size], "validation"))


def ms_per_1000(models: nn.Module | list[nn.Module], x: torch.Tensor, repeats: int = 5,
                device: str | torch.device = "cpu", batch_size: int = 1000) -> float:
    """Milliseconds to predict 1,000 examples with all `models` (an ensemble runs each member),
    the median of `repeats` passes over `x` after one warm-up pass."""
    models = models if isinstance(models, list) else [models]
    for m in models:
        m.to(device).eval()

    def once() -> None:
        for m in models:
            predict_logits(m, x, batch_size=batch_size, device=device)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    once()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times)) * 1000.0 / len(x)


def write_outputs(results: dict, out: Path, stem: str, markdown: Callable[[dict, str], str],
                  figure: Callable[[dict], object]) -> dict[str, Path]:
    """<out>/<stem>.json, .md (markdown(results, png_name)) and .png (figure(results)), each
    written atomically."""
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
    atomic_write_json(paths["json"], jsonable(results))
    atomic_write_text(paths["md"], markdown(results, paths["png"].name))
    save_figure(figure(results), paths["png"])
    return paths


def write_reports(results: dict, cfg, markdown: Callable[[dict, str], str],
                  figure: Callable[[dict], object]) -> None:
    """An experiment's reports (see :func:`write_outputs`): `<cfg.out>/results.*`, and
    `<cfg.report_dir>/<data set's file stem>.*` when `cfg.report_dir` is set."""
    write_outputs(results, Path(cfg.out), "results", markdown, figure)
    if cfg.report_dir:
        write_outputs(results, Path(cfg.report_dir), Path(cfg.dataset).stem, markdown, figure)


def provenance_lines(r: dict) -> list[str]:
    """The Markdown 'How this was made' section every report ends with."""
    return ["## How this was made\n",
            f"- command: `{r['command']}`",
            f"- hardware: {r['hardware']}",
            f"- torch {r['torch']}, python {r['python']}",
            f"- seeds: {r['seeds']}; every figure is the last epoch (no early stopping, nothing "
            "chosen on the test set)",
            "- a run repeated with the same seed on the same CPU is bit-identical (resumed or "
            "not); on another processor a rerun of the digits reproduction differed by up to "
            "one test error per cell (floating-point reduction order)",
            f"- wall time of this invocation: {r['wall_seconds']:.0f} s; training time summed "
            f"over all runs, including earlier resumed invocations: {r['compute_seconds']:.0f} s",
            f"- data: {r['data_source']}\n"]
