"""The hinton-mnist experiment's report: the teacher / student / distilled table, the teacher
recipe chosen on validation and the width x temperature sweep as Markdown, and the learning-curve
and errors-vs-temperature figure, both read from the results dict alone."""

from __future__ import annotations

import numpy as np

from ..reporting import markdown_table

__all__ = ["render_markdown", "plot_sweep"]


def _teacher_label(r: dict) -> str:
    arch = "-".join(map(str, r["teacher_model"]["hidden"]))
    label = f"{r['teacher_recipe']}: {arch}, dropout, max-norm, jitter {r['teacher_jitter']}"
    members = r.get("teacher_members", 1)
    if members > 1:
        label = (f"ensemble of {members} x [{label}], mean of probabilities; members' errors "
                 f"{', '.join(map(str, r['teacher_member_errors']))}")
    return label


def render_markdown(r: dict, png_name: str) -> str:
    n = r["test_size"]
    rows = [
        [f"teacher ({_teacher_label(r)})", r["teacher_errors"],
         f"{100 * r['teacher_errors'] / n:.2f}%", r["teacher"]["parameters"]],
        [f"student {r['student_hidden']}-{r['student_hidden']}, hard labels only",
         r["student_errors"], f"{100 * r['student_errors'] / n:.2f}%",
         r["student"]["parameters"]],
        [f"student {r['student_hidden']}-{r['student_hidden']}, distilled at T = "
         f"{r['temperature']:g}", r["distilled_errors"], f"{100 * r['distilled_errors'] / n:.2f}%",
         r["distilled"]["parameters"]],
    ]
    gap = r["gap_recovered"]
    lines = [
        f"# Hinton et al. (2015) MNIST protocol on {r['dataset']}\n",
        f"Test set: {n} examples. Last epoch, one seed ({r['seeds'][0]}); nothing was selected "
        "on the test set.\n",
        markdown_table(["model", "test errors", "error rate", "parameters"], rows),
        f"Share of the teacher-student gap recovered by distillation: "
        f"{'n/a (teacher not better than student)' if gap is None else f'{100 * gap:.1f}%'} "
        "(the paper: 91%, 146 -> 74 errors with the teacher at 67).\n",
    ]
    if r["teacher_selection"]:
        sel = [[k, v["validation_errors"], v["validation_size"]]
               for k, v in r["teacher_selection"].items()]
        lines += ["## Teacher recipe, chosen on a validation split of the training set\n",
                  markdown_table(["recipe", "validation errors", "validation size"], sel),
                  f"Chosen: **{r['teacher_recipe']}**, then retrained on all "
                  f"{r['train_size']} training cases.\n"]
    sw = r["sweep"]
    if len(sw["temperatures"]) > 1:
        header = ["hidden units", "hard labels"] + [f"T={t:g}" for t in sw["temperatures"]]
        body = [[h, hard] + ["" if e is None else e for e in errs]
                for h, hard, errs in zip(sw["hidden"], sw["hard_label_errors"], sw["errors"])]
        lines += ["## Test errors by student width and temperature\n",
                  markdown_table(header, body)]
    lines += [f"![errors against temperature]({png_name})\n",
              "## How this was made\n",
              f"- command: `{r['command']}`",
              f"- hardware: {r['hardware']}",
              f"- torch {r['torch']}, python {r['python']}",
              f"- wall time of this invocation: {r['wall_seconds']:.0f} s; training time "
              f"summed over all runs (including any earlier, resumed invocations): "
              f"{r['compute_seconds']:.0f} s",
              f"- data: {r['data_source']}\n"]
    return "\n".join(lines)


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
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if has_sweep:
        ax = axes[1]
        for i, (h, errs, hard) in enumerate(zip(sw["hidden"], sw["errors"],
                                                sw["hard_label_errors"])):
            pts = [(t, e) for t, e in zip(sw["temperatures"], errs) if e is not None]
            ax.plot(*zip(*pts), marker="o", color=f"C{i}", label=f"{h}-{h} distilled")
            ax.axhline(hard, color=f"C{i}", linestyle=":", label=f"{h}-{h} hard labels")
        ax.axhline(r["teacher_errors"], color="black", linestyle="--", label="teacher")
        ax.set_xscale("log")
        ax.set_xticks(sw["temperatures"])
        ax.set_xticklabels([f"{t:g}" for t in sw["temperatures"]])
        ax.minorticks_off()
        ax.set_xlabel("temperature T")
        ax.set_ylabel(f"test errors (of {r['test_size']})")
        ax.set_title("errors vs temperature (last epoch, 1 seed)")
        ax.legend(fontsize=8, ncol=2)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
