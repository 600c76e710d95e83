"""`kdistill compress` (a CSV file) and `kdistill reproduce model-compression` (the paper's UCI
problems): the same pipeline and the same flags for its settings. Their flags are added on
first use, since the library presets come from scikit-learn."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import checks
from .common import architecture, separator

NAME = "compress"


def metric(text: str) -> str:
    """--metric: rmse, accuracy, log-loss or roc-auc (log_loss, roc_auc also)."""
    from ..tabular.gain import check_metric

    try:
        return check_metric(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_compression(p: argparse.ArgumentParser) -> None:
    """The pipeline settings both commands take (unset: CompressionConfig's defaults)."""
    from ..tabular.library import PRESETS

    p.add_argument("--metric", type=metric, default=None,
                   help="metric of the ensemble selection and of every choice on the "
                        "hillclimb rows (best single model, ANN, mimic architecture) and of the "
                        "gain captured: rmse (the paper's, the default), accuracy, log-loss, "
                        "roc-auc (multiclass: one-vs-rest macro average)")
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="model library: default (~290 models, the default), small (~40), tiny")
    p.add_argument("--n-jobs", type=int, default=None, help="joblib workers (default: 2)")
    p.add_argument("--munge-k", type=int, default=None,
                   help="MUNGE rows per training row (default: 10 for compress, 25 for "
                        "reproduce)")
    p.add_argument("--mimic-hidden", nargs="+", type=architecture, default=None,
                   metavar="WIDTHS",
                   help="candidate mimic architectures, hidden widths joined by x, chosen on "
                        "the hillclimb rows (default: 32 128 256 32x32 64x64 128x128 256x256)")
    p.add_argument("--mimic-epochs", type=int, default=None, help="mimic epochs (default: 60)")
    p.add_argument("--size-budget", type=float, default=None,
                   help="the small mimic is at most 1/N of the ensemble's size (default: 1000)")
    p.add_argument("--small-epochs", type=int, default=None,
                   help="epochs of the nets fitted to the size budget (default: 180)")
    p.add_argument("--numeric", choices=("standard", "robust", "auto"), default=None,
                   help="numeric inputs of the nets: standard ((x - mean) / sd, the default), "
                        "robust (asinh of (x - median) / IQR-scale: heavy tails compressed) or "
                        "auto (robust for the columns whose sd exceeds twice that scale)")
    p.add_argument("--no-budget-fitted", dest="budget_fitted", action="store_false",
                   default=None, help="the small mimic only from the fixed candidates, without "
                                      "the widest one- and two-layer nets that fit the budget")


def add_csv_reading(p: argparse.ArgumentParser) -> None:
    """--sep and --drop, which compress and predict share."""
    p.add_argument("--sep", type=separator, default=None,
                   help="field separator, e.g. ';' or '\\t' (default: sniffed from the file "
                        "among , ; tab |)")
    p.add_argument("--drop", action="append", default=[], metavar="COLUMN",
                   help="leave this column out (an identifier, a leak); repeat for more")


def _populate_compress(c: argparse.ArgumentParser) -> None:
    c.add_argument("data", help="CSV file with a header row")
    c.add_argument("--target", required=True, help="the class column")
    c.add_argument("--out", default="kdistill-compress",
                   help="output folder: mimic.pt, ensemble.joblib, report.{json,md}, "
                        "selection.png (default: %(default)s)")
    c.add_argument("--nominal", nargs="+", default=None,
                   help="columns to treat as nominal (default: the non-numeric ones)")
    add_csv_reading(c)
    c.add_argument("--missing", choices=("category", "impute"), default="category",
                   help="missing values: 'category' (default): a missing nominal value is a "
                        "category of its own, a missing number an error naming the column; "
                        "'impute': nominal columns take their most frequent training value, "
                        "numeric ones the training mean (also when predicting)")
    c.add_argument("--skip-baselines", action="store_true",
                   help="skip the ANN grid and the mimic on RANDOM pseudo-data (the paper's "
                        "baselines): faster, but no 'gain captured' in the report")
    c.add_argument("--hillclimb-fraction", type=float, default=0.2,
                   help="share of rows for ensemble selection (default: %(default)s)")
    c.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of rows held out for the report (default: %(default)s)")
    c.add_argument("--seed", type=int, default=0)
    add_compression(c)


def add_parser(subparsers) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        NAME, populate=_populate_compress,
        help="compress a CSV's ensemble into a small net",
        description="Model compression on a CSV file: a library of scikit-learn models, "
                    "ensemble selection on a hillclimb split, MUNGE pseudo-data labelled by "
                    "the ensemble, a mimic MLP; writes the models and a report (metrics, "
                    "sizes, prediction times, the selection trajectory plot).")


def compression_config(a: argparse.Namespace, **defaults):
    """CompressionConfig from the flags given (unset flags keep `defaults`, then the class's)."""
    from ..experiments import model_compression

    given = {"preset": a.preset, "n_jobs": a.n_jobs, "munge_k": a.munge_k,
             "mimic_hidden": tuple(a.mimic_hidden) if a.mimic_hidden else None,
             "epochs": a.mimic_epochs, "size_budget": a.size_budget, "seed": a.seed,
             "metric": a.metric, "small_epochs": a.small_epochs,
             "budget_fitted": a.budget_fitted, "numeric": a.numeric}
    cfg = model_compression.config_from(**{**defaults, **{k: v for k, v in given.items()
                                                          if v is not None}})
    cfg.validate()
    return cfg


def run(a: argparse.Namespace) -> int:
    from ..tabular.compress_csv import compress_csv

    cfg = compression_config(a, munge_k=10)
    checks.out_dir(a.out)
    r = compress_csv(a.data, a.target, a.out, cfg, hillclimb_fraction=a.hillclimb_fraction,
                     test_fraction=a.test_fraction, nominal=a.nominal, sep=a.sep, drop=a.drop,
                     missing=a.missing, skip_baselines=a.skip_baselines)
    from ..tabular.compress import SCORE_KEYS
    from ..tabular.compress_report import METRIC_NAMES

    score = r[SCORE_KEYS[r["metric"]]]
    ann = f", ann {score['ann']:.4f}" if "ann" in score else ""
    budget = "" if r["mimic_small_within_budget"] else " (over the size budget)"
    gain = (f"; gain captured {r['gain_captured']:.2f}" if r["gain_captured"] is not None
            else f"; no gain captured ({r['gain_captured_reason'].split(':')[0]})")
    print(f"test {METRIC_NAMES[r['metric']]}: ensemble {score['ensemble']:.4f}, mimic "
          f"{score['mimic_munge']:.4f}, single {score['single']:.4f}{ann}{gain}; mimic "
          f"{r['speedup_vs_ensemble']:.0f}x faster, {r['size_ratio_vs_ensemble']:.0f}x smaller; "
          f"small mimic {score['mimic_small']:.4f}, "
          f"{r['size_ratio_vs_ensemble_small']:.0f}x smaller{budget}")
    print(f"report: {Path(a.out) / 'report.md'}; models: {Path(a.out) / 'mimic.pt'}, "
          f"{Path(a.out) / 'mimic-small.pt'}, {Path(a.out) / 'ensemble.joblib'}; predict with "
          f"kdistill predict {Path(a.out) / 'mimic.pt'} DATA.csv --out predictions.csv")
    return 0


# ----------------------------------------------------------- reproduce model-compression

def populate_reproduce(m: argparse.ArgumentParser) -> None:
    m.add_argument("--problems", nargs="+", default=None,
                   help="UCI problems (default: letter.p1 letter.p2 satellite dna shuttle)")
    m.add_argument("--out", default=None, help="work folder (default: runs/model-compression)")
    m.add_argument("--report-dir", default=None,
                   help="summary.json, results.md, results.png (default "
                        "docs/results/model-compression)")
    m.add_argument("--seed", type=int, default=None)
    m.add_argument("--no-resume", action="store_true",
                   help="recompute every problem even if --out holds its result")
    add_compression(m)


def run_reproduce(a: argparse.Namespace) -> int:
    from ..experiments import model_compression
    from ..tabular.problems import PROBLEMS

    cfg = compression_config(a)
    problems = tuple(a.problems) if a.problems else PROBLEMS
    unknown = [p for p in problems if p not in PROBLEMS]
    if unknown:
        raise ValueError(f"unknown problem {unknown[0]!r}; known: {', '.join(PROBLEMS)}")
    report_dir = a.report_dir or "docs/results/model-compression"
    checks.out_dir(a.out or "runs/model-compression")
    checks.out_dir(report_dir, "--report-dir")
    s = model_compression.run(cfg, problems, report_dir=report_dir,
                              out=a.out or "runs/model-compression", resume=not a.no_resume)
    for label, key in (("mimic", ""), ("small mimic", "_small")):
        gain = s["mean_gain_captured" + key]
        print(f"{label}: mean gain captured {'n/a' if gain is None else f'{gain:.2f}'}, "
              f"{s['speedup_vs_ensemble' + key]:.0f}x faster, "
              f"{s['size_ratio_vs_ensemble' + key]:.0f}x smaller than the ensemble")
    print(f"wall time {s['wall_seconds']:.0f} s; report in {report_dir}")
    return 0
