"""Automatic KD temperature and weights: a budgeted three-stage search on a validation split
carved out of the training data, then one final run with the chosen setting.

    result = auto_distill(lambda: MLP(64, 10, (800, 800)), train_data, TrainConfig(epochs=30),
                          teacher_logits=logits, eval_sets={"test": test}, out_dir="runs/auto")
    result.choice, result.reason, result.record()["stages"]

The search (never the test set: `eval_sets` reach the final run alone):
  1. Validation: `val_size` examples (a fraction or a count) held out of `train_data`,
     stratified by label (each class in proportion, seeded), the rest is the fit split.
  2. "temperature": one setting per temperature of the grid (default T in {1, 2, 4, 8, 20}),
     at its middle hard weight (default 0.1), trains a short share on the fit split; the best
     third of the temperatures (rounded up: 2 of 5) go on.
  3. "temperature, longer": those settings again on the long share (3x the short); the best
     temperature wins.
  4. "hard weight": every other grid setting at that temperature (default hard weight in
     {0, 0.5}, soft weight 1) on the long share, beside the winner's run of stage 3; the best
     is the choice.
  Every stage ranks by Breiman's one-standard-error rule (TIE_RULE): of the settings whose
  validation accuracy is within one binomial standard error of the best, the earliest in the
  grid (in the default grid: smaller T, then smaller hard weight) wins; on 270 validation
  digits one SE is 2-3 images, the size of most differences between settings. Each run is a
  complete run from the same initial weights with its own lr schedule.
  Default cost: 5 short + 4 long runs = 17 short shares = `budget`: the short share is 3/17 of
  one run, the long 9/17. Why not successive halving over all 15 settings: its first rung gives
  each 1/16 of a run, and a small student on a small set (a 30-unit net on 1,078 digits: 17
  optimizer steps) is still at chance there, so the ranking it keeps is noise. The temperature
  moves accuracy far more than the hard weight, so temperatures are ranked first, 3x longer
  than that rung; and the last decisions are made on runs half as long as a full one, because
  short runs favour high temperatures that lose at the end (an 800-800 digits student: a
  single stage of 1/3-run runs chose T = 4-8 where T = 1 wins the full grid).
  5. Final: the chosen setting trained on the whole `train_data` with `config` -- the "one run"
     the cost is relative to.
Cost: the search's examples x epochs, counted from what each run trained, is at most `budget`
x one run (config.epochs x len(train_data)); the final run is NOT inside the budget: the total
is at most (budget + 1) x one run. Both are in the record.

Resumable and deterministic: every search run has its own folder under
`out_dir/search/e<epochs>-n<examples>/<setting>/` (checkpoint every epoch; a finished one is not
retrained), every run starts from `torch.manual_seed(seed)` then `student_factory()`, the
splits come from `seed`, and `out_dir/auto.json` holds the record after each stage and at the
end.
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

__all__ = ["auto_distill", "AutoResult", "Candidate", "DEFAULT_GRID", "plan_shares",
           "stratified_split"]

logger = logging.getLogger("kdistill.auto")
ETA = 3  # stage 1 keeps the best 1/ETA of the temperatures (rounded up)
DEFAULT_GRID = tuple((t, h) for t in (1.0, 2.0, 4.0, 8.0, 20.0) for h in (0.0, 0.1, 0.5))
TIE_RULE = ("one standard error: the settings whose validation accuracy is within one binomial "
            "standard error of the best (sqrt(p (1 - p) / n) at the best p) rank first, in grid "
            "order (smaller T, then smaller hard weight); the rest follow by validation "
            "accuracy, then lower validation NLL, then grid position")


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
class Share:
    """What every search run trains: `epochs` passes over `examples` fit examples."""
    epochs: int
    examples: int

    @property
    def cost(self) -> int:
        return self.epochs * self.examples


@dataclass
class AutoResult:
    choice: Candidate
    final: TrainResult
    reason: str
    stages: list[dict]
    search_cost: int          # examples x epochs over every search run
    one_run_cost: int         # config.epochs x len(train_data)
    budget: float
    val_size: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def record(self) -> dict:
        """The run's record: choice, reason, the candidate table of every stage, the cost."""
        return _record(self.choice, self.reason, self.stages, self.search_cost,
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


def stage_positions(candidates: Sequence[Candidate]
                    ) -> tuple[list[int], Callable[[list[float]], list[int]]]:
    """Grid positions of the stages: (one setting per temperature, its middle hard weight (the
    default grid: 0.1); a function from temperatures to every setting at them)."""
    by_t: dict[float, list[int]] = {}
    for j, c in enumerate(candidates):
        by_t.setdefault(c.temperature, []).append(j)
    first = []
    for js in by_t.values():
        ordered = sorted(js, key=lambda j: (candidates[j].hard_weight, candidates[j].soft_weight))
        first.append(ordered[(len(ordered) - 1) // 2])

    def second(kept: list[float]) -> list[int]:
        return sorted(j for t in kept for j in by_t[t])
    return first, second


def keep_temperatures(n_temperatures: int, eta: int = ETA) -> int:
    return max(1, math.ceil(n_temperatures / eta))


def plan_shares(candidates: Sequence[Candidate], n_fit: int, epochs: int, n_train: int,
                budget: float, eta: int = ETA) -> tuple[Share, Share]:
    """(short, long) shares of the search runs so that the three stages together cost at most
    `budget` x (epochs x n_train) example-epochs whichever temperatures win: every temperature
    on the short share, then the kept ones and the other hard weights of the winner on the long
    one (`eta` x the short). The long share is at most a full run on the fit split; a share
    under one epoch of the fit split is one epoch on a seeded subset."""
    first, second = stage_positions(candidates)
    extra = max(len(second([candidates[j].temperature])) - 1 for j in first)
    if len(first) > 1:
        # long runs: the kept temperatures' settings (with one kept, its run for stage 3),
        # then the winner's other settings
        units = len(first) + eta * (keep_temperatures(len(first), eta) + extra)
    else:
        units = eta * len(candidates)
    long = min(eta * budget * epochs * n_train / units, float(epochs * n_fit))
    shares = []
    for share in (long / eta, long):
        e = max(1, int(share // n_fit))
        m = min(n_fit, int(share // e))
        if m < 1:
            raise ValueError(f"a budget of {budget} x one run leaves the search runs under "
                             "one example each: raise the budget or the epochs")
        shares.append(Share(e, m))
    return shares[0], shares[1]


def rank_rows(rows: list[dict], n_val: int) -> list[dict]:
    """`rows` in TIE_RULE's order. Breiman's one-standard-error rule: differences a validation
    set of n_val examples cannot tell apart go to the setting earlier in the grid, the one
    closer to the teacher's own probabilities (the default grid: T = 1), instead of to noise;
    each row gets `within_one_se`."""
    best = max(r["val_accuracy"] for r in rows)
    se = max(math.sqrt(best * (1 - best) / n_val), 1 / n_val)
    for r in rows:
        r["within_one_se"] = r["val_accuracy"] >= best - se - 1e-12
    return sorted(rows, key=lambda r: (0, r["grid_position"]) if r["within_one_se"] else (
        1, -r["val_accuracy"], r["val_nll"], r["grid_position"]))


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
    budgeted three-stage search, then train the final student with the choice on all
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
    short, long = plan_shares(candidates, len(fit), cfg.epochs, n, budget)
    out = Path(out_dir) if out_dir is not None else None
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    order = torch.randperm(len(fit), generator=torch.Generator().manual_seed(seed + 1))
    scored: dict[tuple[int, Share], dict] = {}
    stages: list[dict] = []
    search_cost = 0

    def run(c: Candidate, data, data_logits, run_cfg, folder, sets, what) -> TrainResult:
        torch.manual_seed(seed)
        return train(student_factory(), data, run_cfg, method=c.method(), teacher=teacher,
                     teacher_logits=data_logits, augment=augment, eval_sets=sets,
                     out_dir=folder, resume=resume, extra={"auto": what},
                     log=lambda s: log(f"[{what} {c.key}] {s}"))

    def score(j: int, share: Share, what: str) -> dict:
        """Train setting j on `share` (once: a later stage reuses the run) and score it."""
        nonlocal search_cost
        if (j, share) not in scored:
            c = candidates[j]
            # The whole fit split, or (a share under one epoch) a seeded subset of it.
            sub = None if share.examples == len(fit) else order[:share.examples]
            data = fit if sub is None else fit.subset(sub, f"auto-fit-{share.examples}")
            data_logits = None if logits is None else (
                logits[fit_idx] if sub is None else logits[fit_idx[sub]])
            folder = (None if out is None else
                      out / "search" / f"e{share.epochs}-n{share.examples}" / c.key)
            res = run(c, data, data_logits, dataclasses.replace(cfg, epochs=share.epochs,
                                                                seed=seed), folder, {}, what)
            search_cost += len(res.history) * len(data)
            # Scored once, after the run's last epoch (a finished run resumed scores the same).
            sc = evaluate(res.model, val, cfg.eval_batch_size, device)
            scored[j, share] = {"temperature": c.temperature, "hard_weight": c.hard_weight,
                                "soft_weight": c.soft_weight, "grid_position": j,
                                "val_accuracy": sc["accuracy"], "val_nll": sc["nll"],
                                "trained_in": what}
        return dict(scored[j, share])

    def rank(positions: list[int], share: Share, what: str, keep: int) -> list[dict]:
        rows = rank_rows([score(j, share, what) for j in positions], len(val))
        for k, r in enumerate(rows):
            r["rank"], r["kept"] = k + 1, k < keep
        stages.append({"stage": what, "epochs": share.epochs, "examples": share.examples,
                      "trained": sum(r["trained_in"] == what for r in rows), "candidates": rows})
        log(f"stage {what}: {len(rows)} settings x {share.epochs} epochs x {share.examples} "
            f"examples; kept {', '.join(candidates[r['grid_position']].key for r in rows[:keep])}")
        if out is not None:
            atomic_write_json(out / "auto.json", _record(
                None, None, stages, search_cost, cfg.epochs * n, budget, n_val, None,
                time.perf_counter() - t0))
        return rows

    first, second = stage_positions(candidates)
    rows: list[dict] = []
    if len(candidates) > 1:
        pool = list(range(len(candidates)))
        if len(first) > 1:
            k = keep_temperatures(len(first))
            rows = rank(first, short, "temperature", k)
            if k > 1:
                rows = rank([r["grid_position"] for r in rows[:k]], long,
                            "temperature, longer", 1)
            pool = second([rows[0]["temperature"]])
        if len(pool) > 1:
            rows = rank(pool, long, "hard weight", 1)
    choice = candidates[rows[0]["grid_position"]] if rows else candidates[0]
    reason = _reason(choice, stages, len(candidates))
    log(f"chose {choice.key}: {reason}")
    final = run(choice, train_data, logits, cfg,
                Path(final_dir) if final_dir is not None else (out / "final" if out else None),
                eval_sets or {}, "final")
    result = AutoResult(choice, final, reason, stages, search_cost, cfg.epochs * n, budget,
                        n_val, time.perf_counter() - t0)
    if out is not None:
        atomic_write_json(out / "auto.json", result.record())
    return result


def _reason(choice: Candidate, stages: list[dict], n_grid: int) -> str:
    if not stages:
        return "the grid holds one setting"
    last = stages[-1]
    rows = last["candidates"]
    won = rows[0]
    best = max(rows, key=lambda r: (r["val_accuracy"], -r["val_nll"]))
    text = (f"validation accuracy {won['val_accuracy']:.4f} in the {last['stage']} stage "
            f"({last['epochs']} epochs on {last['examples']} fit examples each, {len(rows)} of "
            f"{n_grid} settings)")
    tied = [r for r in rows if r["within_one_se"]]
    if best["val_accuracy"] > won["val_accuracy"]:
        text += (f": the earliest in the grid of the {len(tied)} within one standard error of "
                 f"the best, T={best['temperature']:g} hard={best['hard_weight']:g} at "
                 f"{best['val_accuracy']:.4f}")
    elif len(tied) > 1:
        text += f": the best, and the earliest in the grid of the {len(tied)} within one SE"
    else:
        text += ": the best, more than one standard error ahead of the rest"
    return text


def _record(choice, reason, stages, search_cost, one_run, budget, val_size, final,
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
        "val_size": val_size, "seconds": round(seconds, 2), "stages": stages,
    }
    if final is not None:
        rec["final"] = final.final
    return rec
