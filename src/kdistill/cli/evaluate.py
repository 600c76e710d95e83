"""`kdistill evaluate`: a checkpoint's test metrics as JSON."""

from __future__ import annotations

import argparse
import json

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
    from ..distill.trainer import evaluate, resolve_device

    model, _ = load_model(a.checkpoint)
    splits = load_dataset(a.dataset, a.data_dir, a.download)
    metrics = evaluate(model, splits.test, device=resolve_device(a.device))
    print(json.dumps({"checkpoint": a.checkpoint, "dataset": a.dataset, **metrics}, indent=2))
    return 0
