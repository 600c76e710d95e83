"""Where a tabular mimic's prediction time goes, on the five UCI problems, in one run.

Per problem (the reproduction's split, seed 0): a MimicClassifier with the architecture the
committed `docs/results/model-compression/vs-autogluon.json` chose for `kdistill_mimic`, fitted
for one epoch on the training rows' labels (the weights do not change the time), then the best
of 7 calls on 10,000 raw test rows drawn with replacement, one thread:
  total    `predict_proba` on the raw rows (what vs_autogluon.py times),
  encode   `encoder_.transform` alone,
  net      `proba_from_encoded` (the network in blocks of 2,048 rows) alone,
  one pass the same network over all 10,000 rows in one call, for the block size's effect.
Reported in ms per 1,000 rows, with AutoGluon's best ensemble's ms from the committed report
(measured there, in another run) and the ratio. Writes docs/results/model-compression/
mimic-latency.json.

    python benchmarks/mimic_latency.py [--problems dna shuttle] [--numeric auto]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from kdistill.files import atomic_write_json
from kdistill.reporting import provenance
from kdistill.tabular.compress import _rows, time_predict
from kdistill.tabular.mimic import MimicClassifier
from kdistill.tabular.problems import PROBLEMS, load_problem, split_protocol

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "results" / "model-compression" / "vs-autogluon.json"


def one_pass(mimic: MimicClassifier, Z) -> None:
    with torch.inference_mode():
        torch.softmax(mimic.model_(torch.as_tensor(Z)), dim=1).double().numpy()


def measure(name: str, hidden: tuple[int, ...], numeric: str, rows: int, repeats: int) -> dict:
    problem = load_problem(name)
    train, _, test = split_protocol(len(problem.y), *problem.protocol, 0)
    X = problem.X.iloc[train].reset_index(drop=True)
    mimic = MimicClassifier(teacher=None, pseudo="none", nominal=problem.nominal, hidden=hidden,
                            epochs=1, numeric=numeric).fit(X, problem.y[train])
    raw = _rows(problem.X.iloc[test].reset_index(drop=True), rows, 0)
    Z = mimic.encoder_.transform(raw)
    ms = {k: 1000 * time_predict(f, x, repeats) * 1000 / rows for k, (f, x) in {
        "total": (mimic.predict_proba, raw), "encode": (mimic.encoder_.transform, raw),
        "net": (mimic.proba_from_encoded, Z),
        "one_pass": (lambda z: one_pass(mimic, z), Z)}.items()}
    return {"name": name, "hidden": list(hidden), "encoded_features": Z.shape[1],
            "ms_per_1000": ms}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    p.add_argument("--numeric", choices=("standard", "robust", "auto"), default="auto")
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", default=str(REPORT.parent / "mimic-latency.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    committed = {q["name"]: q for q in json.loads(REPORT.read_text())["problems"]}
    t0 = time.perf_counter()
    out = []
    for name in a.problems:
        row = measure(name, tuple(committed[name]["mimic_hidden"]["mimic_munge"]), a.numeric,
                      a.rows, a.repeats)
        ag = committed[name]["autogluon_best"]["ms_per_1000"]
        row["autogluon_best_ms_per_1000"] = ag
        row["autogluon_best_over_total"] = ag / row["ms_per_1000"]["total"]
        out.append(row)
        m = row["ms_per_1000"]
        print(f"{name}: {row['hidden']} on {row['encoded_features']} inputs: total "
              f"{m['total']:.3f} ms / 1,000 rows (encode {m['encode']:.3f}, net "
              f"{m['net']:.3f}, one pass {m['one_pass']:.3f}); AutoGluon best {ag:.1f} "
              f"({row['autogluon_best_over_total']:.0f}x)", flush=True)
    atomic_write_json(Path(a.json), {
        "problems": out, "rows": a.rows, "repeats": a.repeats, "numeric": a.numeric,
        "autogluon_from": str(REPORT.relative_to(ROOT)) + " (measured in that run)",
        "seconds": round(time.perf_counter() - t0, 1), **provenance()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
