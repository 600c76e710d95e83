"""`kdistill train`: a teacher or a hard-label baseline."""

from __future__ import annotations

import argparse

from . import checks
from .common import (
    add_data,
    add_model,
    add_training,
    augment_from,
    build,
    distributed,
    finish,
    model_spec,
    train_config,
)

NAME = "train"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help="train a teacher or a hard-label baseline",
                              description="Train a model on hard labels (a teacher, or a "
                                          "baseline).")
    add_data(p)
    add_model(p, [1200, 1200])
    add_training(p)
    return p


def run(a: argparse.Namespace) -> int:
    from ..distill.data import load_dataset
    from ..distill.trainer import train

    cfg = train_config(a)
    augment = augment_from(a)
    out = checks.out_dir(a.out)
    checks.device(a.device)
    splits = load_dataset(a.dataset, a.data_dir, a.download)
    spec = model_spec(a, splits.train)
    model = build(spec, a.seed)
    with distributed(a.device) as rank:  # under torchrun each rank takes its share
        result = train(model, splits.train, cfg, method="ce", augment=augment,
                       eval_sets={"test": splits.test}, out_dir=out, resume=not a.no_resume,
                       init_from=a.resume_from, model_spec=spec)
        if rank == 0:
            finish(result, out, spec, splits.test)
    return 0
