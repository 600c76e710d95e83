"""The specialists experiment's report: Tables 2-4 and the per-seed table as Markdown, and the
gain-by-covering / class-coverage figure, both read from the results dict alone (so a committed
results.json can be rendered again), and the lines the command prints at the end."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..reporting import markdown_table
from .common import provenance_lines

if TYPE_CHECKING:
    from .specialists import SpecialistsConfig

__all__ = ["render_markdown", "plot_results", "summary"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _seed_lines(r: dict) -> list[str]:
    if "combined_minus_generalist" not in r:
        return []
    d = r["combined_minus_generalist"]

    def pm(key):
        sd = r[f"{key}_sd"]
        return _pct(r[f"{key}_mean"]) + ("" if sd is None else f" ± {100 * sd:.2f}")

    ci = "" if d["interval"] is None else \
        f", 95% interval [{100 * d['interval'][0]:+.2f}, {100 * d['interval'][1]:+.2f}]"
    return [f"Over the {len(r['seeds'])} seed(s), mean ± sd: generalist "
            f"{pm('generalist_accuracy')}, combined {pm('combined_accuracy')}; combined minus "
            f"generalist, paired by seed: {100 * d['mean']:+.2f} points{ci}.\n"]


def render_markdown(r: dict, png_name: str) -> str:
    t, v = r["test"], r["validation"]
    seeds = r["seeds"]
    m = r["num_specialists"]
    spec_count = str(m[0]) if len(set(m)) == 1 else "/".join(map(str, m))
    size = "disjoint k-means clusters" if r["subset_size"] is None else \
        f"{r['subset_size']} classes each (+ dustbin)"
    pooled = "" if len(seeds) == 1 else f", pooled over {len(seeds)} seeds ({t['examples']} " \
        "example-predictions)"
    hidden = "-".join(map(str, r["generalist_model"]["hidden"]))
    rows3 = [
        ["generalist (baseline)", _pct(t["conditional_accuracy"]["generalist"]),
         _pct(t["generalist_accuracy"])],
        [f"+ {spec_count} specialists, exact dustbin correction",
         _pct(t["conditional_accuracy"]["combined"]), _pct(t["combined_accuracy"])],
        [f"+ {spec_count} specialists, the paper's literal correction log(0.5/f)", "",
         _pct(r["literal_dustbin_accuracy"])],
        [f"+ {spec_count} specialists, no dustbin correction", "",
         _pct(r["uncorrected_dustbin_accuracy"])],
    ]
    rows4 = [[g["covering"], g["examples"], f"{g['delta_correct']:+d}",
              "n/a" if g["relative_change"] is None else f"{100 * g['relative_change']:+.1f}%"]
             for g in r["gain_by_covering"]]
    rows_seed = [[s["seed"], s["specialist_epochs"],
                  _pct(s["test"]["generalist_correct"] / s["test"]["n"]),
                  _pct(s["test"]["combined_correct"] / s["test"]["n"]),
                  s["test"]["fixed"], s["test"]["broken"],
                  f"{s['validation']['generalist_correct']} -> "
                  f"{s['validation']['combined_correct']}"] for s in r["per_seed"]]
    gain = r["combined_accuracy"] - r["generalist_accuracy"]
    lines = [
        f"# Specialists with a dustbin class (Hinton et al. 2015, §5) on {r['dataset']}\n",
        f"Generalist: MLP {r['generalist_model']['in_features']}-{hidden}-{r['num_classes']} "
        f"on hard labels, trained on {r['fit_size']} training examples ({r['validation_size']} "
        f"held out for validation). Specialists: {spec_count} subsets of {size}, found by "
        "k-means on the columns of the covariance of the generalist's predicted probabilities "
        "on the training inputs (no labels); each initialized from the generalist (dustbin "
        "row fitted to the log-sum-exp of the outside classes' logits) and trained on half "
        "subset, half other examples with hard labels, Adam at lr "
        f"{r['config']['specialist_lr']:g}, cosine schedule, for the number of epochs "
        f"chosen on the validation split among {r['config']['specialist_epochs']} (the "
        "combined model's validation accuracy). Dustbin logit then corrected by "
        "log((1-f)/f), f = the subset's share of the training labels. Test set: "
        f"{r['test_size']} examples{pooled}. Last epoch of every run; nothing chosen on the "
        "test set.\n",
        f"**Result:** test accuracy {_pct(r['generalist_accuracy'])} -> "
        f"{_pct(r['combined_accuracy'])} ({100 * gain:+.2f} points; "
        f"{t['fixed']} test predictions fixed, {t['broken']} broken). The paper (JFT): 25.0% -> "
        "26.1%.\n",
        *_seed_lines(r),
        "## Table 3: accuracy\n",
        markdown_table(["system", "conditional test accuracy", "test accuracy"], rows3),
        f"Conditional accuracy: over the {t['conditional_examples']} test examples whose true "
        "class is in at least one specialist's subset, the prediction is the model's most "
        "probable class among the classes of the subsets that hold the true class (for both "
        "rows the same restriction, so the comparison is fair). Validation accuracy: "
        f"generalist {_pct(v['generalist_accuracy'])}, combined {_pct(v['combined_accuracy'])} "
        f"(literal {_pct(v['variant_accuracy']['literal'])}, none "
        f"{_pct(v['variant_accuracy']['none'])}).\n",
        "## Table 4: gain by number of specialists covering the correct class\n",
        markdown_table(["# specialists covering", "# test examples", "delta in top-1 correct",
                        "relative accuracy change"], rows4),
        "Relative accuracy change = delta / the generalist's correct count in that row. "
        "Row 0 can change too: a specialist is active when the generalist's top class is in "
        "its subset, whatever the true class. "
        f"{_pct(t['with_active_specialist'])} of test examples had at least one active "
        "specialist (one whose subset holds the generalist's top class).\n",
        "## Table 2: confusable subsets found" + (f" (seed {seeds[0]})" if len(seeds) > 1
                                                  else "") + "\n",
        markdown_table(["specialist", "classes"],
                       [[i + 1, ", ".join(c)] for i, c in enumerate(r["clusters"])]),
        "## Per seed\n",
        markdown_table(["seed", "specialist epochs (chosen on validation)",
                        "generalist test acc.", "combined test acc.", "fixed", "broken",
                        "validation correct, generalist -> combined"], rows_seed),
        f"![gain by covering specialists]({png_name})\n",
        *provenance_lines(r),
    ]
    return "\n".join(lines)


def plot_results(r: dict):
    """Left: Table 4 as bars (relative accuracy change by covering count, delta on top).
    Right: which classes each specialist covers (first seed)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 1.4]})
    ax = axes[0]
    gains = r["gain_by_covering"]
    ks = [g["covering"] for g in gains]
    rel = [100 * (g["relative_change"] or 0.0) for g in gains]
    bars = ax.bar(ks, rel, color=["C2" if x >= 0 else "C3" for x in rel])
    for bar, g in zip(bars, gains):
        ax.annotate(f"{g['delta_correct']:+d}\n(n={g['examples']})",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom" if bar.get_height() >= 0 else "top", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.margins(y=0.2)
    ax.set_xticks(ks)
    ax.set_xlabel("number of specialists covering the true class")
    ax.set_ylabel("relative change in top-1 correct (%)")
    ax.set_title(f"{r['dataset']}: generalist {_pct(r['generalist_accuracy'])} -> "
                 f"combined {_pct(r['combined_accuracy'])}")
    ax.grid(alpha=0.3, axis="y")
    ax = axes[1]
    first = r["per_seed"][0]
    classes = r["num_classes"]
    member = np.zeros((len(first["subsets"]), classes))
    for m, s in enumerate(first["subsets"]):
        member[m, s] = 1
    ax.imshow(member, cmap="Greens", aspect="auto", vmin=0, vmax=1.3)
    names = r["class_names"] or [str(c) for c in range(classes)]
    ax.set_xticks(range(classes))
    ax.set_xticklabels(names, rotation=90 if max(map(len, names)) > 2 else 0, fontsize=8)
    ax.set_yticks(range(len(member)))
    ax.set_yticklabels([f"specialist {m + 1}" for m in range(len(member))], fontsize=8)
    ax.set_title(f"classes covered by each specialist (seed {first['seed']})")
    fig.tight_layout()
    return fig


def summary(r: dict, cfg: SpecialistsConfig) -> list[str]:
    """The lines `kdistill reproduce specialists` prints at the end."""
    lines = [f"test accuracy: generalist {r['generalist_accuracy']:.4f}, with specialists "
             f"{r['combined_accuracy']:.4f}"]
    lines += [f"  covered by {row['covering']}: {row['examples']} examples, "
              f"{row['delta_correct']:+d} correct" for row in r["gain_by_covering"]]
    return lines + [f"report: {Path(cfg.out) / 'results.md'} (+ .json, .png); wall time "
                    f"{r['wall_seconds']:.0f} s"]
