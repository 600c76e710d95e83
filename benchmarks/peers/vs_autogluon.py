"""kdistill's tabular compression side by side with AutoGluon, on the five UCI problems.

    bash benchmarks/peers/setup_autogluon.sh               # AutoGluon in its own virtualenv
    python benchmarks/peers/vs_autogluon.py                # every problem, then the report
    python benchmarks/peers/vs_autogluon.py --problems dna satellite   # a part, resumable

Per problem, on the reproduction's own split (`kdistill reproduce model-compression`: 4,000
train, 1,000 hillclimb, the rest test, seed 0):
  1. kdistill: the library, ensemble selection, MUNGE and the mimics (`compress_split`
     without the ANN grid and the RANDOM baseline), and two plain scikit-learn baselines on the
     same encoded rows: `HistGradientBoostingClassifier` and an `MLPClassifier` with the
     mimic's hidden widths. Saved in `<out>/<problem>/kdistill.json`.
  2. AutoGluon (`autogluon_side.py`, run by the AutoGluon virtualenv's python): `fit` on the
     train rows with the hillclimb rows as its tuning data, then `distill`, with the time
     limits kdistill spent on the matching stages (library + selection; MUNGE labelling + mimic
     training), one CPU. Its test probabilities come back as .npy files and are scored here
     with kdistill's own metric functions, so every system is scored by the same code.
"Best" models are AutoGluon's choices on its validation scores (never the test rows). Latency
is the best of repeated calls on 10,000 raw test rows (preprocessing included: kdistill's
from-raw-rows figures), one thread, in ms per 1,000 rows. Bytes: kdistill's saved files;
AutoGluon's model folders that the model needs (its base models for an ensemble).
Writes `docs/results/model-compression/vs-autogluon.{json,md}`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from kdistill.files import atomic_write_json, atomic_write_text
from kdistill.reporting import jsonable, markdown_table, provenance
from kdistill.tabular.compress import CompressionConfig, compress_split, time_predict
from kdistill.tabular.encoding import TabularEncoder
from kdistill.tabular.metrics import metric_score
from kdistill.tabular.problems import PROBLEMS, load_problem, split_protocol

HERE = Path(__file__).resolve().parent
AUTOGLUON = ("autogluon_best", "autogluon_distilled_best")
SYSTEMS = ("kdistill_ensemble", "kdistill_mimic", "kdistill_mimic_small", "autogluon_best",
           "autogluon_distilled_best", "hgb", "mlp")
FIELDS = ("accuracy", "rmse", "ms_per_1000", "bytes", "fit_seconds")
_log = logging.getLogger("vs_autogluon")


def scores(y: np.ndarray, proba: np.ndarray) -> dict:
    return {"accuracy": metric_score(y, proba, "accuracy"), "rmse": metric_score(y, proba, "rmse")}


def _parts(name: str, seed: int):
    problem = load_problem(name)
    tr, hi, te = split_protocol(len(problem.y), *problem.protocol, seed)

    def part(idx):
        return problem.X.iloc[idx].reset_index(drop=True), problem.y[idx]
    return problem, part(tr), part(hi), part(te)


def kdistill_side(name: str, seed: int, work: Path, budget_fitted: bool,
                  numeric: str = "standard") -> dict:
    """The pipeline and the two scikit-learn baselines on one problem (saved, resumable)."""
    path = work / "kdistill.json"
    if _kdistill_saved(work, budget_fitted, numeric):
        return json.loads(path.read_text())  # else made with other mimic settings: recomputed
    t0 = time.perf_counter()
    problem, (Xtr, ytr), (Xhi, yhi), (Xte, yte) = _parts(name, seed)
    cfg = CompressionConfig(n_jobs=1, seed=seed, budget_fitted=budget_fitted, numeric=numeric)
    res = compress_split(Xtr, ytr, Xhi, yhi, Xte, yte, cfg, nominal=problem.nominal,
                         skip_baselines=True, out_dir=work / "kdistill", log=_log.info)
    s, raw = res["seconds"], res["predict_seconds_10k_from_raw_rows"]
    ensemble_fit = s["library_fit"] + s["selection"]
    mimic_fit = s["munge_label"] + s["mimic_candidates"]
    row = {f"kdistill_{k}": {"accuracy": res["accuracy"][m], "rmse": res["rmse"][m],
                             "ms_per_1000": raw[m] * 100, "bytes": res["size_bytes"][m],
                             "fit_seconds": fit}
           for k, m, fit in (("ensemble", "ensemble", ensemble_fit),
                             ("mimic", "mimic_munge", ensemble_fit + mimic_fit),
                             ("mimic_small", "mimic_small", ensemble_fit + mimic_fit))}
    row.update(_sklearn_baselines(problem, Xtr, ytr, Xte, yte, res["mimic_chosen"]["mimic_munge"],
                                  seed))
    out = {"problem": name, "systems": row, "budgets": {"fit": ensemble_fit, "distill": mimic_fit},
           "mimic_hidden": res["mimic_chosen"], "rows": res["rows"],
           "members": res["selection"]["members"], "budget_fitted": budget_fitted,
           "numeric": numeric,
           "seconds": time.perf_counter() - t0}
    atomic_write_json(path, jsonable(out))
    return out


def _sklearn_baselines(problem, Xtr, ytr, Xte, yte, hidden, seed: int) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline

    from kdistill.tabular.library import model_size_bytes

    rows = Xte.iloc[:10000]
    out = {}
    for key, model in (("hgb", HistGradientBoostingClassifier(random_state=seed)),
                       ("mlp", MLPClassifier(tuple(hidden), max_iter=200, random_state=seed))):
        pipe = make_pipeline(TabularEncoder(nominal=problem.nominal), model)
        t = time.perf_counter()
        with threadpool_limits(limits=1):
            pipe.fit(Xtr, ytr)
        fit = time.perf_counter() - t
        out[key] = {**scores(yte, pipe.predict_proba(Xte)),
                    "ms_per_1000": time_predict(pipe.predict_proba, rows, 3) * 1e6 / len(rows),
                    "bytes": model_size_bytes(pipe), "fit_seconds": fit}
    return out


def budgets(kd: dict, cap: float | None) -> dict:
    """AutoGluon's seconds for fit and for distill: kdistill's times for the same stages, each
    at most `cap` (None: no cap)."""
    return {k: v if cap is None else min(v, cap) for k, v in kd["budgets"].items()}


def autogluon_side(name: str, seed: int, work: Path, python: str, kd: dict,
                   cap: float | None) -> dict:
    """AutoGluon's fit and distill in its own virtualenv, scored here on its probabilities."""
    path = work / "autogluon.json"
    budget = {**budgets(kd, cap), "cap": cap}
    saved = work / "budget.json"
    if path.is_file() and (not saved.is_file()
                           or json.loads(saved.read_text()).get("cap", None) != cap):
        path.unlink()  # made with another budget: never reused
    if not path.is_file():
        problem, (Xtr, ytr), (Xhi, yhi), (Xte, yte) = _parts(name, seed)
        for part, (X, y) in (("train", (Xtr, ytr)), ("hill", (Xhi, yhi)), ("test", (Xte, yte))):
            X.assign(label=y).to_csv(work / f"{part}.csv", index=False)
        atomic_write_json(saved, {**budget, "seed": seed, "nominal": problem.nominal})
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        subprocess.run([python, str(HERE / "autogluon_side.py"), str(work)], check=True, env=env)
    ag = json.loads(path.read_text())
    y = _parts(name, seed)[3][1]
    systems = {}
    for key in ("autogluon_best", "autogluon_distilled_best"):
        m = ag[key]
        proba = np.load(work / f"proba-{m['model']}.npy")
        systems[key] = {**scores(y, proba), **{f: m[f] for f in ("ms_per_1000", "bytes",
                                                                 "fit_seconds")},
                        "model": m["model"]}
    return {"systems": systems, "version": ag["version"], "leaderboard": ag["leaderboard"],
            "seconds": ag["seconds"], "budget": budget}


def assemble(rows: list[dict], version: str, args) -> dict:
    mean = {s: {f: float(np.mean([r["systems"][s][f] for r in rows])) for f in FIELDS}
            for s in SYSTEMS}
    out = {"problems": [{"name": r["problem"], **r["systems"],
                         "kdistill_stage_seconds": r["budgets"],
                         "autogluon_budget_seconds": r["autogluon_budget"],
                         "mimic_hidden": r["mimic_hidden"]} for r in rows],
           "budget_cap_seconds": args.budget_cap,
           "mean": mean, "autogluon_version": version, "seed": args.seed,
           **provenance(),
           "compute_seconds": {r["problem"]: {"kdistill": round(r["seconds"], 1),
                                              "autogluon": round(r["autogluon_seconds"], 1)}
                               for r in rows}}
    out["wall_seconds"] = round(sum(sum(v.values()) for v in out["compute_seconds"].values()), 1)
    out["goals"] = _goals(out)
    return out


def _goals(out: dict) -> dict:
    probs = out["problems"]
    mimic_vs_ag_distilled = [p["kdistill_mimic"]["accuracy"] - p["autogluon_distilled_best"]
                             ["accuracy"] for p in probs]
    mean = out["mean"]
    return {
        "mimic_at_least_autogluon_distilled_on_every_problem": all(
            d >= 0 for d in mimic_vs_ag_distilled),
        "mimic_minus_autogluon_distilled_accuracy": mimic_vs_ag_distilled,
        "mimic_minus_autogluon_best_accuracy_mean_points": 100 * (
            mean["kdistill_mimic"]["accuracy"] - mean["autogluon_best"]["accuracy"]),
        "latency_autogluon_best_over_mimic": [p["autogluon_best"]["ms_per_1000"]
                                              / p["kdistill_mimic"]["ms_per_1000"] for p in probs],
    }


def render(out: dict) -> str:
    cap = (f", each capped at {out['budget_cap_seconds']:g} s" if out["budget_cap_seconds"]
           else "")
    lines = ["# kdistill vs AutoGluon on five UCI problems", "",
             f"AutoGluon {out['autogluon_version']}; {out['hardware']}; seed {out['seed']}; "
             f"`{out['command']}`, {out['wall_seconds']:.0f} s of one-CPU compute summed over the "
             "problems and both sides. AutoGluon's fit and distill get kdistill's times for the "
             f"same stages{cap}. Test accuracy (%), RMSE of "
             "the probabilities, ms per 1,000 raw rows (one thread), bytes on disk, fit "
             "seconds (one CPU). One seed: no interval.", ""]
    if out.get("carried_from"):
        lines += ["Rows of " + ", ".join(out["carried_from"]) + " are carried over from the "
                  "earlier report made with the same seed and budget cap (`"
                  + "`; `".join(sorted(set(out["carried_from"].values()))) + "`); the other "
                  "problems were run for this one.", ""]
    if out.get("autogluon_carried_from"):
        lines += ["AutoGluon's rows of " + ", ".join(out["autogluon_carried_from"]) + " are "
                  "carried over from the earlier report (`" + "`; `".join(sorted(set(
                      out["autogluon_carried_from"].values()))) + "`): AutoGluon was not rerun, "
                  "so its latencies were measured in that run, on the same kind of machine; "
                  "kdistill's side was run for this report.", ""]
    if out.get("kdistill_numeric", "standard") != "standard":
        lines += ["kdistill's nets read numeric columns encoded "
                  f"`numeric={out['kdistill_numeric']}` (TabularEncoder: `auto` is "
                  "asinh((x - median) / s) for the columns whose training sd exceeds 2 s, s the "
                  "IQR / 1.349, and standardized otherwise).", ""]
    if not out.get("complete", True):
        lines += [f"**Partial:** {len(out['problems'])} of 5 problems; not run: "
                  f"{', '.join(out['problems_missing'])}. The means and goals are over the "
                  "problems run.", ""]
    header = ["problem", "system", "accuracy %", "RMSE", "ms / 1,000", "bytes", "fit s"]
    body = []
    for p in [*out["problems"], {"name": "mean", **out["mean"]}]:
        for s in SYSTEMS:
            v = p[s]
            body.append([p["name"], s, f"{100 * v['accuracy']:.2f}", f"{v['rmse']:.4f}",
                         f"{v['ms_per_1000']:.2f}", f"{v['bytes']:,.0f}",
                         f"{v['fit_seconds']:.0f}"])
    lines += [markdown_table(header, body), ""]
    g = out["goals"]
    every = g["mimic_at_least_autogluon_distilled_on_every_problem"]
    diffs = ", ".join(f"{100 * d:+.2f}" for d in g["mimic_minus_autogluon_distilled_accuracy"])
    vs_best = g["mimic_minus_autogluon_best_accuracy_mean_points"]
    lines += ["Goals:",
              f"- mimic ≥ AutoGluon's best distilled student on every problem: "
              f"{'met' if every else 'MISSED'} (differences, points: {diffs})",
              f"- mimic within 0.5 points of AutoGluon's best on average: {vs_best:+.2f} points "
              f"({'met' if vs_best >= -0.5 else 'MISSED'})",
              "- latency of AutoGluon's best over the mimic's: "
              + ", ".join(f"{r:.0f}×" for r in g["latency_autogluon_best_over_mimic"]), ""]
    return "\n".join(lines)


def _kdistill_saved(work: Path, budget_fitted: bool, numeric: str) -> bool:
    """kdistill's side of a problem is saved, made with these mimic settings."""
    path = work / "kdistill.json"
    if not path.is_file():
        return False
    saved = json.loads(path.read_text())
    return (saved.get("budget_fitted", False), saved.get("numeric", "standard")) == (
        budget_fitted, numeric)


def _saved(work: Path, cap: float | None) -> bool:
    """Both sides of a problem are saved, AutoGluon's with this budget cap."""
    budget = work / "budget.json"
    return ((work / "kdistill.json").is_file() and (work / "autogluon.json").is_file()
            and budget.is_file() and json.loads(budget.read_text()).get("cap") == cap)


def carried_rows(report: Path, names: list[str], seed: int, cap: float | None) -> list[dict]:
    """Rows of `names` rebuilt from an earlier report made with the same seed and budget cap,
    so that a report can be completed on a machine that lacks the earlier runs' folders."""
    if not report.is_file():
        return []
    old = json.loads(report.read_text())
    if old.get("seed") != seed or old.get("budget_cap_seconds") != cap:
        return []
    rows = []
    for p in old["problems"]:
        if p["name"] in names:
            rows.append({"problem": p["name"], "systems": {s: p[s] for s in SYSTEMS},
                         "budgets": p["kdistill_stage_seconds"],
                         "autogluon_budget": p["autogluon_budget_seconds"],
                         "mimic_hidden": p["mimic_hidden"],
                         "seconds": old["compute_seconds"][p["name"]]["kdistill"],
                         "autogluon_seconds": old["compute_seconds"][p["name"]]["autogluon"],
                         "carried_from": old.get("carried_from", {}).get(p["name"],
                                                                      old["command"]),
                         "autogluon_carried_from": old.get("autogluon_carried_from", {}).get(
                             p["name"], old.get("carried_from", {}).get(p["name"],
                                                                        old["command"]))})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/vs-autogluon")
    p.add_argument("--autogluon-python", default=str(HERE / ".venv-autogluon" / "bin" / "python"))
    p.add_argument("--report-dir", default="docs/results/model-compression")
    p.add_argument("--report-only", action="store_true",
                   help="compute nothing: the report of the problems whose two sides are saved "
                        "(marked partial when some are missing)")
    p.add_argument("--carry", nargs="+", default=[], choices=PROBLEMS, metavar="PROBLEM",
                   help="with --report-only: take these problems' rows from the report already "
                        "in --report-dir (same seed and budget cap) when their runs are not "
                        "saved here; the report names them")
    p.add_argument("--budget-fitted", action="store_true",
                   help="let the size-budgeted mimic also try the widest nets within budget "
                        "(CompressionConfig.budget_fitted; off: the best fixed candidate within "
                        "budget, as in the committed report's rows)")
    p.add_argument("--numeric", choices=("standard", "robust", "auto"), default="standard",
                   help="numeric inputs of kdistill's nets (CompressionConfig.numeric; the "
                        "committed rows before this flag: standard)")
    p.add_argument("--autogluon-from-report", action="store_true",
                   help="where AutoGluon's side is not saved here, take its rows from the "
                        "report already in --report-dir (same seed and budget cap) instead of "
                        "running it; the report names them. kdistill's side runs")
    p.add_argument("--budget-cap", type=float, default=None,
                   help="at most this many seconds for AutoGluon's fit and for its distill "
                        "(default: kdistill's own stage times, uncapped)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    carried_ag, carried_version = {}, ""
    if args.autogluon_from_report:
        committed = Path(args.report_dir) / "vs-autogluon.json"
        carried_ag = {r["problem"]: r for r in carried_rows(
            committed, list(args.problems), args.seed, args.budget_cap)}
        if carried_ag:
            carried_version = json.loads(committed.read_text())["autogluon_version"]
    elif not Path(args.autogluon_python).is_file():
        print(f"error: no AutoGluon python at {args.autogluon_python}: run "
              "benchmarks/peers/setup_autogluon.sh", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    rows, version, missing = [], "", []
    for name in args.problems:
        work = Path(args.out) / f"seed{args.seed}" / name
        kd_saved = _kdistill_saved(work, args.budget_fitted, args.numeric)
        if args.report_only and not (kd_saved and (_saved(work, args.budget_cap)
                                                   or name in carried_ag)):
            missing.append(name)
            continue
        work.mkdir(parents=True, exist_ok=True)
        _log.info(f"{name}: kdistill")
        kd = kdistill_side(name, args.seed, work, args.budget_fitted, args.numeric)
        if name in carried_ag and not (work / "autogluon.json").is_file():
            old = carried_ag[name]
            kd["systems"].update({k: old["systems"][k] for k in AUTOGLUON})
            kd["autogluon_seconds"], kd["autogluon_budget"] = (old["autogluon_seconds"],
                                                               old["autogluon_budget"])
            kd["autogluon_carried_from"] = old["autogluon_carried_from"]
            version = carried_version
            _log.info(f"{name}: AutoGluon's rows from the committed report")
            rows.append(kd)
            continue
        b = budgets(kd, args.budget_cap)
        _log.info(f"{name}: AutoGluon with {b['fit']:.0f} s to fit and {b['distill']:.0f} s "
                  "to distill")
        ag = autogluon_side(name, args.seed, work, args.autogluon_python, kd, args.budget_cap)
        kd["systems"].update(ag["systems"])
        kd["autogluon_seconds"], kd["autogluon_budget"] = ag["seconds"], ag["budget"]
        version = ag["version"]
        rows.append(kd)
    carried = []
    if args.report_only and args.carry:
        carried = carried_rows(Path(args.report_dir) / "vs-autogluon.json",
                               [n for n in missing if n in args.carry], args.seed, args.budget_cap)
        missing = [n for n in missing if n not in {r["problem"] for r in carried}]
        version = version or json.loads((Path(args.report_dir) / "vs-autogluon.json")
                                        .read_text())["autogluon_version"]
        rows = sorted(rows + carried, key=lambda r: list(PROBLEMS).index(r["problem"]))
    if rows and (set(args.problems) == set(PROBLEMS) or args.report_only):
        out = assemble(rows, version, args)
        out["carried_from"] = {r["problem"]: r["carried_from"] for r in carried}
        out["autogluon_carried_from"] = {r["problem"]: r["autogluon_carried_from"] for r in rows
                                         if "autogluon_carried_from" in r}
        out["kdistill_numeric"] = args.numeric
        out["problems_missing"] = missing + [n for n in PROBLEMS if n not in args.problems]
        out["complete"] = not out["problems_missing"]
        report = Path(args.report_dir)
        atomic_write_json(report / "vs-autogluon.json", jsonable(out))
        atomic_write_text(report / "vs-autogluon.md", render(out))
        print(render(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
