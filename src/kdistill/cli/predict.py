"""`kdistill predict`: a mimic saved by `kdistill compress` on a new CSV file.

Writes the predicted label and one probability column per class, under the original class
names. Bad input (the model file, the CSV, a column the mimic was not fitted on or lacks, the
target column still in the file) is one line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import argparse

from . import checks

NAME = "predict"


def _populate(p: argparse.ArgumentParser) -> None:
    from .compress import add_csv_reading

    p.add_argument("model", help="mimic.pt or mimic-small.pt from kdistill compress (or a "
                                 ".safetensors export)")
    p.add_argument("data", help="CSV file with a header row and the columns the mimic was "
                                "fitted on")
    p.add_argument("--out", default="predictions.csv",
                   help="CSV to write: prediction, then proba_<class> per class "
                        "(default: %(default)s)")
    add_csv_reading(p)


def add_parser(subparsers) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        NAME, populate=_populate, help="predict a CSV with a compressed model (a mimic)",
        description="Predict every row of a CSV file with a mimic from kdistill compress: "
                    "writes the predicted label and the probability of each class.")


def run(a: argparse.Namespace) -> int:
    from ..tabular.compress_csv import predict_csv

    out = checks.out_file(a.out)
    r = predict_csv(a.model, a.data, out, sep=a.sep, drop=a.drop)
    print(f"{r['rows']} rows predicted ({len(r['classes'])} classes: "
          f"{', '.join(map(str, r['classes']))}); written to {r['out']}")
    return 0
