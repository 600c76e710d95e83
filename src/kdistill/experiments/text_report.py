"""The text experiment's report: per K the teacher, the TF-IDF baseline and the three students
(mean +- sd over seeds x draws), the paired differences, latency and size, the embedding
student; and the accuracy-against-K figure. Read from the results dict alone."""

from __future__ import annotations

from ..reporting import markdown_table
from .common import provenance_lines

__all__ = ["render_markdown", "plot"]

_LABELS = {"labels_only": "student on the K labels alone",
           "soft": "student on the teacher's soft targets (training split, no labels)",
           "soft_augmented": "the same + 2 paragraph crops per article, labelled by the teacher"}


def _hard_weight(r: dict) -> float | None:
    """The hard term's weight when the soft students also had the K labels, else None."""
    cfg = r.get("config", {})
    return cfg.get("transfer_hard_weight") if cfg.get("hard_labels_in_transfer") else None


def _labels(r: dict) -> dict[str, str]:
    """Row names; the soft students' say whether they also had the K hard labels."""
    if _hard_weight(r) is None:
        return _LABELS
    return {**_LABELS, "soft": "student on the teacher's soft targets + the K hard labels "
                               "(training split)",
            "soft_augmented": "the same + 2 paragraph crops per article, labelled by the teacher "
                              "(crops unlabelled)"}


def _pm(mean, sd) -> str:
    return f"{100 * mean:.2f}%" + ("" if sd is None else f" ± {100 * sd:.2f}")


def _ci(p: dict) -> str:
    text = f"{100 * p['mean']:+.2f}"
    if p["interval"]:
        text += f" [{100 * p['interval'][0]:+.2f}, {100 * p['interval'][1]:+.2f}]"
    return text


def render_markdown(r: dict, png_name: str) -> str:
    lat = r["latency"]
    t1, t2 = lat["threads"]["1"], lat["threads"]["2"]
    sizes = r["split_sizes"]
    lines = [
        "# A pretrained teacher from few labels: BBC News\n",
        f"Teacher: {r['teacher_model']} ({lat['teacher_parameters']:,} parameters, frozen "
        "encoder, mean-pooled, with a linear head trained on the K labelled articles per class "
        "(weight decay chosen on the validation split)). Students: a bag of hashed word "
        f"1-2-grams ({lat['student_parameters']:,} parameters), trained through "
        "kdistill.train. Split (stratified, seeded): "
        f"{sizes['train']} train / {sizes['validation']} validation / {sizes['test']} test "
        f"articles; {r['crops']} crops. Every figure is the last epoch, mean ± sd over "
        f"{len(r['seeds'])} seeds x {r['draws']} draws of the labelled subset; intervals are "
        "95% t-intervals of differences paired by cell. The teacher's encoder ran once per "
        f"article and crop ({r['teacher_encoding_seconds']:.0f} s in this invocation; 0 when "
        "the cache was reused).\n"]
    if _hard_weight(r) is not None:
        lines.append("Variant: the soft students also learned the hard labels of the K labelled "
                     "articles per class (every other article and every crop unlabelled), kd's "
                     f"hard_weight {_hard_weight(r):g}, a mean over the whole batch.\n")
    for k, row in r["by_k"].items():
        s = row["students"]
        body = [["teacher (MiniLM + head)", _pm(row["teacher"]["accuracy_mean"],
                                                 row["teacher"]["accuracy_sd"]),
                 f"{row['teacher']['nll_mean']:.3f}", f"{row['teacher']['ece_mean']:.3f}"],
                ["TF-IDF + logistic regression, K labels", _pm(row["tfidf_lr_accuracy_mean"],
                                                               row["tfidf_lr_accuracy_sd"]),
                 "", ""]]
        for name, label in _labels(r).items():
            mark = " **(best on validation)**" if name == row["best_student"] else ""
            body.append([label + mark, _pm(s[name]["accuracy_mean"], s[name]["accuracy_sd"]),
                         f"{s[name]['nll_mean']:.3f}", f"{s[name]['ece_mean']:.3f}"])
        e = row["embedding"]
        lines += [f"## K = {k} labelled articles per class ({row['cells']} cells)\n",
                  markdown_table(["model", "test accuracy", "test NLL", "ECE"], body),
                  f"- best student minus the labels-only student, points: "
                  f"{_ci(row['best_minus_labels_only'])}; minus the teacher: "
                  f"{_ci(row['best_minus_teacher'])}",
                  f"- embedding student: linear probe on K labels {100 * e['probe_accuracy']:.2f}%"
                  f" (the teacher's embeddings: {100 * e['teacher_probe_accuracy']:.2f}%)\n"]
    first = next(iter(r["by_k"].values()))
    e = first["embedding"]
    lines += [
        "## Cost on CPU (ms per 1,000 test articles, end to end from text)\n",
        markdown_table(
            ["model", "1 thread", "2 threads", "parameters", "bytes"],
            [["teacher: tokenize + MiniLM + head", f"{t1['teacher']:.0f}",
              f"{t2['teacher']:.0f}", f"{lat['teacher_parameters']:,}",
              f"{lat['teacher_bytes']:,}"],
             ["student, torch (featurize + forward)", f"{t1['student_torch']:.1f}",
              f"{t2['student_torch']:.1f}", f"{lat['student_parameters']:,}",
              f"{lat['student_bytes']:,}"],
             ["best student, onnxruntime (featurize + run)", f"{t1['student_onnx']:.1f}",
              f"{t2['student_onnx']:.1f}", "", ""],
             ["  of which featurizing (Python)", f"{t1['featurize']:.1f}",
              f"{t2['featurize']:.1f}", "", ""],
             ["embedding student, torch", f"{t1['embedding_student_torch']:.1f}",
              f"{t2['embedding_student_torch']:.1f}", f"{lat['embedding_parameters']:,}", ""]]),
        f"- student {first['speedup_vs_teacher']:.0f}x faster than the teacher (1 thread, "
        f"torch; {first['speedup_vs_teacher_onnx']:.0f}x with onnxruntime), "
        f"{first['size_ratio_vs_teacher']:.0f}x smaller on disk; ONNX parity "
        f"{t1['onnx_max_abs_diff']:.2g} (max |logit difference|)",
        f"- embedding student: Spearman {e['spearman']:.3f} of pairwise cosine similarities "
        f"of the test articles against the teacher's (mean of {len(r['seeds'])} seeds), "
        f"{e['speedup_vs_teacher']:.0f}x faster; {_embedding_input(r['config'])}\n",
        f"![accuracy against K]({png_name})\n",
        *provenance_lines(r)]
    return "\n".join(lines)


def _embedding_input(cfg: dict) -> str:
    """What the embedding student read; reports made before these settings existed read whole
    articles as word 1-2-grams."""
    if "embedding_words" not in cfg:
        return "it read whole articles as word 1-2-grams"
    n = cfg["embedding_ngrams"]
    grams = "single hashed words" if n == 1 else f"hashed word 1-{n}-grams"
    return (f"it read the first {cfg['embedding_words']} words of an article "
            f"({cfg['embedding_crop_words']} of a crop), about the teacher's window, as {grams}")


def plot(r: dict):
    import matplotlib.pyplot as plt

    ks = [int(k) for k in r["by_k"]]
    rows = list(r["by_k"].values())
    fig, ax = plt.subplots(figsize=(8, 5))
    series = [("teacher (MiniLM + head)", [x["teacher"]["accuracy_mean"] for x in rows],
               [x["teacher"]["accuracy_sd"] or 0 for x in rows], "k-"),
              ("TF-IDF + LR", [x["tfidf_lr_accuracy_mean"] for x in rows],
               [x["tfidf_lr_accuracy_sd"] or 0 for x in rows], "C7--")]
    for i, (name, label) in enumerate(_labels(r).items()):
        series.append((label.split(" (")[0], [x["students"][name]["accuracy_mean"] for x in rows],
                       [x["students"][name]["accuracy_sd"] or 0 for x in rows], f"C{i}-"))
    for label, mean, sd, style in series:
        ax.errorbar(ks, [100 * m for m in mean], yerr=[100 * s for s in sd], fmt=style,
                    marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("labelled articles per class (K)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"BBC News: mean ± sd over {len(r['seeds'])} seeds x {r['draws']} draws")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
