"""The hinton-mnist experiment's report: the teacher / student / distilled table, the teacher
recipe chosen on validation and the width x temperature sweep as Markdown, the learning-curve
and errors-vs-temperature figure, both read from the results dict alone, and the lines the command
prints at the end."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..reporting import markdown_table

if TYPE_CHECKING:
    from .hinton_mnist import HintonMnistConfig

__all__ = ["render_markdown", "plot_sweep", "summary"]


def _teacher_label(r: dict) -> str:
    spec = r["teacher_model"]
    if spec["name"] == "cnn":
        label = (f"{r['teacher_recipe']}: conv {'-'.join(map(str, spec['channels']))}, dense "
                 f"{spec['hidden']}, dropout {spec['dropout']}")
    else:
        label = (f"{r['teacher_recipe']}: {'-'.join(map(str, spec['hidden']))}, dropout, "
                 "max-norm")
    label += f", jitter {r['teacher_jitter']}"
    members = r.get("teacher_members", 1)
    if members > 1:
        label = (f"ensemble of {members} x [{label}], mean of probabilities; members' errors "
                 f"{', '.join(map(str, r['teacher_member_errors']))}")
    return label


def _pm(mean: float | None, sd: float | None, digits: int = 1) -> str:
    if mean is None:
        return ""
    return f"{mean:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def _ci(p: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    if p is None:
        return ""
    text = f"{scale * p['mean']:+.{digits}f}"
    if p["interval"] is not None:
        lo, hi = (scale * v for v in p["interval"])
        text += f" [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    return text


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def render_markdown(r: dict, png_name: str) -> str:
    n, seeds = r["test_size"], r["seeds"]
    best = "student_errors_best_val_mean" in r
    h = r["student_hidden"]
    rows = [[f"teacher ({_teacher_label(r)})", r["teacher_errors"], "",
             f"{100 * r['teacher_errors'] / n:.2f}%", r["teacher"]["parameters"]]]
    for key, label in (("student_errors", f"student {h}-{h}, hard labels only"),
                       ("distilled_errors", f"student {h}-{h}, distilled at T = "
                                            f"{r['temperature']:g}")):
        mean = r.get(f"{key}_mean", r[key])
        rows.append([label, _pm(mean, r.get(f"{key}_sd")),
                     _pm(r.get(f"{key}_best_val_mean"), r.get(f"{key}_best_val_sd")),
                     f"{100 * mean / n:.2f}%", r[key.split("_")[0]]["parameters"]])
    reading = ("Last epoch; the best-on-validation column reads each run's test errors at the "
               "epoch its validation errors were lowest." if best else "Last epoch.")
    gap_line = (f"Share of the teacher-student gap recovered by distillation: "
                f"{_pct(r['gap_recovered'])} of the mean gap")
    if r.get("gap_recovered_mean") is not None:
        ci = r["gap_recovered_interval"]
        gap_line += (f"; per seed {', '.join(_pct(g) for g in r['gap_recovered_per_seed'])}, "
                     f"mean {_pct(r['gap_recovered_mean'])}" +
                     ("" if ci is None else f", 95% interval [{_pct(ci[0])}, {_pct(ci[1])}]"))
    if best and r.get("gap_recovered_best_val_mean") is not None:
        gap_line += f"; best-on-validation mean {_pct(r['gap_recovered_best_val_mean'])}"
    diff = r.get("distilled_minus_student")
    lines = [
        f"# Hinton et al. (2015) MNIST protocol on {r['dataset']}\n",
        f"Test set: {n} examples; training set {r['train_size']}"
        + (f", validation {r['validation_size']} held out of it" if r.get("validation_size")
           else "") + f". Seeds {', '.join(map(str, seeds))} ({len(seeds)}; mean ± sd over "
        "seeds, one teacher). " + reading + " Nothing was selected on the test set.\n",
        markdown_table(["model", "test errors", "best on validation", "error rate",
                        "parameters"], rows),
        gap_line + " (the paper: 91%, 146 -> 74 errors with the teacher at 67).\n",
    ]
    if diff is not None:
        zero = {None: "", True: ", excludes 0", False: ", includes 0"}[diff["excludes_zero"]]
        lines.append(f"Distilled minus hard-label student, paired by seed: "
                     f"{_ci(diff)} test errors (95% interval{zero}).\n")
    if r.get("schedule_selection"):
        sel = [[e, v["validation_errors"]] for e, v in r["schedule_selection"].items()]
        lines += ["## Student schedule, chosen on validation\n",
                  markdown_table(["epochs", f"validation errors ({h}-{h} at T = "
                                            f"{r['config']['temperature']:g}, seed "
                                            f"{r['config']['seed']})"], sel),
                  f"Chosen: **{r['student_epochs']} epochs** for every student; the headline T "
                  f"({r['temperature']:g}) is the one whose {h}-{h} students made the fewest "
                  "validation errors, summed over seeds.\n"]
    if r["teacher_selection"]:
        sel = [[k, v["validation_errors"], v["validation_size"]]
               for k, v in r["teacher_selection"].items()]
        lines += ["## Teacher recipe, chosen on a validation split of the training set\n",
                  markdown_table(["recipe", "validation errors", "validation size"], sel),
                  f"Chosen: **{r['teacher_recipe']}**, then retrained.\n"]
    lines += _sweep_lines(r)
    lines += [f"![errors against temperature]({png_name})\n",
              "## How this was made\n",
              f"- command: `{r['command']}`",
              f"- hardware: {r['hardware']}",
              f"- torch {r['torch']}, python {r['python']}",
              f"- wall time of this invocation: {r['wall_seconds']:.0f} s; training time "
              f"summed over all runs (including any earlier, resumed invocations): "
              f"{r['compute_seconds']:.0f} s",
              "- the same seed on the same CPU gives bit-identical runs (resumed or not); on "
              "another processor a rerun of the digits reproduction differed by up to one "
              "test error per cell (floating-point reduction order), well inside the "
              "seed-to-seed spread",
              f"- data: {r['data_source']}\n"]
    return "\n".join(lines)


def _sweep_lines(r: dict) -> list[str]:
    sw = r["sweep"]
    if len(sw["temperatures"]) <= 1:
        return []
    sds = sw.get("errors_sd") or [[None] * len(sw["temperatures"]) for _ in sw["hidden"]]
    hard_sd = sw.get("hard_label_errors_sd") or [None] * len(sw["hidden"])
    header = ["hidden units", "hard labels"] + [f"T={t:g}" for t in sw["temperatures"]]
    body = [[h, _pm(hard, hsd)] + [_pm(e, sd) for e, sd in zip(errs, sd_row)]
            for h, hard, hsd, errs, sd_row in zip(sw["hidden"], sw["hard_label_errors"],
                                                  hard_sd, sw["errors"], sds)]
    lines = ["## Test errors by student width and temperature (mean ± sd over seeds)\n",
             markdown_table(header, body)]
    if "minus_hard" in sw:
        body = [[h] + [_ci(p) for p in row] for h, row in zip(sw["hidden"], sw["minus_hard"])]
        lines += ["Distilled minus hard-label test errors, paired by seed, with 95% "
                  "intervals (negative: distillation helped):\n",
                  markdown_table(["hidden units"] + [f"T={t:g}" for t in sw["temperatures"]],
                                 body)]
    if "val_errors" in sw:
        body = [[h, f"{sw['chosen_temperature'][str(h)]:g}"]
                + [_pm(e, None) for e in errs] for h, errs in zip(sw["hidden"],
                                                                  sw["val_errors"])]
        lines += ["Validation errors (mean over seeds) and the T they choose per width:\n",
                  markdown_table(["hidden units", "chosen T"]
                                 + [f"T={t:g}" for t in sw["temperatures"]], body)]
    return lines


def plot_sweep(r: dict):
    """Left: test errors per epoch of teacher, student and distilled student. Right (with a
    sweep): errors against T for each student width, hard-label baselines dotted."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sw = r["sweep"]
    has_sweep = len(sw["temperatures"]) > 1
    fig, axes = plt.subplots(1, 2 if has_sweep else 1, figsize=(13 if has_sweep else 7, 4.5))
    axes = list(np.atleast_1d(axes))
    ax = axes[0]
    teacher_label = "teacher" if r.get("teacher_members", 1) == 1 else "teacher member 1"
    if r.get("teacher_members", 1) > 1:
        ax.axhline(r["teacher_errors"], color="black", linestyle="-.", label="teacher ensemble")
    for key, label, style in (("teacher", teacher_label, "k--"),
                              ("student", "student, hard labels", "C0:"),
                              ("distilled", f"student, distilled T={r['temperature']:g}", "C1-")):
        curve = r[key]["curve"]
        ax.plot(range(1, len(curve) + 1), curve, style, label=label)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"test errors (of {r['test_size']})")
    ax.set_title(f"{r['dataset']}: learning curves")
    ax.set_ylim(0, 3 * max(r["student_errors"], 1))
    if r.get("student_epochs"):
        ax.set_xlabel(f"epoch (students: {r['student_epochs']}; seed {r['seeds'][0]})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if has_sweep:
        ax = axes[1]
        for i, (h, errs, hard) in enumerate(zip(sw["hidden"], sw["errors"],
                                                sw["hard_label_errors"])):
            sds = (sw.get("errors_sd") or [[None] * len(errs)] * len(sw["hidden"]))[i]
            pts = [(t, e, sd or 0.0) for t, e, sd in zip(sw["temperatures"], errs, sds)
                   if e is not None]
            ts, es, ss = zip(*pts)
            ax.errorbar(ts, es, yerr=ss, marker="o", color=f"C{i}", capsize=3,
                        label=f"{h}-{h} distilled")
            ax.axhline(hard, color=f"C{i}", linestyle=":", label=f"{h}-{h} hard labels")
        ax.axhline(r["teacher_errors"], color="black", linestyle="--", label="teacher")
        ax.set_xscale("log")
        ax.set_xticks(sw["temperatures"])
        ax.set_xticklabels([f"{t:g}" for t in sw["temperatures"]])
        ax.minorticks_off()
        ax.set_xlabel("temperature T")
        ax.set_ylabel(f"test errors (of {r['test_size']})")
        ax.set_title(f"errors vs temperature (last epoch, mean ± sd of {len(r['seeds'])} "
                     "seed(s))")
        ax.legend(fontsize=8, ncol=2)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def summary(r: dict, cfg: HintonMnistConfig) -> list[str]:
    """The lines `kdistill reproduce hinton-mnist` (and `kdistill demo`) print at the end."""
    n, seeds = r["test_size"], len(r["seeds"])
    lines = ["", f"{'model':<44} {'test errors':>12} {'error rate':>11}"
             + (f"   (mean of {seeds} seeds)" if seeds > 1 else "")]
    for key, label in (("teacher", f"teacher ({r['teacher_recipe']})"),
                       ("student", "student, hard labels"),
                       ("distilled", f"student, distilled at T={r['temperature']:g}")):
        e = r.get(f"{key}_errors_mean", r[f"{key}_errors"])
        lines.append(f"{label:<44} {e:>12.1f} {100 * e / n:>10.2f}%")
    if r["gap_recovered"] is not None:
        lines.append(f"gap recovered by distillation: {100 * r['gap_recovered']:.1f}%")
    lines.append(f"report: {Path(cfg.out) / 'results.md'} (+ .json, .png); wall time "
                 f"{r['wall_seconds']:.0f} s")
    return lines
