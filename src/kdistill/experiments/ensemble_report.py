"""The ensemble experiment's report: the Table 1 style Markdown (accuracy, NLL, parameters and
inference cost of the baseline, the members, the ensemble, the distilled and self-distilled
models; the validation choice of T) and the accuracy / learning-curve figure, both read from the
results dict alone."""

from __future__ import annotations

from ..reporting import markdown_table
from .common import provenance_lines

__all__ = ["render_markdown", "plot", "pct_or_na"]


def pct_or_na(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def render_markdown(r: dict, png_name: str) -> str:
    def pct(v):
        return "" if v is None else f"{100 * v:.2f}%"

    n, ms1, ms_e = r["members"], r["distilled_ms_per_1000"], r["ensemble_ms_per_1000"]
    rows = [["baseline (member 0)", pct(r["baseline_accuracy"]), f"{r['baseline_nll']:.4f}",
             r["single_parameters"], f"{ms1:.2f}"],
            [f"members, mean ± std of {n}",
             f"{100 * r['member_accuracy_mean']:.2f}% ± {100 * r['member_accuracy_std']:.2f}",
             "", r["single_parameters"], f"{ms1:.2f}"],
            *([["control: baseline recipe, hard labels, on the students' transfer set and "
                "schedule", pct(r["control_baseline_accuracy"]),
                f"{r['rows']['control_baseline']['test_nll']:.4f}", r["single_parameters"],
                f"{ms1:.2f}"]] if r.get("control_baseline_accuracy") is not None else []),
            [f"{n}x ensemble ({r['combine']})", pct(r["ensemble_accuracy"]),
             f"{r['ensemble_nll']:.4f}", r["ensemble_parameters"], f"{ms_e:.2f}"]]
    for t, row in r["distilled_by_temperature"].items():
        mark = " **(chosen on validation)**" if float(t) == r["temperature"] else ""
        rows.append([f"distilled from the ensemble, T = {t}{mark}", pct(row["test_accuracy"]),
                     f"{row['test_nll']:.4f}", row["parameters"], f"{ms1:.2f}"])
    if r["self_distilled_accuracy"] is not None:
        rows.append([f"self-distilled from member 0, T = {r['temperature']:g}",
                     pct(r["self_distilled_accuracy"]), f"{r['self_distilled_nll']:.4f}",
                     r["single_parameters"], f"{ms1:.2f}"])
    val = [[t, pct(row["val_accuracy"])]
           for t, row in r["distilled_by_temperature"].items()]
    gain = r["gain_recovered"]
    arch = "-".join(map(str, r["model"]["hidden"]))
    lines = [
        f"# Ensemble distillation and self-distillation on {r['dataset']}\n",
        f"Every model: MLP {r['model']['in_features']}-{arch}-{r['model']['num_classes']}, "
        f"hidden dropout {r['model'].get('hidden_dropout', 0)}, trained on {r['train_size']} "
        f"examples ({r['validation_size']} held out for choosing T)"
        + (f", members shifted online by up to {r['config']['member_jitter']} pixel(s)"
           if r["config"].get("member_jitter") else "") + ". Distilled students: "
        f"hidden dropout {r['student_model'].get('hidden_dropout', 0)}, "
        f"{r['config']['student_epochs'] or r['config']['epochs']} epochs over a transfer set of "
        f"{r['transfer_size']} images" + (f" (the training images and {r['transfer_copies']} "
                                           "copies shifted by up to "
                                           f"{r['config']['transfer_jitter']} pixel(s))"
                                           if r["transfer_copies"] else "")
        + f", soft weight {r['soft_weight']:g}, hard weight {r['hard_weight']:g}. Test set: "
        f"{r['test_size']}. Last epoch. The first table is seed {r['seeds'][0]}'s run; the "
        f"second gives the figures over the seeds {', '.join(map(str, r['seeds']))}.\n",
        markdown_table(["model", "test accuracy", "test NLL", "parameters",
                        f"ms per 1,000 examples ({r['timing_device']})"], rows),
        f"- Share of the ensemble's accuracy gain recovered by the distilled model: "
        f"{'n/a (no gain)' if gain is None else f'{100 * gain:.1f}%'} over the baseline, "
        f"{pct_or_na(r['gain_recovered_vs_member_mean'])} over the mean member (the paper: 86%; "
        f"target >= 86%), at {ms1 / ms_e:.3f} of the ensemble's inference time.",
        f"- Self-distillation beats its teacher: {r['self_distillation_beats_teacher']}.",
        *([f"- Control: the baseline recipe with hard labels on the students' transfer set "
           f"reaches {100 * r['control_baseline_accuracy']:.2f}%; a distilled model that does "
           "not beat it owes its gain to the transfer set, not to the soft targets."]
          if r.get("control_baseline_accuracy") is not None else []),
        "",
        *_seed_lines(r),
        "## Choosing T (validation split, never the test set)\n",
        markdown_table(["T", "validation accuracy"], val),
        f"![accuracy against cost]({png_name})\n",
        *provenance_lines(r),
    ]
    return "\n".join(lines)


def _seed_lines(r: dict) -> list[str]:
    """The figures over seeds: mean ± sd per row and the paired differences with 95%
    intervals."""
    if "distilled_accuracy_mean" not in r:
        return []

    def pm(key):
        sd = r.get(f"{key}_sd")
        return f"{100 * r[f'{key}_mean']:.2f}%" + ("" if sd is None else f" ± {100 * sd:.2f}")

    def ci(p):
        text = f"{100 * p['mean']:+.2f}"
        if p["interval"]:
            text += f" [{100 * p['interval'][0]:+.2f}, {100 * p['interval'][1]:+.2f}]"
        return text

    labels = {"baseline_accuracy": "baseline (member 0)",
              "member_accuracy_mean": "mean member",
              "control_baseline_accuracy": "control: hard labels, students' schedule",
              "ensemble_accuracy": f"{r['members']}x ensemble",
              "distilled_accuracy": "distilled (T chosen on validation per seed)",
              "self_distilled_accuracy": "self-distilled"}
    rows = [[label, pm(key)] for key, label in labels.items() if f"{key}_mean" in r]
    diffs = [[f"distilled minus {k.replace('_', ' ')}", ci(p)]
             for k, p in r["distilled_minus"].items()]
    if "self_distilled_minus_baseline" in r:
        diffs.append(["self-distilled minus baseline", ci(r["self_distilled_minus_baseline"])])
    g, gi = r["gain_recovered_mean"], r["gain_recovered_interval"]
    gain = "n/a" if g is None else f"{100 * g:.1f}%" + (
        "" if not gi else f" (95% interval [{100 * gi[0]:.1f}%, {100 * gi[1]:.1f}%])")
    return [f"## Over {len(r['seeds'])} seed(s): test accuracy, mean ± sd\n",
            markdown_table(["model", "test accuracy"], rows),
            markdown_table(["paired by seed", "points [95% interval]"], diffs),
            f"- Gain recovered over the baseline, per seed then averaged: {gain}; per seed "
            f"{', '.join(pct_or_na(v) for v in r['gain_recovered_per_seed'])}; over the mean "
            f"member: {pct_or_na(r['gain_recovered_vs_member_mean_mean'])}. Inference cost: "
            f"the distilled model takes 1/{r['cost_ratio_mean']:.1f} of the ensemble's time "
            "(mean over seeds).",
            f"- T chosen per seed: {', '.join(f'{t:g}' for t in r['temperature_per_seed'])}\n"]


def plot(r: dict):
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    labels = ["baseline", f"{r['members']}x ensemble"]
    values = [r["baseline_accuracy"], r["ensemble_accuracy"]]
    for t, row in r["distilled_by_temperature"].items():
        labels.append(f"distilled T={t}")
        values.append(row["test_accuracy"])
    if r["self_distilled_accuracy"] is not None:
        labels.append(f"self-distilled T={r['temperature']:g}")
        values.append(r["self_distilled_accuracy"])
    colors = ["C0", "C3"] + ["C1"] * len(r["distilled_by_temperature"]) + ["C2"]
    ax.barh(range(len(values)), [100 * v for v in values], color=colors[:len(values)])
    ax.set_yticks(range(len(values)), labels)
    lo = 100 * min(values) - 1
    ax.set_xlim(lo, 100 * max(values) + 0.5)
    for i, v in enumerate(values):
        ax.text(100 * v + 0.03, i, f"{100 * v:.2f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%)")
    ax.set_title(f"{r['dataset']}: last epoch, seed {r['seeds'][0]}")
    ax.grid(alpha=0.3, axis="x")
    rows = [("baseline", r["rows"]["baseline"], "C0:"),
            (f"distilled T={r['temperature']:g}",
             r["distilled_by_temperature"][f"{r['temperature']:g}"], "C1-")]
    if r["rows"]["self_distilled"]:
        rows.append(("self-distilled", r["rows"]["self_distilled"], "C2-"))
    if r["rows"].get("control_baseline"):
        rows.append(("control: hard labels on the transfer set", r["rows"]["control_baseline"],
                     "C0--"))
    for label, row, style in rows:
        curve = row["test_accuracy_curve"]
        ax2.plot(range(1, len(curve) + 1), [100 * v for v in curve], style, label=label)
    ax2.axhline(100 * r["ensemble_accuracy"], color="C3", linestyle="--",
                label=f"{r['members']}x ensemble")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy (%)")
    ax2.set_ylim(lo, 100 * max(values) + 0.5)
    ax2.set_title("learning curves")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return fig
