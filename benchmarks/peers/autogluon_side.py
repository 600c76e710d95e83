"""AutoGluon's half of benchmarks/peers/vs_autogluon.py; run by the AutoGluon virtualenv.

    <venv>/bin/python benchmarks/peers/autogluon_side.py WORK

WORK holds train.csv, hill.csv, test.csv (a `label` column) and budget.json (seconds for
`fit` and for `distill`, the seed, the nominal columns) written by vs_autogluon.py. Fits
`TabularPredictor` on the train rows with the hillclimb rows as tuning data (one CPU), then
`distill` (its defaults: soft teacher predictions, its MUNGE variant), picks AutoGluon's best
model and its best distilled student by AutoGluon's validation score, and writes their test
probabilities (proba-<model>.npy), latency, bytes on disk and fit seconds to autogluon.json.
Imports nothing from kdistill: this environment does not have it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def read(work: Path, part: str, nominal: list[str]) -> pd.DataFrame:
    frame = pd.read_csv(work / f"{part}.csv", dtype={c: str for c in nominal})
    for c in nominal:
        frame[c] = frame[c].astype("category")
    return frame


def model_bytes(predictor, model: str) -> int:
    """The model's folder and those of every model it needs (an ensemble's base models),
    plus the predictor's own files outside models/ (its feature pipeline)."""
    trainer = predictor._trainer
    own = sum(os.path.getsize(os.path.join(predictor.path, f)) for f in os.listdir(predictor.path)
              if os.path.isfile(os.path.join(predictor.path, f)))
    return own + sum(trainer.load_model(m).disk_usage()
                     for m in trainer.get_minimum_model_set(model))


def best_seconds(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(work: Path) -> None:
    import autogluon.tabular as ag
    from autogluon.tabular import TabularPredictor

    t_all = time.perf_counter()
    budget = json.loads((work / "budget.json").read_text())
    nominal = budget["nominal"]
    train, hill, test = (read(work, p, nominal) for p in ("train", "hill", "test"))
    x_test = test.drop(columns=["label"])
    rows = x_test.iloc[:10000]
    predictor = TabularPredictor(label="label", eval_metric="log_loss",
                                 path=str(work / "autogluon-models"), verbosity=1)
    t = time.perf_counter()
    predictor.fit(train, tuning_data=hill, time_limit=max(30, int(budget["fit"])),
                  presets="medium_quality", num_cpus=1, num_gpus=0)
    fit_seconds = time.perf_counter() - t
    t = time.perf_counter()
    distilled = predictor.distill(time_limit=max(30, int(budget["distill"])))
    distill_seconds = time.perf_counter() - t
    board = predictor.leaderboard(silent=True)
    score = dict(zip(board["model"], board["score_val"]))
    best = predictor.model_best
    candidates = [m for m in distilled if m in score and np.isfinite(score[m])]
    student = max(candidates, key=lambda m: score[m])  # AutoGluon's validation, not the test
    t_all = time.perf_counter() - t_all
    out = {"version": ag.__version__, "fit_seconds": fit_seconds, "seconds": t_all,
           "distill_seconds": distill_seconds, "distilled": list(distilled),
           "leaderboard": [{"model": m, "score_val": float(s)} for m, s in score.items()]}
    for key, model, fit in (("autogluon_best", best, fit_seconds),
                            ("autogluon_distilled_best", student, fit_seconds + distill_seconds)):
        proba = predictor.predict_proba(x_test, model=model, as_multiclass=True)
        np.save(work / f"proba-{model}.npy", proba[sorted(proba.columns)].to_numpy())
        seconds = best_seconds(lambda m=model: predictor.predict_proba(rows, model=m), 2)
        out[key] = {"model": model, "score_val": float(score[model]),
                    "ms_per_1000": seconds * 1000 / len(rows) * 1000,
                    "bytes": model_bytes(predictor, model), "fit_seconds": fit}
    tmp = work / "autogluon.json.tmp"
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, work / "autogluon.json")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
