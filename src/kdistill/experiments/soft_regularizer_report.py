"""The soft-regularizer reproduction's report: the Markdown tables and the figure."""

from __future__ import annotations

from ..reporting import markdown_table
from .common import provenance_lines

__all__ = ["render_markdown", "plot", "percent"]


def render_markdown(r: dict, png_name: str) -> str:
    def pct(v):
        return "" if v is None else f"{100 * v:.2f}%"

    t = r["temperature"]
    rows = [[f"baseline, 100% ({r['full_train_size']} examples)",
             pct(r["full_data_train_accuracy"]), pct(r["full_data_accuracy"]), "last epoch"],
            [f"baseline, {100 * r['fraction']:g}% ({r['small_train_size']}), hard labels",
             pct(r["hard_final_train_accuracy"]), pct(r["hard_peak_accuracy"]),
             f"peak, epoch {r['hard_peak_epoch']} (early stop ON TEST, as the paper)"],
            ["", "", pct(r["hard_validation_stop_accuracy"]),
             f"epoch {r['hard_validation_stop_epoch']}, chosen on validation"],
            ["", "", pct(r["hard_final_accuracy"]), "last epoch"],
            [f"soft targets, {100 * r['fraction']:g}%, T = {t:g} (chosen on validation)",
             pct(r["soft_final_train_accuracy"]), pct(r["soft_final_accuracy"]),
             "last epoch, no early stopping"]]
    if r["jittered"]:
        j = r["jitter"]
        rows += [[f"hard labels, {100 * r['fraction']:g}%, {j}-pixel jitter",
                  pct(r["jittered"]["hard"]["train_accuracy"]),
                  pct(r["jittered"]["hard"]["test_accuracy"]), "last epoch"],
                 [f"soft targets, {100 * r['fraction']:g}%, T = {t:g}, {j}-pixel jitter "
                  "(teacher online)", pct(r["jittered"]["soft"]["train_accuracy"]),
                  pct(r["jittered"]["soft"]["test_accuracy"]), "last epoch"]]
    temps = [[k, pct(v["val_accuracy"]), pct(v["test_accuracy"])]
             for k, v in r["soft_by_temperature"].items()]
    gap = r["gap_recovered"]
    arch = "-".join(map(str, r["model"]["hidden"]))
    lines = [f"# Soft targets as a regularizer: {r['dataset']}\n",
             f"Every model: MLP {arch}, hidden dropout {r['model']['hidden_dropout']}, the same "
             f"recipe. The {100 * r['fraction']:g}% runs train {r['config']['small_epochs']} "
             f"epochs; soft weight {r['soft_weight']:g}, hard weight {r['hard_weight']:g}. "
             f"Train accuracy is on each run's own training examples. The first table is "
             f"seed {r['seeds'][0]}'s run; the second gives every row over the seeds "
             f"{', '.join(map(str, r['seeds']))}.\n",
             markdown_table(["system and training set", "train accuracy", "test accuracy",
                             "which epoch"], rows),
             f"- Share of the gap between the hard-label {100 * r['fraction']:g}% model's peak "
             f"and the full-data model recovered by soft targets (last epoch): "
             f"{'n/a' if gap is None else f'{100 * gap:.1f}%'} (the paper: 44.5% -> 57.0% of "
             "58.9%, i.e. 87%; target >= 87%).\n",
             *_seed_lines(r),
             "## Choosing T (validation split, last epoch)\n",
             markdown_table(["T", "validation accuracy", "test accuracy"], temps),
             f"![train and test accuracy per epoch]({png_name})\n",
             *provenance_lines(r)]
    return "\n".join(lines)


def _seed_lines(r: dict) -> list[str]:
    """The over-seeds table and the fraction curve (mean +- sd, paired 95% intervals)."""
    def pm(key):
        mean, sd = r[f"{key}_mean"], r[f"{key}_sd"]
        return f"{100 * mean:.2f}%" + ("" if sd is None else f" ± {100 * sd:.2f}")

    def ci(p):
        text = f"{100 * p['mean']:+.2f}"
        if p["interval"]:
            text += f" [{100 * p['interval'][0]:+.2f}, {100 * p['interval'][1]:+.2f}]"
        return text

    def gap(mean, ival):
        if mean is None:
            return "n/a"
        interval = f" [{percent(ival[0])}, {percent(ival[1])}]" if ival else ""
        return percent(mean) + interval

    n = len(r["seeds"])
    rows = [["baseline, 100%, last epoch", pm("full_data_accuracy")],
            ["hard labels, peak (early stop on test)", pm("hard_peak_accuracy")],
            ["hard labels, epoch chosen on validation", pm("hard_validation_stop_accuracy")],
            ["hard labels, last epoch", pm("hard_final_accuracy")],
            ["soft targets, last epoch", pm("soft_final_accuracy")]]
    lines = [f"## Over {n} seed(s): test accuracy, mean ± sd\n",
             markdown_table(["row", "test accuracy"], rows),
             f"- gap recovered (from the hard-label peak, per seed then averaged): "
             f"{gap(r['gap_recovered_mean'], r['gap_recovered_interval'])} (95% interval); "
             f"from the validation-chosen stop instead: "
             f"{gap(r['gap_recovered_from_validation_stop_mean'], r['gap_recovered_from_validation_stop_interval'])}",  # noqa: E501
             f"- soft minus hard labels, paired by seed, points: last epoch "
             f"{ci(r['soft_minus_hard_final'])}; against the validation-chosen stop "
             f"{ci(r['soft_minus_hard_validation_stop'])}",
             f"- T chosen on validation per seed: "
             f"{', '.join(f'{t:g}' for t in r['temperature_per_seed'])}\n"]
    curve = r.get("fraction_curve") or []
    if len(curve) > 1:
        body = [[f"{100 * c['fraction']:g}%", c["small_train_size"], c["small_epochs"],
                 f"{100 * c['hard_peak_accuracy_mean']:.2f}%",
                 f"{100 * c['soft_final_accuracy_mean']:.2f}%",
                 f"{100 * c['full_data_accuracy_mean']:.2f}%",
                 gap(c["gap_recovered_mean"], c["gap_recovered_interval"])] for c in curve]
        lines += ["## Gap recovered against the data fraction (mean over seeds)\n",
                  markdown_table(["fraction", "examples", "epochs", "hard peak (on test)",
                                  "soft, last epoch", "full data", "gap recovered [95%]"],
                                 body)]
    return lines


def plot(r: dict):
    import matplotlib.pyplot as plt

    curve = r.get("fraction_curve") or []
    fig, axes = plt.subplots(1, 2 if len(curve) > 1 else 1,
                             figsize=(14 if len(curve) > 1 else 8, 5), squeeze=False)
    ax = axes[0][0]
    if len(curve) > 1:
        _plot_curve(axes[0][1], curve)
    frac = f"{100 * r['fraction']:g}%"
    t = r["temperature"]
    series = [(f"{frac} hard labels", r["hard"], "C3"),
              (f"{frac} soft targets T={t:g}", r["soft_by_temperature"][f"{t:g}"], "C0")]
    if r["jittered"]:
        series += [(f"{frac} hard, jitter", r["jittered"]["hard"], "C1"),
                   (f"{frac} soft, jitter", r["jittered"]["soft"], "C2")]
    for label, row, color in series:
        epochs = range(1, len(row["test_accuracy_curve"]) + 1)
        ax.plot(epochs, [100 * v for v in row["test_accuracy_curve"]], color=color,
                label=f"{label}: test")
        ax.plot(epochs, [100 * v for v in row["train_accuracy_curve"]], color=color,
                linestyle=":", label=f"{label}: train")
    ax.axhline(100 * r["full_data_accuracy"], color="black", linestyle="--",
               label="100% baseline: test")
    ax.plot([r["hard_peak_epoch"]], [100 * r["hard_peak_accuracy"]], "v", color="C3",
            label="hard-label peak (test)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    low = min(min(row["test_accuracy_curve"][len(row["test_accuracy_curve"]) // 10:])
              for _, row, _ in series)
    ax.set_ylim(100 * low - 2, 100.5)
    ax.set_title(f"{r['dataset']}: soft targets as a regularizer ({frac} of the data)")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _plot_curve(ax, curve: list[dict]) -> None:
    xs = [100 * c["fraction"] for c in curve]
    ys = [100 * (c["gap_recovered_mean"] or 0.0) for c in curve]
    err = [100 * (c["gap_recovered_sd"] or 0.0) for c in curve]
    ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label="soft targets (mean ± sd)")
    ax.axhline(87, color="black", linestyle="--", label="the paper at 3% (87%)")
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:g}%" for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("share of the training set")
    ax.set_ylabel("gap to the full-data model recovered (%)")
    ax.set_title("recovery against the data fraction")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def percent(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"
