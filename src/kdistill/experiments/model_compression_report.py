"""The model-compression reproduction's report: results.md (Tables 2-4 of Bucila et al. 2006,
the targets, the choices made on the hillclimb rows, the protocol and the provenance) and
results.png (test RMSE per problem, the selection trajectories), both read from the summary dict
alone (so a committed summary.json can be rendered again)."""

from __future__ import annotations

import numpy as np

from ..reporting import markdown_table
from ..tabular.compress import METHODS, arch_label

__all__ = ["render_markdown", "plot_summary"]


def _small_fits(r: dict) -> bool:
    """Whether mimic_small is within the budget; results saved before the flag: the trials."""
    if "mimic_small_within_budget" in r:
        return bool(r["mimic_small_within_budget"])
    trials = r.get("mimic_selection") or []
    return not trials or any(t.get("within_budget") for t in trials)


def _over_budget(s: dict) -> str:
    """Problems where no candidate fit the budget (mimic_small is then the smallest)."""
    over = [r["name"] for r in s["problems"] if not _small_fits(r)]
    return (f" No candidate fits the budget on {', '.join(over)}: there mimic_small is the "
            f"smallest candidate, over budget." if over else "")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def render_markdown(s: dict) -> str:
    def gain(v: float | None, reason: str | None = None) -> str:
        if v is None and reason:
            return "within noise" if reason.startswith("gain within noise") else "n/a"
        return "n/a" if v is None else f"{v:.2f}"

    rmse_rows = [[r["name"], *(f"{r['rmse'][m]:.4f}" for m in METHODS),
                  gain(r["gain_captured"], r.get("gain_captured_reason")),
                  gain(r["gain_captured_small"], r.get("gain_captured_reason"))]
                 for r in s["problems"]]
    mean_reason = s.get("mean_gain_captured_reason")
    rmse_rows.append(["**average**", *(f"{s['mean_rmse'][m]:.4f}" for m in METHODS),
                      gain(s["mean_gain_captured"], mean_reason),
                      gain(s["mean_gain_captured_small"], mean_reason)])
    acc_rows = [[r["name"], *(f"{r['accuracy'][m]:.4f}" for m in METHODS),
                 *(f"{r['auc'][m]:.4f}" for m in ("ensemble", "mimic_munge", "mimic_small"))]
                for r in s["problems"]]
    cost_rows = [[r["name"], _fmt_bytes(r["size_bytes"]["ensemble"]),
                  f"{r['predict_seconds_10k']['ensemble']:.3f}",
                  *(v for m, key in (("mimic_munge", ""), ("mimic_small", "_small")) for v in (
                      arch_label(r["mimic_chosen"][m]), _fmt_bytes(r["size_bytes"][m]),
                      f"{r['size_ratio_vs_ensemble' + key]:.0f}x",
                      f"{r['predict_seconds_10k'][m]:.4f}",
                      f"{r['speedup_vs_ensemble' + key]:.0f}x")),
                  r["selection"]["distinct_models"], r["library"]["models"]]
                 for r in s["problems"]]
    trial_rows = [[r["name"], arch_label(t["hidden"]) + (
                       f" (fitted to the budget, {t['epochs']} epochs)"
                       if t.get("budget_fitted") else ""), f"{t['hillclimb_rmse']:.4f}",
                   _fmt_bytes(t["size_bytes"]), "yes" if t["within_budget"] else "no",
                   " ".join(k for k, flag in (("mimic_munge", t.get("chosen")),
                                              ("mimic_small", t.get("chosen_small"))) if flag)]
                  for r in s["problems"] for t in r["mimic_selection"]]
    ann_rows = [[r["name"], arch_label(r["ann_chosen"]["hidden"]), r["ann_chosen"]["epochs"],
                 f"{min(t['hillclimb_rmse'] for t in r['ann_selection']):.4f}"]
                for r in s["problems"]]
    proto = [[r["name"], r["description"], r["rows"]["train"], r["rows"]["hillclimb"],
              r["rows"]["test"], r["rows"]["input_features"], f"{r['positive_rate_test']:.2f}"]
             for r in s["problems"]]
    c = s["config"]

    def verdict(targets: dict) -> str:
        return ", ".join(f"{k} = {gain(s[k])} (target {v}): "
                         f"{'met' if s[k] is not None and s[k] >= v else 'MISSED'}"
                         for k, v in targets.items())

    return "\n".join([
        "# Model compression (Bucila, Caruana & Niculescu-Mizil 2006) on UCI data\n",
        "`kdistill reproduce model-compression`: per problem a library of scikit-learn models "
        "on the training rows, ensemble selection on the hillclimb rows (RMSE, sorted "
        f"initialization, replacement, {c['selection_bags']} bags, best prefix), and mimic "
        "nets trained on the ensemble's probabilities over the training rows plus MUNGE (or "
        "RANDOM) pseudo-data. Every choice (ensemble, best single model, ANN and mimic "
        "architectures) is made on the hillclimb rows; the test rows choose nothing. One seed; "
        "every net is the last epoch of a fixed schedule.\n",
        "## Test RMSE (the paper's Table 2)\n",
        "`single`: best library model on the hillclimb set; `ann`: the best net trained on the "
        "training rows' labels (architecture and epochs chosen on the hillclimb set); "
        "`mimic_munge`: the mimic architecture with the best hillclimb RMSE; `mimic_small`: the "
        f"best of those at most 1/{c['size_budget']:g} of the ensemble's size"
        + (" and of the nets fitted to that budget" if c.get("budget_fitted") else "")
        + "; `mimic_random`: "
        "mimic_munge's architecture on RANDOM pseudo-data. `gain`: (ann - mimic) / (ann - "
        "ensemble), the average row from the average RMSEs as in the paper (0.97 there).\n",
        markdown_table(["problem", *METHODS, "gain", "gain small"], rmse_rows),
        _noise_paragraph(s),
        f"Mean of the per-problem gains (mimic_munge): "
        f"{gain(s['mean_of_per_problem_gain_captured'])}; RANDOM pseudo-data instead of MUNGE: "
        f"{gain(s['mean_gain_captured_random'])}.\n",
        "## Accuracy and AUC\n",
        markdown_table(["problem", *(f"acc {m}" for m in METHODS), "AUC ensemble",
                        "AUC mimic_munge", "AUC mimic_small"], acc_rows),
        "## Size and speed (the paper's Tables 3-4)\n",
        "Size: pickled scikit-learn models with the encoder (ensemble: the selected models), "
        "the exported checkpoint (float32 weights, spec, encoding) for the nets. Time: best "
        "wall time to predict 10,000 test rows (drawn with replacement) on one thread, from "
        "rows already encoded (standardized, one-hot), as the encoding is the same "
        "preprocessing for every model.\n",
        markdown_table(["problem", "ensemble size", "ensemble s/10k", "mimic", "size",
                        "smaller", "s/10k", "faster", "mimic_small", "size", "smaller",
                        "s/10k", "faster", "selected models", "library"], cost_rows),
        f"Averaged over problems as in the paper (mean ensemble size over mean mimic size, "
        f"the same for time): mimic_munge is **{s['speedup_vs_ensemble']:.0f}x faster** and "
        f"**{s['size_ratio_vs_ensemble']:.0f}x smaller** than the ensemble; mimic_small "
        f"**{s['speedup_vs_ensemble_small']:.0f}x faster** and "
        f"**{s['size_ratio_vs_ensemble_small']:.0f}x smaller** (least on one problem: "
        f"{s['min_size_ratio_vs_ensemble_small']:.0f}x). From raw rows, encoding included, "
        f"mimic_munge is {s['speedup_vs_ensemble_from_raw_rows']:.0f}x faster.\n",
        "## Targets (issue 4)\n",
        f"- mimic_munge (the most accurate mimic): {verdict(s['targets'])}.",
        f"- mimic_small (the most accurate within the size budget): "
        f"{verdict(s['targets_small'])}.{_over_budget(s)}\n",
        "![RMSE per problem and selection trajectories](results.png)\n",
        "## Choices made on the hillclimb set\n",
        "Mimic candidates, each trained on the same labelled MUNGE transfer set (the fixed "
        f"candidates {c['epochs']} epochs; those fitted to the budget are the widest one- and "
        "two-layer nets whose export fits it, candidates for mimic_small only):\n",
        markdown_table(["problem", "architecture", "hillclimb RMSE", "export size",
                        f"within 1/{c['size_budget']:g} of ensemble", "kept as"], trial_rows),
        "ANN baseline (hard labels, training rows only):\n",
        markdown_table(["problem", "architecture", "epochs", "hillclimb RMSE"], ann_rows),
        "## Protocol\n",
        markdown_table(["problem", "definition", "train", "hillclimb", "test",
                        "encoded inputs", "positive rate"], proto),
        f"Library preset `{c['preset']}`; selection {c['selection_bags']} bags of "
        f"{c['selection_bag_fraction']:g} of the library, {c['selection_max_iter']} steps; "
        f"MUNGE k = {c['munge_k']} (p = {c['munge_p']:g}, s = {c['munge_s']:g}, "
        f"{c['munge_algorithm']}), so {c['munge_k']}n pseudo rows plus the n training rows; "
        f"mimics: {', '.join(arch_label(h) for h in c['mimic_hidden'])} hidden units, "
        f"{c['epochs']} epochs, Adam lr {c['lr']:g} with a cosine schedule, batch "
        f"{c['batch_size']}, cross-entropy to the ensemble's probabilities; ANN: the same "
        f"architectures x {', '.join(str(e) for e in c['ann_epochs'])} epochs, batch 128, "
        f"Adam lr 0.001. Seed {s['seeds'][0]}.\n",
        "## How this was made\n",
        f"- command: `{s['command']}`",
        f"- hardware: {s['hardware']}",
        f"- torch {s['torch']}, numpy {s['numpy']}, python {s['python']}",
        f"- wall time: {s['wall_seconds']:.0f} s" + (
            f" (this command; the problems' results it reused took "
            f"{s['reused_problem_seconds']:.0f} s when they were computed)"
            if s.get("reused_problem_seconds") else ""),
        "- per problem, wall time when computed: " + ", ".join(
            f"{r['name']} {r['wall_seconds']:.0f} s"
            + (f" (by `{r['computed_by']}`)" if r.get("computed_by") else "")
            for r in s["problems"]) + "\n",
    ])


def _noise_paragraph(s: dict) -> str:
    """The metric of the gains and whether each gain is beyond the test rows' noise."""
    metric = s.get("metric", "rmse")
    parts = []
    for r in s["problems"]:
        n = r.get("gain_noise")
        parts.append(f"{r['name']} {n['gain']:+.4f} [{n['ci95'][0]:+.4f}, {n['ci95'][1]:+.4f}]"
                     if n else f"{r['name']} not assessed")
    mean = s.get("mean_gain_noise")
    mean_text = (f"; the mean {mean['gain']:+.4f} [{mean['ci95'][0]:+.4f}, "
                 f"{mean['ci95'][1]:+.4f}] (normal, from the per-problem standard errors)"
                 if mean else "")
    reason = s.get("mean_gain_captured_reason")
    return (f"Gains are in test {metric} (the metric of selection and every choice). A gain "
            "captured is shown only where the ensemble's gain over the ANN is beyond the "
            "noise: its 95% paired bootstrap interval over the test rows lies above 0 "
            f"(test-sampling noise only, not seed-to-seed). Gain of the ensemble over the ANN "
            f"per problem: {'; '.join(parts)}{mean_text}."
            + (f" Average row: {reason}." if reason else "") + "\n")


def plot_summary(s: dict):
    import matplotlib.pyplot as plt

    problems = s["problems"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    ax = axes[0]
    width = 0.8 / len(METHODS)
    x = np.arange(len(problems))
    for i, m in enumerate(METHODS):
        ax.bar(x + (i - (len(METHODS) - 1) / 2) * width, [r["rmse"][m] for r in problems],
               width, label=m)
    ax.set_xticks(x)
    ax.set_xticklabels([r["name"] for r in problems])
    ax.set_ylabel("test RMSE")
    ax.set_title("test RMSE by problem (lower is better)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax = axes[1]
    for i, r in enumerate(problems):
        traj = np.asarray(r["selection"]["trajectory_mean"], dtype=float)
        ref = r["selection"].get("best_single_hillclimb_score",
                                 r["selection"]["best_single_hillclimb_rmse"])
        ax.plot(traj / ref, color=f"C{i}", label=r["name"])
    ax.axhline(1.0, color="k", linestyle=":", label="best single model")
    ax.set_xlabel("selection step (0 = sorted initialization)")
    ax.set_ylabel(f"hillclimb {s.get('metric', 'rmse')} / best single model's")
    ax.set_title("ensemble selection trajectories (mean over bags)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
