"""``kdistill compress``: the compression pipeline on your CSV file, with a report.

Every input check (file, target column, encodable columns, enough rows) runs before anything
is written; then :func:`kdistill.tabular.compress.compress_split` on a random train /
hillclimb / test split, and ``report.{json,md}`` beside the models.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..files import atomic_write_json, atomic_write_text
from ..reporting import jsonable, markdown_table, provenance
from .compress import METHODS, CompressionConfig, arch_label, compress_split
from .encoding import TabularEncoder
from .problems import check_split_sizes, read_csv_problem, split_protocol

__all__ = ["compress_csv", "csv_split_sizes", "MIN_TRAIN", "MIN_HILLCLIMB", "MIN_TEST"]

_log = logging.getLogger(__name__)

MIN_TRAIN, MIN_HILLCLIMB, MIN_TEST = 20, 10, 10


def csv_split_sizes(n_rows: int, hillclimb_fraction: float, test_fraction: float
                    ) -> tuple[int, int, int]:
    """Train / hillclimb / test row counts for ``kdistill compress``; raises when too few."""
    for name, f in (("hillclimb fraction", hillclimb_fraction), ("test fraction", test_fraction)):
        if not 0 < f < 1:
            raise ValueError(f"{name} must be in (0, 1), got {f}")
    if hillclimb_fraction + test_fraction >= 1:
        raise ValueError("hillclimb and test fractions must leave rows for training")
    n_hill = int(round(n_rows * hillclimb_fraction))
    n_test = int(round(n_rows * test_fraction))
    n_train = n_rows - n_hill - n_test
    if n_train < MIN_TRAIN or n_hill < MIN_HILLCLIMB or n_test < MIN_TEST:
        raise ValueError(f"too few rows for the split: {n_rows} rows give {n_train} train / "
                         f"{n_hill} hillclimb / {n_test} test; need at least {MIN_TRAIN} / "
                         f"{MIN_HILLCLIMB} / {MIN_TEST}")
    check_split_sizes(n_rows, n_train, n_hill, n_test)
    return n_train, n_hill, n_test


def compress_csv(path: str | Path, target: str, out: str | Path, cfg: CompressionConfig,
                 *, hillclimb_fraction: float = 0.2, test_fraction: float = 0.2,
                 nominal: list[str] | None = None, log: Callable[[str], None] = _log.info) -> dict:
    """``kdistill compress``: the pipeline on a CSV file; writes models and a report to out.

    Every input check (file, target column, encodable columns, enough rows) runs before
    anything is written.
    """
    cfg.validate()
    t0 = time.perf_counter()
    X, y, classes = read_csv_problem(path, target)
    if nominal:
        missing = [c for c in nominal if c not in X.columns]
        if missing:
            raise ValueError(f"--nominal column {missing[0]!r} not in the CSV")
    n_train, n_hill, n_test = csv_split_sizes(len(y), hillclimb_fraction, test_fraction)
    TabularEncoder(nominal=nominal).fit(X)  # fail now on a column that cannot be encoded
    train_idx, hill_idx, test_idx = split_protocol(len(y), n_train, n_hill, n_test, cfg.seed)
    part = {name: (X.iloc[idx].reset_index(drop=True), y[idx])
            for name, idx in (("train", train_idx), ("hill", hill_idx), ("test", test_idx))}
    log(f"{Path(path).name}: {len(y)} rows, {X.shape[1]} input columns, classes {classes}; "
        f"split {n_train} / {n_hill} / {n_test}")
    result = compress_split(*part["train"], *part["hill"], *part["test"], cfg, nominal=nominal,
                            out_dir=out, log=log)
    report = {"data": str(path), "target": target, "classes": classes, **result,
              "config": jsonable(dataclasses.asdict(cfg)),
              "total_wall_seconds": round(time.perf_counter() - t0, 1), **provenance()}
    out = Path(out)
    atomic_write_json(out / "report.json", jsonable(report))
    atomic_write_text(out / "report.md", _render_one(report))
    return report


def _render_one(r: dict) -> str:
    rows = [[m, r["rmse"][m], r["accuracy"][m], r["auc"][m], r["size_bytes"][m],
             r["predict_seconds_10k"][m]] for m in METHODS]
    gain, small = r["gain_captured"], r["gain_captured_small"]
    gain_small = "n/a" if small is None else f"{small:.2f}"
    return "\n".join([
        f"# kdistill compress: {Path(r['data']).name}, target `{r['target']}`\n",
        f"Rows: {r['rows']['train']} train / {r['rows']['hillclimb']} hillclimb / "
        f"{r['rows']['test']} test; {r['library']['models']} library models, "
        f"{r['selection']['distinct_models']} selected; mimic trained on "
        f"{r['rows']['transfer']} rows (training + MUNGE).\n",
        markdown_table(["model", "test RMSE", "accuracy", "AUC", "size (bytes)",
                        "seconds / 10k rows"], rows),
        f"Share of the ensemble's gain over the ANN kept by the mimic: "
        f"{'n/a' if gain is None else f'{gain:.2f}'}; the mimic "
        f"({arch_label(r['mimic_chosen']['mimic_munge'])} hidden units) is "
        f"{r['speedup_vs_ensemble']:.0f}x faster and {r['size_ratio_vs_ensemble']:.0f}x "
        f"smaller than the ensemble. The small mimic "
        f"({arch_label(r['mimic_chosen']['mimic_small'])}, the best within 1/"
        f"{r['size_budget']:g} of the ensemble's size) keeps {gain_small} of the gain and is "
        f"{r['size_ratio_vs_ensemble_small']:.0f}x smaller.\n",
        "Files: `mimic.pt` and `mimic-small.pt` (load with `kdistill.mimic.load_mimic`), "
        "`ensemble.joblib`, `selection.png`.\n",
        "![selection trajectory](selection.png)\n",
        f"Command: `{r['command']}`; hardware: {r['hardware']}; wall time "
        f"{r['total_wall_seconds']:.0f} s.\n",
    ])
