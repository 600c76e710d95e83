"""`kdistill demo`: teacher -> student -> distilled student on the built-in digits."""

from __future__ import annotations

import argparse

NAME = "demo"


def add_parser(subparsers) -> argparse.ArgumentParser:
    m = subparsers.add_parser(NAME, help="teacher -> student -> distilled student on the "
                              "built-in digits, with a report", description="The main job on "
                              "scikit-learn's digits: a teacher, a hard-label student and a "
                              "distilled student.")
    m.add_argument("--out", default="kdistill-demo", help="report folder (default: %(default)s)")
    m.add_argument("--fresh", action="store_true", help="ignore checkpoints under --out")
    m.add_argument("--no-progress", action="store_true")
    return m


def run(a: argparse.Namespace) -> int:
    from ..experiments import hinton_mnist
    from .checks import out_dir

    out_dir(a.out)

    # The digits teacher recipe the full reproduction picks on validation; no sweep, so the
    # demo takes about a minute on two cores.
    cfg = hinton_mnist.config_from("digits", out=a.out, teacher_recipe="dropout", sweep=False,
                                   fresh=a.fresh, progress=not a.no_progress)
    results = hinton_mnist.run(cfg)
    print("\n".join(hinton_mnist.summary(results, cfg)))
    return 0
