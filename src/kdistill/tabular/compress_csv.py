"""``kdistill compress``: the compression pipeline on your CSV file, with a report.

Every input check (file, separator, target column, dropped columns, encodable columns, enough
rows) runs before anything is fitted or written; then
:func:`kdistill.tabular.compress.compress_split` on a random train / hillclimb / test split,
and ``report.{json,md}`` (:mod:`kdistill.tabular.compress_report`) beside the models.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..files import atomic_write_json, atomic_write_text
from ..reporting import jsonable, provenance
from .compress import CompressionConfig, compress_split
from .compress_report import render_report
from .encoding import MISSING, TabularEncoder
from .problems import (
    check_split_sizes,
    read_csv_frame,
    read_csv_problem,
    sniff_separator,
    split_protocol,
)

__all__ = ["compress_csv", "predict_csv", "csv_split_sizes", "MIN_TRAIN", "MIN_HILLCLIMB",
           "MIN_TEST"]

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
                 nominal: list[str] | None = None, sep: str | None = None,
                 drop: list[str] | tuple[str, ...] = (), missing: str = "category",
                 skip_baselines: bool = False, log: Callable[[str], None] = _log.info) -> dict:
    """``kdistill compress``: the pipeline on a CSV file; writes models and a report to out.

    Every input check (file, separator, target column, dropped columns, encodable columns,
    enough rows) runs before anything is fitted or written. ``sep`` None sniffs the separator;
    ``missing`` and ``skip_baselines`` as in :func:`compress_split`.
    """
    cfg.validate()
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}; got {missing!r}")
    t0 = time.perf_counter()
    if sep is None:
        sep = sniff_separator(path) if Path(path).is_file() else ","
        log(f"{Path(path).name}: separator {sep!r} (sniffed; --sep to choose)")
    X, y, classes = read_csv_problem(path, target, sep=sep, drop=drop)
    if nominal:
        absent = [c for c in nominal if c not in X.columns]
        if absent:
            raise ValueError(f"--nominal column {absent[0]!r} not in the CSV")
    n_train, n_hill, n_test = csv_split_sizes(len(y), hillclimb_fraction, test_fraction)
    # fail now, naming the column, on anything the encoder cannot take
    TabularEncoder(nominal=nominal, missing=missing).fit(X)
    train_idx, hill_idx, test_idx = split_protocol(len(y), n_train, n_hill, n_test, cfg.seed)
    part = {name: (X.iloc[idx].reset_index(drop=True), y[idx])
            for name, idx in (("train", train_idx), ("hill", hill_idx), ("test", test_idx))}
    log(f"{Path(path).name}: {len(y)} rows, {X.shape[1]} input columns, classes {classes}; "
        f"split {n_train} / {n_hill} / {n_test}")
    result = compress_split(*part["train"], *part["hill"], *part["test"], cfg, nominal=nominal,
                            missing=missing, skip_baselines=skip_baselines, labels=classes,
                            target=target, out_dir=out, log=log)
    report = {"data": str(path), "target": target, "classes": classes, "separator": sep,
              "dropped": list(drop), "missing": missing, "skip_baselines": skip_baselines,
              **result, "config": jsonable(dataclasses.asdict(cfg)),
              "total_wall_seconds": round(time.perf_counter() - t0, 1), **provenance()}
    out = Path(out)
    atomic_write_json(out / "report.json", jsonable(report))
    atomic_write_text(out / "report.md", render_report(report))
    return report


def predict_csv(model: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *,
                sep: str | None = None, drop: list[str] | tuple[str, ...] = ()) -> dict:
    """``kdistill predict``: a saved mimic on a CSV file; writes ``out`` (atomically) with the
    predicted label and one probability column per class, ``proba_<class>``, under the
    original class names, in the input's row order. Every check runs before anything is
    written."""
    import pandas as pd

    from .mimic import load_mimic

    mimic = load_mimic(model)
    frame, sep = read_csv_frame(data, sep, drop)
    target = mimic.target_
    if target is not None and target in frame.columns:
        raise ValueError(f"{Path(data).name} holds the target column {target!r}: pass --drop "
                         f"{target} to predict without it")
    proba = mimic.predict_proba(frame)
    table = pd.DataFrame({"prediction": mimic.classes_[proba.argmax(axis=1)]})
    for j, name in enumerate(mimic.classes_):
        table[f"proba_{name}"] = proba[:, j]
    atomic_write_text(out, table.to_csv(index=False))
    return {"rows": len(table), "classes": mimic.classes_.tolist(), "separator": sep,
            "out": str(out)}
