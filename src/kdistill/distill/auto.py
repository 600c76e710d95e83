"""Automatic KD temperature and weights: a budgeted successive-halving search on a validation
split carved out of the training data, then one final run with the chosen setting.

    result = auto_distill(lambda: MLP(64, 10, (800, 800)), train_data, TrainConfig(epochs=30),
                          teacher_logits=logits, eval_sets={"test": test}, out_dir="runs/auto")
    result.choice, result.reason, result.record()["rungs"]

The search (never the test set: `eval_sets` reach the final run alone):
  1. Validation: `val_size` examples (a fraction or a count) held out of `train_data`,
     stratified by label (each class in proportion, seeded), the rest is the fit split.
  2. Rungs: every candidate of the grid (default T in {1, 2, 4, 8, 20} x hard weight in
     {0, 0.1, 0.5}, soft weight 1) trains on the fit split; the best third (rounded up) go on
     to the next rung, which gives each survivor 3x the training (epochs x examples): 15, 5, 2.
     Each rung's run is a complete run from the same initial weights with its own full lr
     schedule (a ranking of finished short runs, not of snapshots mid-schedule); a rung whose
     share is under one epoch of the fit split trains one epoch on a seeded subset of it.
  3. Choice: at the last rung, the highest validation accuracy; ties go to the lower
     validation NLL, then to the earlier grid position (in the default grid: smaller T, then
     smaller hard weight). The same rule ranks every rung.
  4. Final: the chosen setting trained on the whole `train_data` with `config` -- the "one run"
     the cost is relative to.
Cost: the search's examples x epochs, counted from what each run trained, is at most `budget`
x one run (config.epochs x len(train_data)); the final run is NOT inside the budget: the total
is at most (budget + 1) x one run. Both are in the record.

Resumable and deterministic: every candidate run has its own folder under
`out_dir/search/rung<i>/<candidate>/` (checkpoint every epoch; a finished one is not retrained),
every run starts from `torch.manual_seed(seed)` then `student_factory()`, the splits come from
`seed`, and `out_dir/auto.json` holds the record after each rung and at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_write_json
from . import methods
from .augment import Augment
from .data import ArrayDataset
from .evaluation import evaluate
from .labels import labelled_mask
from .runtime import dist_info, resolve_device
from .teachers import Teacher
from .trainer import TrainConfig, TrainResult, train

__all__ = ["auto_distill", "AutoResult", "Candidate", "DEFAULT_GRID", "plan_rungs",
           "stratified_split"]

logger = logging.getLogger("kdistill.auto")
ETA = 3  # keep the best 1/ETA of each rung; each survivor gets ETA x the training next rung
DEFAULT_GRID = tuple((t, h) for t in (1.0, 2.0, 4.0, 8.0, 20.0) for h in (0.0, 0.1, 0.5))
TIE_RULE = ("highest validation accuracy; ties: lower validation NLL, then the earlier grid "
            "position")


@dataclass(frozen=True)
class Candidate:
    temperature: float
    hard_weight: float
    soft_weight: float = 1.0

    @property
    def key(self) -> str:
        return f"T{self.temperature:g}-hard{self.hard_weight:g}-soft{self.soft_weight:g}"

    def method(self):
        return methods.get("kd", temperature=self.temperature, soft_weight=self.soft_weight,
                           hard_weight=self.hard_weight)


@dataclass(frozen=True)
class RungPlan:
    candidates: int
    epochs: int
    examples: int

    @property
    def cost(self) -> int:
        return self.candidates * self.epochs * self.examples


@dataclass
class AutoResult:
    choice: Candidate
    final: TrainResult
    reason: str
    rungs: list[dict]
    search_cost: int          # examples x epochs over every search run
    one_run_cost: int         # config.epochs x len(train_data)
    budget: float
    val_size: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def record(self) -> dict:
        """The run's record: choice, reason, the candidate table of every rung, the cost."""
        return _record(self.choice, self.reason, self.rungs, self.search_cost,
                       self.one_run_cost, self.budget, self.val_size, self.final,
                       self.seconds)


def stratified_split(data: ArrayDataset, size: int, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, validation indices): `size` examples held out, each class in proportion
    (random when `data` has no labels), chosen by a permutation seeded with `seed`. A partially
    labelled set holds out labelled examples only (validation is evaluated); every unlabelled
    one stays in the fit split."""
    n = len(data)
    if not 0 < size < n:
        raise ValueError(f"validation size must be between 1 and {n - 1}, got {size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if data.y is None:
        return perm[size:], perm[:size]
    if data.partial_labels and data.n_labelled < n:
        if size > data.n_labelled:
            raise ValueError(f"validation size {size} exceeds the {data.n_labelled} labelled "
                             f"examples of {data.name} (validation needs labels)")
        pool = perm[labelled_mask(data.y[perm])]
        _, val = _stratified(data.y, pool, size, data.num_classes)
        fit = torch.ones(n, dtype=torch.bool)
        fit[val] = False
        return fit.nonzero().flatten(), val
    return _stratified(data.y, perm, size, data.num_classes)


def _stratified(labels: torch.Tensor, perm: torch.Tensor, size: int, num_classes: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the indices `perm` (in this order) into (rest, `size` held out), each class in
    proportion; both sorted."""
    n = len(perm)
    y = labels[perm].long()
    counts = torch.bincount(y, minlength=num_classes).double()
    # An example's place within its class (0..1): taking the `size` smallest places takes each
    # class in proportion to its count.
    order = torch.argsort(y, stable=True)
    place = torch.empty(n, dtype=torch.double)
    starts = torch.cumsum(counts, 0) - counts
    ranks = torch.arange(n, dtype=torch.double) - starts[y[order]]
    place[order] = (ranks + 0.5) / counts[y[order]]
    chosen = torch.argsort(place, stable=True)
    return perm[chosen[size:]].sort().values, perm[chosen[:size]].sort().values


def plan_rungs(n_candidates: int, n_fit: int, epochs: int, n_train: int, budget: float,
               eta: int = ETA) -> list[RungPlan]:
    """Candidates, epochs and examples of each rung so that the whole search costs at most
    `budget` x (epochs x n_train) example-epochs; the top rung trains at most a full run on
    the fit split. Rung i's share is eta^-(last - i) of the top rung's."""
    sizes = [n_candidates]
    while sizes[-1] > 2:
        sizes.append(max(2, math.ceil(sizes[-1] / eta)))
    if n_candidates <= 1:
        return []
    weights = [eta ** -(len(sizes) - 1 - i) for i in range(len(sizes))]
    top = min(budget * epochs * n_train / sum(n * w for n, w in zip(sizes, weights)),
              float(epochs * n_fit))
    plan = []
    for n, w in zip(sizes, weights):
        share = top * w  # example-epochs per candidate
        e = max(1, int(share // n_fit))
        m = min(n_fit, int(share // e))
        if m < 1:
            raise ValueError(f"a budget of {budget} x one run leaves rung {len(plan)} under "
                             "one example per candidate: raise the budget or the epochs")
        plan.append(RungPlan(n, e, m))
    return plan


def _rank_key(row: dict, position: int) -> tuple:
    return (-row["val_accuracy"], row["val_nll"], position)


def auto_distill(
    student_factory: Callable[[], nn.Module],
    train_data: ArrayDataset,
    config: TrainConfig | None = None,
    *,
    teacher_logits: torch.Tensor | None = None,
    teacher: Teacher | None = None,
    grid: Sequence[tuple[float, ...]] = DEFAULT_GRID,
    val_size: float | int = 0.2,
    budget: float = 3.0,
    seed: int = 0,
    augment: Augment | None = None,
    eval_sets: dict[str, ArrayDataset] | None = None,
    out_dir: str | os.PathLike | None = None,
    final_dir: str | os.PathLike | None = None,
    resume: bool = True,
    log: Callable[[str], None] | None = None,
) -> AutoResult:
    """Choose KD's temperature and hard weight on a validation split of `train_data` by a
    budgeted successive-halving search, then train the final student with the choice on all
    of `train_data` (see the module docstring). `grid`: (temperature, hard_weight[,
    soft_weight]) tuples. `eval_sets` (e.g. the test set) are evaluated in the final run only.
    The final run checkpoints in `final_dir` (default `out_dir/final`); `resume=False` starts
    every run over."""
    cfg = config or TrainConfig()
    cfg.validate()
    log = log or logger.info
    if not isinstance(train_data, ArrayDataset):
        raise ValueError("auto_distill needs an in-memory ArrayDataset (it carves a "
                         "validation split out of it)")
    if (teacher is None) == (teacher_logits is None):
        raise ValueError("pass exactly one of teacher_logits or teacher")
    if dist_info()[1] > 1:
        raise ValueError("auto_distill runs in one process (not under torchrun)")
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a finite number > 0, got {budget!r}")
    candidates = [Candidate(*map(float, g)) for g in grid]
    if not candidates or len(set(candidates)) != len(candidates):
        raise ValueError("grid must hold at least one setting and no repeats")
    for c in candidates:
        c.method()  # every setting checked before anything trains
    n = len(train_data)
    n_val = round(val_size * n) if isinstance(val_size, float) else int(val_size)
    fit_idx, val_idx = stratified_split(train_data, n_val, seed)
    fit, val = train_data.subset(fit_idx, "auto-fit"), train_data.subset(val_idx, "auto-val")
    logits = None if teacher_logits is None else torch.as_tensor(teacher_logits)
    if logits is not None and len(logits) != n:
        raise ValueError(f"teacher_logits has {len(logits)} rows for {n} examples")
    plan = plan_rungs(len(candidates), len(fit), cfg.epochs, n, budget)
    out = Path(out_dir) if out_dir is not None else None
    order = torch.randperm(len(fit), generator=torch.Generator().manual_seed(seed + 1))
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    alive = list(range(len(candidates)))
    rungs: list[dict] = []
    search_cost = 0

    def run(c: Candidate, data, data_logits, run_cfg, folder, sets, what) -> TrainResult:
        torch.manual_seed(seed)
        return train(student_factory(), data, run_cfg, method=c.method(), teacher=teacher,
                     teacher_logits=data_logits, augment=augment, eval_sets=sets,
                     out_dir=folder, resume=resume, extra={"auto": what},
                     log=lambda s: log(f"[{what} {c.key}] {s}"))

    for i, rp in enumerate(plan):
        sub = order[:rp.examples]
        data = fit if rp.examples == len(fit) else fit.subset(sub, f"auto-fit-{rp.examples}")
        data_logits = None if logits is None else (
            logits[fit_idx] if rp.examples == len(fit) else logits[fit_idx[sub]])
        run_cfg = dataclasses.replace(cfg, epochs=rp.epochs, seed=seed)
        rows = []
        for j in alive:
            c = candidates[j]
            folder = None if out is None else out / "search" / f"rung{i}" / c.key
            res = run(c, data, data_logits, run_cfg, folder, {}, f"rung{i}")
            search_cost += len(res.history) * len(data)
            # Scored once, after the run's last epoch (a finished run resumed scores the same).
            score = evaluate(res.model, val, cfg.eval_batch_size, device)
            rows.append({"temperature": c.temperature, "hard_weight": c.hard_weight,
                         "soft_weight": c.soft_weight, "grid_position": j,
                         "val_accuracy": score["accuracy"], "val_nll": score["nll"]})
        rows.sort(key=lambda r: _rank_key(r, r["grid_position"]))
        keep = 1 if i == len(plan) - 1 else plan[i + 1].candidates
        for k, r in enumerate(rows):
            r["rank"], r["kept"] = k + 1, k < keep
        alive = sorted(r["grid_position"] for r in rows[:keep])
        rungs.append({"rung": i, "epochs": rp.epochs, "examples": rp.examples,
                      "cost": rp.epochs * rp.examples * len(rows), "candidates": rows})
        log(f"rung {i}: {len(rows)} candidates x {rp.epochs} epochs x {rp.examples} examples;"
            f" kept {', '.join(candidates[j].key for j in alive)}")
        if out is not None:
            atomic_write_json(out / "auto.json", _record(
                None, None, rungs, search_cost, cfg.epochs * n, budget, n_val, None,
                time.perf_counter() - t0))
    choice = candidates[alive[0]]
    reason = _reason(choice, rungs, len(candidates))
    log(f"chose {choice.key}: {reason}")
    final = run(choice, train_data, logits, cfg,
                Path(final_dir) if final_dir is not None else (out / "final" if out else None),
                eval_sets or {}, "final")
    result = AutoResult(choice, final, reason, rungs, search_cost, cfg.epochs * n, budget,
                        n_val, time.perf_counter() - t0)
    if out is not None:
        atomic_write_json(out / "auto.json", result.record())
    return result


def _reason(choice: Candidate, rungs: list[dict], n_grid: int) -> str:
    if not rungs:
        return "the grid holds one setting"
    last = rungs[-1]
    rows = last["candidates"]
    won = rows[0]
    text = (f"highest validation accuracy {won['val_accuracy']:.4f} at the last rung "
            f"(rung {last['rung']}: {last['epochs']} epochs on {last['examples']} fit "
            f"examples) among the {len(rows)} survivors of {n_grid} settings")
    if len(rows) > 1:
        second = rows[1]
        if second["val_accuracy"] == won["val_accuracy"]:
            text += (f"; tied on accuracy with T={second['temperature']:g} hard="
                     f"{second['hard_weight']:g}, broken by")
            text += (" lower validation NLL" if second["val_nll"] != won["val_nll"]
                     else " the earlier grid position")
        else:
            text += (f"; runner-up T={second['temperature']:g} hard={second['hard_weight']:g}"
                     f" at {second['val_accuracy']:.4f}")
    return text


def _record(choice, reason, rungs, search_cost, one_run, budget, val_size, final,
            seconds) -> dict:
    rec = {
        "choice": None if choice is None else dataclasses.asdict(choice),
        "reason": reason, "tie_rule": TIE_RULE, "budget": budget,
        "budget_counts": "the search only; the final run is the one run the cost is "
                         "relative to",
        "search_cost": search_cost, "one_run_cost": one_run,
        "search_cost_over_one_run": search_cost / one_run,
        # the final run trains config.epochs over all of train_data: exactly one run
        "total_cost_over_one_run": None if final is None else (search_cost + one_run) / one_run,
        "val_size": val_size, "seconds": round(seconds, 2), "rungs": rungs,
    }
    if final is not None:
        rec["final"] = final.final
    return rec
