"""The league's numbers and report: per-student means over seeds, the paired difference against
KD with a 95% t-interval, the Markdown table and the bar chart, all from the cells' rows."""

from __future__ import annotations

import math

from ..reporting import markdown_table
from .common import provenance_lines

__all__ = ["t_quantile", "paired_interval", "aggregate", "render_markdown", "plot"]

# Two-sided 95% points of Student's t (the 0.975 quantile) for 1..30 degrees of freedom, used
# when scipy is absent; beyond 30 the normal's 1.960 is within 0.05 of the truth.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom."""
    try:
        from scipy.stats import t
    except ImportError:
        return _T975[df - 1] if df <= len(_T975) else 1.960
    return float(t.ppf(0.975, df))


def _mean(v: list[float]) -> float | None:
    return sum(v) / len(v) if v else None


def _sd(v: list[float]) -> float | None:
    """Sample standard deviation (n - 1); None below two values."""
    if len(v) < 2:
        return None
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def paired_interval(a: list[float], b: list[float]) -> dict:
    """Mean of the paired differences a_i - b_i and its 95% t-interval, mean +- t(0.975, n-1)
    * sd / sqrt(n) (low and high None below two pairs)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    mean, sd = _mean(d), _sd(d)
    if sd is None:
        return {"mean": mean, "low": None, "high": None, "n": len(d)}
    half = t_quantile(len(d) - 1) * sd / math.sqrt(len(d))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(d)}


def _summary(seeds: dict[int, dict]) -> dict:
    acc = [r["test_accuracy"] for r in seeds.values()]
    return {"accuracy_mean": _mean(acc), "accuracy_sd": _sd(acc), "n_seeds": len(acc),
            "val_chosen_accuracy_mean": _mean([r["val_chosen_test_accuracy"]
                                               for r in seeds.values()]),
            "seconds_per_epoch": _mean([r["seconds_per_epoch"] for r in seeds.values()]),
            "per_seed": {str(k): {"accuracy": r["test_accuracy"],
                                  "val_chosen_accuracy": r["val_chosen_test_accuracy"],
                                  "chosen_epoch": r["chosen_epoch"],
                                  "seconds_per_epoch": r["seconds_per_epoch"],
                                  "test_accuracy_curve": r["test_accuracy_curve"]}
                         for k, r in sorted(seeds.items())}}


def aggregate(rows: dict[str, dict[int, dict]], teacher_accuracy: float, method_names: list[str],
              outputs: dict[str, dict]) -> dict:
    """{"plain": ..., "methods": {name: ...}} of one student from its cells' rows
    (rows[method][seed]); `outputs` says per method how it reads the teacher and with which
    parameters. Gap recovered is per seed against that seed's plain student, then averaged;
    the difference against KD pairs the seeds both have."""
    plain = rows.get("plain", {})
    kd = rows.get("kd", {})
    plain_cost = _mean([r["seconds_per_epoch"] for r in plain.values()])
    table = {}
    for name in method_names:
        if name not in outputs:   # skipped for this student
            continue
        seeds = rows.get(name, {})
        entry = {**_summary(seeds), **outputs[name]}
        gaps = [(r["test_accuracy"] - plain[k]["test_accuracy"])
                / (teacher_accuracy - plain[k]["test_accuracy"])
                for k, r in seeds.items()
                if k in plain and teacher_accuracy > plain[k]["test_accuracy"]]
        entry["gap_recovered"] = _mean(gaps)
        both = sorted(set(seeds) & set(kd))
        entry["delta_vs_kd"] = (None if name == "kd" or not both else paired_interval(
            [seeds[k]["test_accuracy"] for k in both], [kd[k]["test_accuracy"] for k in both]))
        entry["epoch_cost_vs_plain"] = (entry["seconds_per_epoch"] / plain_cost
                                        if entry["seconds_per_epoch"] and plain_cost else None)
        table[name] = entry
    return {"plain": _summary(plain), "methods": table}


# ------------------------------------------------------------------------------- the report


def _pct(v: float | None, sd: float | None = None) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.2f}" + ("" if sd is None else f" ± {100 * sd:.2f}")


def _delta(d: dict | None) -> str:
    if d is None or d["mean"] is None:
        return ""
    if d["low"] is None:
        return f"{100 * d['mean']:+.2f}"
    return f"{100 * d['mean']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"


def _layers(p: dict) -> str:
    s, t = p.get("student_layer"), p.get("teacher_layer")
    if s is None:
        return "logits"
    join = ", ".join if isinstance(s, list) else str
    return f"{join(s)} → {join(t)}"


def _augmentation(sched: dict) -> str:
    aug = sched.get("augmentation")
    if not aug:
        return "no augmentation"
    if aug["views"] > 1:
        return (f"images shifted by up to {aug['jitter']} pixel(s), the distilled cells "
                f"replaying {aug['views']} cached teacher-labelled views of each image (the "
                "plain student: a fresh shift every epoch)")
    return f"images shifted by up to {aug['jitter']} pixel(s) (fresh shifts, teacher online)"


def render_markdown(r: dict, png_name: str) -> str:
    t = r["teacher"]
    sched = r["schedule"]
    lines = [f"# The league on {r['dataset']}\n",
             f"Teacher: {t['name']} ({t['parameters']:,} parameters, {t['flops'] / 1e6:.1f} M "
             f"multiply-adds per image), {t['epochs']} epochs with up to {t['jitter']} pixel(s) "
             f"of shift: **{_pct(t['accuracy'])}%** test accuracy at its last epoch. Training "
             f"set {r['train_size']:,} images ({r['validation_size']:,} held out for choosing "
             f"epochs), test set {r['test_size']:,}. Every student cell: {sched['epochs']} "
             f"epochs, {sched['optimizer']} (momentum {sched['momentum']}), lr "
             f"{sched['lr']:g} with a {sched['schedule']} schedule, weight decay "
             f"{sched['weight_decay']:g}, batch {sched['batch_size']}, {_augmentation(sched)}; "
             f"seeds {r['seeds']}.\n",
             "Accuracy: test accuracy (%) at the last epoch, mean ± sd over seeds; *at val "
             "epoch*: at the epoch of best validation accuracy. *Gap recovered*: share of the "
             "teacher − plain-student gap, per seed, averaged. *Δ vs kd*: mean paired "
             "difference against kd on the same seeds, points, with its 95% t-interval. "
             "*Cost*: training seconds per epoch over the plain student's (cells that ran "
             "beside others in parallel are timed as they ran).\n"]
    for name, st in r["students"].items():
        p = st["plain"]
        lines.append(f"## {name}: {st['parameters']:,} parameters, {st['flops'] / 1e6:.2f} M "
                     f"multiply-adds ({100 * st['flops_vs_teacher']:.1f}% of the teacher's), "
                     f"transfer set {st['transfer_size']:,} images\n")
        rows = [["plain (labels only)", "", _pct(p["accuracy_mean"], p["accuracy_sd"]),
                 p["n_seeds"], _pct(p["val_chosen_accuracy_mean"]), "", "", "1.00"]]
        for m, e in st["methods"].items():
            cost = e["epoch_cost_vs_plain"]
            gap = e["gap_recovered"]
            lost = sum(c.startswith(f"{name}:{m}:") for c in r.get("diverged_cells", {}))
            seeds = f"{e['n_seeds']} + {lost} diverged" if lost else e["n_seeds"]
            how = e["teacher_outputs"] + (f" ({e['teacher_outputs_why']})"
                                          if "teacher_outputs_why" in e else "")
            rows.append([m, f"{how}; {_layers(e['parameters'])}",
                         _pct(e["accuracy_mean"], e["accuracy_sd"]), seeds,
                         _pct(e["val_chosen_accuracy_mean"]),
                         "" if gap is None else f"{100 * gap:.0f}%", _delta(e["delta_vs_kd"]),
                         "" if cost is None else f"{cost:.2f}"])
        lines.append(markdown_table(["method", "teacher outputs; layers", "accuracy", "seeds",
                                     "at val epoch", "gap recovered", "Δ vs kd", "cost"], rows))
        for m, why in st["skipped"].items():
            lines.append(f"- {m} skipped: {why}.")
        lines.append("")
    lines += ["## Hyperparameters\n",
              "Each method has the registry's defaults, the paper's settings (`kdistill.methods."
              "parameters(name)`). Changed: only the layers a pair of architectures needs "
              "(table above), CRD's `num_examples` (one memory-bank row per transfer image) "
              "and DKD's `warmup_steps`, the paper's linear ramp of its distillation terms "
              "over the first twelfth of the schedule (its 20 of 240 epochs), in each "
              "student's steps. Every method's parameters:\n"]
    seen: dict[str, dict[str, dict]] = {}
    for s, st in r["students"].items():
        for m, e in st["methods"].items():
            seen.setdefault(m, {})[s] = {k: v for k, v in e["parameters"].items()
                                         if k not in ("name", "student_layer", "teacher_layer")}
    for m, per in seen.items():
        variants = list(per.items())
        same = all(p == variants[0][1] for _, p in variants)
        for s, shown in variants[:1] if same else variants:
            lines.append(f"- {m}{'' if same else f' ({s})'}: "
                         + (", ".join(f"{k} = {v}" for k, v in shown.items())
                            or "no parameters"))
    if r["missing_cells"]:
        lines.append(f"\nNot finished ({len(r['missing_cells'])} cells, left out of the "
                     f"means): {', '.join(r['missing_cells'])}")
    for cell, why in r.get("diverged_cells", {}).items():
        lines.append(f"\nDiverged, left out of the means: {cell}: {why}")
    lines += ["", f"![league]({png_name})\n", *provenance_lines(r),
              "The table also reports the test accuracy at the epoch chosen on the validation "
              "split."]
    return "\n".join(lines)


def plot(r: dict):
    import matplotlib.pyplot as plt

    students = list(r["students"].items())
    fig, axes = plt.subplots(1, len(students), figsize=(6.5 * len(students), 5.5),
                             squeeze=False)
    for ax, (name, st) in zip(axes[0], students):
        entries = [("plain", st["plain"])] + list(st["methods"].items())
        entries = [(m, e) for m, e in entries if e["accuracy_mean"] is not None]
        means = [100 * e["accuracy_mean"] for _, e in entries]
        sds = [100 * (e["accuracy_sd"] or 0.0) for _, e in entries]
        colors = ["C7"] + ["C0" if e.get("teacher_outputs") == "cached logits" else "C1"
                           for _, e in entries[1:]]
        ax.barh(range(len(means)), means, xerr=sds, color=colors[:len(means)], capsize=3)
        ax.set_yticks(range(len(means)), [m for m, _ in entries])
        ax.axvline(100 * r["teacher"]["accuracy"], color="C3", linestyle="--",
                   label=f"teacher {r['teacher']['name']}")
        if means:
            lo = min(m - s for m, s in zip(means, sds))
            ax.set_xlim(lo - 1, max(100 * r["teacher"]["accuracy"], max(means)) + 0.5)
        ax.invert_yaxis()
        ax.set_xlabel("test accuracy (%), last epoch, mean ± sd")
        ax.set_title(f"{name} ({len(r['seeds'])} seeds; blue: logits, orange: features)")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"league on {r['dataset']}")
    fig.tight_layout()
    return fig
