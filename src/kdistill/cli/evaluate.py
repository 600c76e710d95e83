"""`kdistill evaluate`: a checkpoint's test metrics as JSON."""

from __future__ import annotations

import argparse
import json

from . import checks
from .common import add_data, load_model

NAME = "evaluate"


def add_parser(subparsers) -> argparse.ArgumentParser:
    e = subparsers.add_parser(NAME, help="evaluate a checkpoint on a data set's test split",
                              description="Print test errors, accuracy, NLL and ECE as JSON.")
    e.add_argument("checkpoint", help="checkpoint.pt")
    add_data(e)
    e.add_argument("--device", default="auto")
    return e


def run(a: argparse.Namespace) -> int:
    from ..distill.data import load_dataset
    from ..distill.trainer import evaluate

    device = checks.device(a.device)
    model, spec = load_model(a.checkpoint)
    splits = load_dataset(a.dataset, a.data_dir, a.download)
    checks.spec_fits(spec, splits.test, f"the model in {a.checkpoint}")
    metrics = evaluate(model, splits.test, device=device)
    print(json.dumps({"checkpoint": a.checkpoint, "dataset": a.dataset, **metrics}, indent=2))
    return 0
