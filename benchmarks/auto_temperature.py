"""Does the automatic choice of KD temperature and hard weight (kdistill.distill.auto) find what
a full grid finds, at a bounded cost?

For each teacher/student/data pair, in one seeded run per seed:
  grid   every setting T in {1, 2, 4, 8, 20} x hard weight in {0, 0.1, 0.5} (soft weight 1),
         each trained to the end on the whole training split and scored on the TEST set (the
         comparison only: nothing here chooses on the test set);
  auto   `auto_distill` on the same training split: a two-stage search (temperature, then
         hard weight) scored on a validation split carved out of the training data, then the
         final student trained with the chosen setting on the whole training split, scored on
         the test set.
The teacher (MLP 1200-1200, trained on the labels once per data set) gives cached logits on the
training split. Fashion-MNIST uses a fixed 10,000-image training subset (seeded permutation,
seed 0) to fit the time budget; its test set is the full 10,000.

Every cell is resumable: a grid cell writes result.json next to its checkpoint and is skipped
on rerun; the auto runs resume from their own checkpoints. Writes
docs/results/auto-temperature.json.

    python benchmarks/auto_temperature.py [--seeds 0 1] [--pairs digits-800x800 ...]
        [--phase grid|all] [--out runs/auto-temperature]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from kdistill.distill import methods
from kdistill.distill.data import ArrayDataset, load_digits, load_fashion_mnist, load_letter
from kdistill.distill.evaluation import evaluate, predict_logits
from kdistill.distill.models import MLP
from kdistill.distill.trainer import TrainConfig, train
from kdistill.files import atomic_write_json
from kdistill.reporting import provenance

ROOT = Path(__file__).resolve().parents[1]
TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 20.0)
HARD_WEIGHTS = (0.0, 0.1, 0.5)
FASHION_SUBSET = 10_000
# data set -> (student epochs, teacher epochs)
EPOCHS = {"digits": (30, 30), "letter": (30, 20), "fashion-mnist": (10, 15)}
PAIRS = {  # name -> (data set, student hidden widths)
    "digits-800x800": ("digits", (800, 800)),
    "digits-30": ("digits", (30,)),
    "letter-30": ("letter", (30,)),
    "letter-100": ("letter", (100,)),
    "fashion10k-800x800": ("fashion-mnist", (800, 800)),
    "fashion10k-30": ("fashion-mnist", (30,)),
}


def config(epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=128, optimizer="adam", lr=1e-3,
                       schedule="cosine", seed=seed, device="cpu", progress=False)


def load(name: str) -> tuple[ArrayDataset, ArrayDataset]:
    if name == "digits":
        s = load_digits()
    elif name == "letter":
        s = load_letter()
    else:
        s = load_fashion_mnist()
        perm = torch.randperm(len(s.train), generator=torch.Generator().manual_seed(0))
        return s.train.subset(perm[:FASHION_SUBSET], "fashion-mnist-train-10k"), s.test
    return s.train, s.test


def teacher_logits(name: str, data: ArrayDataset, test: ArrayDataset, out: Path,
                   log) -> tuple[torch.Tensor, float]:
    """A 1200-1200 MLP trained on the labels (resumable), its logits on `data`, its test
    accuracy."""
    torch.manual_seed(0)
    model = MLP(data.in_features, data.num_classes, (1200, 1200))
    result = train(model, data, config(EPOCHS[name][1], 0), method="ce",
                   out_dir=out / "teachers" / name, log=log)
    acc = evaluate(result.model, test)["accuracy"]
    return predict_logits(result.model, data.x), acc


def student_factory(data: ArrayDataset, hidden):
    return lambda: MLP(data.in_features, data.num_classes, hidden)


def grid_cell(pair: str, data, test, logits, hidden, epochs: int, seed: int, t: float,
              h: float, out: Path, log) -> dict:
    folder = out / "grid" / pair / f"seed{seed}" / f"T{t:g}-hard{h:g}"
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    torch.manual_seed(seed)
    model = student_factory(data, hidden)()
    t0 = time.perf_counter()
    result = train(model, data, config(epochs, seed),
                   method=methods.get("kd", temperature=t, soft_weight=1.0, hard_weight=h),
                   teacher_logits=logits, out_dir=folder, log=log)
    row = {"temperature": t, "hard_weight": h,
           "test_accuracy": evaluate(result.model, test)["accuracy"],
           "train_seconds": round(sum(r["seconds"] for r in result.history), 2),
           "wall_seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_json(done, row)
    return row


def auto_cell(pair: str, data, test, logits, hidden, epochs: int, seed: int, budget: float,
              out: Path, log) -> dict:
    from kdistill.distill.auto import auto_distill

    torch.manual_seed(seed)
    res = auto_distill(student_factory(data, hidden), data, config(epochs, seed),
                       teacher_logits=logits, budget=budget, seed=seed,
                       eval_sets={"test": test}, out_dir=out / "auto" / pair / f"seed{seed}",
                       log=log)
    rec = res.record()
    rec["test_accuracy"] = res.final.final["test_accuracy"]
    return rec


def summarize(pair: str, seeds_rows: dict) -> dict:
    """Per seed: auto vs that seed's grid best; over seeds: mean auto vs the setting with the
    best mean test accuracy."""
    per_seed, means = [], {}
    for seed, (grid, auto) in seeds_rows.items():
        best = max(grid, key=lambda r: (r["test_accuracy"], -r["temperature"],
                                        -r["hard_weight"]))
        per_seed.append({
            "seed": seed, "auto_accuracy": auto["test_accuracy"] if auto else None,
            "grid_best_accuracy": best["test_accuracy"],
            "grid_best_choice": {"temperature": best["temperature"],
                                 "hard_weight": best["hard_weight"]},
            "auto_choice": auto["choice"] if auto else None,
            "cost_over_one_run": auto["search_cost_over_one_run"] if auto else None,
            "total_cost_over_one_run": auto["total_cost_over_one_run"] if auto else None,
            "auto": auto, "grid": grid})
        for r in grid:
            means.setdefault((r["temperature"], r["hard_weight"]), []).append(
                r["test_accuracy"])
    table = [{"temperature": t, "hard_weight": h, "test_accuracy_mean": statistics.mean(v),
              "test_accuracy_per_seed": v} for (t, h), v in sorted(means.items())]
    best = max(table, key=lambda r: (r["test_accuracy_mean"], -r["temperature"],
                                     -r["hard_weight"]))
    autos = [s["auto_accuracy"] for s in per_seed if s["auto_accuracy"] is not None]
    costs = [s["cost_over_one_run"] for s in per_seed if s["cost_over_one_run"] is not None]
    auto_acc = statistics.mean(autos) if autos else None
    return {
        "name": pair, "seeds": [s["seed"] for s in per_seed],
        "auto_accuracy": auto_acc, "grid_best_accuracy": best["test_accuracy_mean"],
        "gap_points": None if auto_acc is None
        else round(100 * (best["test_accuracy_mean"] - auto_acc), 3),
        "auto_choice": [s["auto_choice"] for s in per_seed],
        "grid_best_choice": {"temperature": best["temperature"],
                             "hard_weight": best["hard_weight"]},
        "cost_over_one_run": max(costs) if costs else None,
        "train_seconds": round(sum(sum(r["train_seconds"] for r in s["grid"])
                                   + (s["auto"]["seconds"] if s["auto"] else 0)
                                   for s in per_seed), 1),
        "grid_table": table, "per_seed": per_seed,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--phase", choices=["grid", "all"], default="all")
    p.add_argument("--budget", type=float, default=3.0)
    p.add_argument("--out", default=str(ROOT / "runs" / "auto-temperature"))
    p.add_argument("--json", default=str(ROOT / "docs" / "results" / "auto-temperature.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    loaded, rows = {}, {}
    for seed in a.seeds:  # seed by seed, so a cut-short run has every pair at seed 0
        for pair in a.pairs:
            name, hidden = PAIRS[pair]
            if name not in loaded:
                data, test = load(name)
                logits, t_acc = teacher_logits(name, data, test, out, lambda s: None)
                log(f"teacher {name}: test accuracy {t_acc:.4f}")
                loaded[name] = (data, test, logits, t_acc)
            data, test, logits, _ = loaded[name]
            epochs = EPOCHS[name][0]
            grid = [grid_cell(pair, data, test, logits, hidden, epochs, seed, t, h, out,
                              lambda s: None) for t in TEMPERATURES for h in HARD_WEIGHTS]
            log(f"{pair} seed {seed}: grid done, best test accuracy "
                f"{max(r['test_accuracy'] for r in grid):.4f}")
            auto = None
            if a.phase == "all":
                auto = auto_cell(pair, data, test, logits, hidden, epochs, seed, a.budget, out,
                                 lambda s: None)
                log(f"{pair} seed {seed}: auto chose {auto['choice']}, test accuracy "
                    f"{auto['test_accuracy']:.4f}, search cost "
                    f"{auto['search_cost_over_one_run']:.3f} x one run")
            rows.setdefault(pair, {})[seed] = (grid, auto)
    if a.phase != "all":
        return 0
    pairs = [summarize(pair, rows[pair]) for pair in a.pairs]
    results = {
        "pairs": pairs,
        "settings": {"temperatures": TEMPERATURES, "hard_weights": HARD_WEIGHTS,
                     "soft_weight": 1.0, "budget": a.budget, "seeds": a.seeds,
                     "epochs": {k: {"student": v[0], "teacher": v[1]} for k, v in EPOCHS.items()},
                     "training": config(1, 0).to_dict() | {"epochs": "per data set"},
                     "fashion_mnist_training_subset": FASHION_SUBSET,
                     "teacher": "MLP 1200-1200 trained on the labels (method ce), seed 0",
                     "teacher_test_accuracy": {k: v[3] for k, v in loaded.items()}},
        "wall_seconds_this_invocation": round(time.perf_counter() - t_start, 1),
        "train_seconds_all_pairs": round(sum(p["train_seconds"] for p in pairs), 1),
        **provenance(),
    }
    atomic_write_json(Path(a.json), results)
    log(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
