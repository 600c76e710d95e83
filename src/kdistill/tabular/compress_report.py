"""What `kdistill compress` writes for people: report.md, the selection plot, architecture names.

Rendering only (no fitting, no torch): :func:`render_report` turns the report dict of
:func:`kdistill.tabular.compress_csv.compress_csv` into Markdown; it says "within budget" only
when a candidate was, shows the gain captured only where the ensemble's gain over the ANN is
beyond the bootstrap noise (else says why), warns when the ensemble loses to its best single
model on the hillclimb rows, and lists the ensemble's members with their weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..reporting import markdown_table

__all__ = ["render_report", "plot_trajectory", "arch_label"]

_ALL_METHODS = ("single", "ensemble", "ann", "mimic_munge", "mimic_small", "mimic_random")
METRIC_NAMES = {"rmse": "RMSE", "accuracy": "accuracy", "log_loss": "log-loss",
                "roc_auc": "ROC AUC"}


def render_report(r: dict) -> str:
    """report.md of one `kdistill compress` run."""
    methods = r.get("methods", _ALL_METHODS)
    rows = [[m, r["rmse"][m], r["accuracy"][m], r["auc"][m],
             r["log_loss"][m] if "log_loss" in r else "", r["size_bytes"][m],
             r["predict_seconds_10k"][m]] for m in methods]
    metric = METRIC_NAMES[r.get("metric", "rmse")]
    members = sorted(r["selection"]["members"].items(), key=lambda kv: (-kv[1], kv[0]))
    return "\n".join([
        f"# kdistill compress: {Path(r['data']).name}, target `{r['target']}`\n",
        f"Classes ({len(r['classes'])}): {', '.join(f'`{c}`' for c in r['classes'])}. "
        f"Rows: {r['rows']['train']} train / {r['rows']['hillclimb']} hillclimb / "
        f"{r['rows']['test']} test; {r['library']['models']} library models, "
        f"{r['selection']['distinct_models']} selected; mimic trained on "
        f"{r['rows']['transfer']} rows (training + MUNGE). Metric of the ensemble selection "
        f"and of every choice on the hillclimb rows (best single model, ANN, mimic "
        f"architectures): **{metric}** (`--metric`).\n",
        *(f"**Warning:** {w}.\n" for w in r.get("warnings", [])),
        markdown_table(["model", "test RMSE", "accuracy", "AUC", "log-loss", "size (bytes)",
                        "seconds / 10k rows"], rows),
        _gain_line(r),
        _summary(r),
        "Ensemble members, chosen on the hillclimb rows (the ensemble averages their "
        "probabilities with these weights, which sum to 1):\n",
        markdown_table(["model", "weight"], [[n, f"{w:.4f}"] for n, w in members]),
        "Files: `mimic.pt` and `mimic-small.pt` (the mimics, predicting the classes above), "
        "`ensemble.joblib`, `selection.png`. Predict a new CSV with `kdistill predict "
        "mimic.pt new.csv --out predictions.csv`, or from Python with "
        "`kdistill.tabular.mimic.load_mimic('mimic.pt').predict(frame)`; `kdistill export "
        "mimic.pt --format onnx --out mimic.onnx` (or `--format safetensors`) writes a file for "
        "other runtimes, with the input encoding in a JSON file beside it.\n",
        "![selection trajectory](selection.png)\n",
        f"Command: `{r['command']}`; hardware: {r['hardware']}; wall time "
        f"{r['total_wall_seconds']:.0f} s.\n",
    ])


def _gain_line(r: dict) -> str:
    """The ensemble's gain over the ANN with its bootstrap interval, or nothing."""
    noise = r.get("gain_noise")
    if not noise:
        return ""
    lo, hi = noise["ci95"]
    return (f"Gain of the ensemble over the ANN: {noise['gain']:+.4f} test "
            f"{METRIC_NAMES[noise['metric']]}, 95% interval [{lo:+.4f}, {hi:+.4f}] from "
            f"{noise['n_boot']} paired bootstrap resamples of the {noise['rows']} test rows "
            "(test-sampling noise only; another seed may differ more). The share of that gain "
            "a mimic keeps is shown only when the interval lies above 0.\n")


def _summary(r: dict) -> str:
    gain, small = r["gain_captured"], r["gain_captured_small"]
    if r.get("ann_chosen") is None:
        kept = ("Baselines skipped (`--skip-baselines`): no ANN and no RANDOM mimic, so no "
                "share of the ensemble's gain. ")
        kept_small = ""
    elif gain is None and r.get("gain_captured_reason"):
        kept = f"No share of the ensemble's gain is reported: {r['gain_captured_reason']}. "
        kept_small = ""
    else:
        kept = (f"Share of the ensemble's gain over the ANN kept by the mimic: "
                f"{'n/a' if gain is None else f'{gain:.2f}'}. ")
        kept_small = f"keeps {'n/a' if small is None else f'{small:.2f}'} of the gain and "
    budget = f"1/{r['size_budget']:g} of the ensemble's size"
    small_arch = arch_label(r["mimic_chosen"]["mimic_small"])
    if r.get("mimic_small_within_budget", True):
        which = f"The small mimic ({small_arch}, the best within {budget}) "
    else:
        which = (f"No candidate is within {budget}; the small mimic is the smallest candidate "
                 f"({small_arch}), over budget: it ")
    return (f"{kept}The mimic ({arch_label(r['mimic_chosen']['mimic_munge'])} hidden units) "
            f"is {r['speedup_vs_ensemble']:.0f}x faster and {r['size_ratio_vs_ensemble']:.0f}x "
            f"smaller than the ensemble. {which}{kept_small}is "
            f"{r['size_ratio_vs_ensemble_small']:.0f}x smaller.\n")


def plot_trajectory(trajectory: np.ndarray, best_single: float, ax: Any = None,
                    title: str = "ensemble selection on the hillclimb set",
                    ylabel: str = "hillclimb RMSE"):
    """Hillclimb score after the sorted initialization and each pick, bags thin, mean thick."""
    import matplotlib.pyplot as plt

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    traj = np.atleast_2d(trajectory)
    for row in traj:
        ax.plot(row, color="C0", alpha=0.15, linewidth=0.8)
    ax.plot(np.nanmean(traj, axis=0), color="C0", linewidth=2, label="mean over bags")
    ax.axhline(best_single, color="k", linestyle=":", label="best single model")
    ax.set_xlabel("step (0 = sorted initialization)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig if fig is not None else ax.figure


def arch_label(hidden: list[int] | tuple[int, ...]) -> str:
    """(64, 64) -> '64x64', as the reports and ``--mimic-hidden`` write architectures."""
    return "x".join(str(h) for h in hidden)
