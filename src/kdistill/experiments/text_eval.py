"""The text experiment's measurements: the TF-IDF + logistic-regression baseline, the embedding
student's scores (Spearman of pairwise similarities, linear probes), CPU latency per 1,000
articles at one and two threads (teacher, students in torch, the best student in onnxruntime),
model sizes, and the figures over seeds x draws."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..distill.export import export_onnx
from ..distill.models import build_model, count_parameters
from ..text.corpus import draw_per_class
from ..text.features import HashedNgrams
from .seeds import interval, mean_sd, paired

__all__ = ["tfidf_lr", "probe", "embedding_scores", "latency", "assemble"]

_CS = (1.0, 10.0, 100.0)


def _logreg(x_fit, y_fit, x_val, y_val):
    """Logistic regression with C chosen on the validation split."""
    from sklearn.linear_model import LogisticRegression

    best = None
    for c in _CS:
        m = LogisticRegression(C=c, max_iter=2000).fit(x_fit, y_fit)
        score = m.score(x_val, y_val)
        if best is None or score > best[0]:
            best = (score, m)
    return best[1]


def tfidf_lr(data, labelled: np.ndarray) -> dict:
    """TF-IDF (word 1-2-grams, sublinear tf, fitted on the labelled articles) + logistic
    regression on the same K labels per class."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = data.texts
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_fit = vec.fit_transform([texts[i] for i in labelled])
    model = _logreg(x_fit, data.labels[labelled], vec.transform([texts[i] for i in data.val]),
                    data.labels[data.val])
    acc = float(model.score(vec.transform([texts[i] for i in data.test]),
                            data.labels[data.test]))
    return {"accuracy": acc}


def probe(emb: torch.Tensor, data, labelled: np.ndarray) -> float:
    """Test accuracy of a linear probe fitted on the labelled articles' embeddings."""
    x = torch.nn.functional.normalize(emb.float(), dim=1).numpy()
    model = _logreg(x[labelled], data.labels[labelled], x[data.val], data.labels[data.val])
    return float(model.score(x[data.test], data.labels[data.test]))


def embedding_scores(cfg, data, student_emb: torch.Tensor) -> dict:
    """Spearman correlation of the pairwise cosine similarities of the test articles (student
    vs teacher), and K-label linear probes on both embeddings, per K and draw."""
    from scipy.stats import spearmanr

    def sims(e):
        e = torch.nn.functional.normalize(e[data.test].double(), dim=1)
        s = (e @ e.T).numpy()
        return s[np.triu_indices(len(s), k=1)]

    out = {"spearman": float(spearmanr(sims(student_emb), sims(data.emb)).statistic),
           "probe": {}}
    for k in cfg.labels_per_class:
        rows = {"student": [], "teacher": []}
        for draw in range(cfg.draws):
            labelled = draw_per_class(data.labels, data.train, k, seed=1000 * k + draw)
            rows["student"].append(probe(student_emb, data, labelled))
            rows["teacher"].append(probe(data.emb, data, labelled))
        out["probe"][str(k)] = rows
    return out


def _per_1000(fn, n: int, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times) * 1000.0 / n


def _threads(n: int):
    class _Ctx:
        def __enter__(self):
            self.old = torch.get_num_threads()
            torch.set_num_threads(n)

        def __exit__(self, *exc):
            torch.set_num_threads(self.old)
    return _Ctx()


def best_student(cfg, cells: dict, k: int) -> str:
    """The distilled student with the best mean validation accuracy at K (never the test's)."""
    from .text import STUDENTS

    rows = [cells[(k, d, s)] for d in range(cfg.draws) for s in cfg.seeds]
    return max(STUDENTS[1:], key=lambda n: float(np.mean([r[n]["val_accuracy"] for r in rows])))


def latency(cfg, data, tokenizer, encoder, cells: dict, out: Path, log) -> dict:
    """ms per 1,000 articles, end to end from text (tokenizing or featurizing included), at one
    and two threads. The best student at the smallest K (draw 0, first seed; saved by its cell)
    is exported to ONNX (parity-checked against torch by onnxruntime) and timed there too."""
    from ..distill.export import load_safetensors
    from .text import HEAD_SCALE
    from .text_embedding import featurizers

    n_cls = len(data.class_names)
    texts = [data.texts[i] for i in data.test]
    head = nn.Linear(encoder.dim, n_cls)
    feats = HashedNgrams(cfg.buckets)
    k = min(cfg.labels_per_class)
    name = best_student(cfg, cells, k)
    saved = out / "models" / f"k{k}-d0-s{cfg.seeds[0]}-{name}.safetensors"
    student = load_safetensors(saved)[0]
    torch.manual_seed(0)  # timing does not depend on the weights: an untrained copy
    emb_student = build_model({"name": "bag-of-ngrams", "buckets": cfg.buckets,
                               "dim": cfg.embedding_dim, "out_features": encoder.dim}).eval()
    emb_feats = featurizers(cfg)[0]
    few = texts[: cfg.latency_articles]

    @torch.no_grad()
    def run_teacher():
        enc = tokenizer(few, padding="longest", truncation=True, max_length=cfg.max_length,
                        return_tensors="pt")
        head(HEAD_SCALE * encoder(enc["input_ids"], enc["attention_mask"]))

    def student_fn(model, featurizer=feats):
        @torch.no_grad()
        def fn():
            model(torch.from_numpy(featurizer.encode(texts)))
        return fn

    result = {"threads": {}}
    for n in (1, 2):
        with _threads(n):
            row = {"teacher": _per_1000(run_teacher, len(few)),
                   "student_torch": _per_1000(student_fn(student), len(texts)),
                   "featurize": _per_1000(lambda: feats.encode(texts), len(texts))}
            row["embedding_student_torch"] = _per_1000(student_fn(emb_student, emb_feats),
                                                       len(texts))
            ids = torch.from_numpy(feats.encode(texts))
            onnx = export_onnx(student, ids, out / "best-student.onnx", repeats=3)
            row["student_onnx_model_only"] = onnx.onnxruntime_ms_per_1000
            row["student_onnx"] = onnx.onnxruntime_ms_per_1000 + row["featurize"]
            row["onnx_max_abs_diff"] = onnx.max_abs_diff
        result["threads"][str(n)] = row
        log(f"latency at {n} thread(s), ms per 1,000 articles: " + ", ".join(
            f"{k} {v:.3g}" for k, v in row.items()))
    result["best_student"] = {"name": name, "k": k, "file": str(saved),
                              "onnx": str(out / "best-student.onnx")}
    result["student_bytes"] = os.path.getsize(saved)
    result["student_parameters"] = count_parameters(student)
    weights = Path(encoder.transformer.name_or_path) / "model.safetensors"
    result["teacher_bytes"] = (os.path.getsize(weights) if weights.is_file()
                               else 4 * count_parameters(encoder)) + 4 * (encoder.dim + 1) * n_cls
    result["teacher_parameters"] = count_parameters(encoder) + count_parameters(head)
    result["embedding_parameters"] = count_parameters(emb_student)
    return result


def assemble(cfg, data, cells: dict, embedding: list[dict], timing: dict) -> dict:
    """The result file's figures: per K, mean +- sd over seeds x draws; the best student chosen
    on validation accuracy; paired differences with 95% intervals."""
    from .text import STUDENTS

    t1 = timing["threads"]["1"]
    by_k = {}
    for k in cfg.labels_per_class:
        rows = [cells[(k, d, s)] for d in range(cfg.draws) for s in cfg.seeds]
        teacher = [r["teacher"]["accuracy"] for r in rows]
        students = {}
        for name in STUDENTS:
            acc = [r[name]["accuracy"] for r in rows]
            students[name] = {"accuracy_mean": mean_sd(acc)[0], "accuracy_sd": mean_sd(acc)[1],
                              "nll_mean": mean_sd([r[name]["nll"] for r in rows])[0],
                              "ece_mean": mean_sd([r[name]["ece"] for r in rows])[0],
                              "val_accuracy_mean": mean_sd([r[name]["val_accuracy"]
                                                            for r in rows])[0],
                              "examples": rows[0][name]["examples"],
                              "labelled_examples": rows[0][name].get("labelled_examples")}
        best = max(STUDENTS[1:], key=lambda n: students[n]["val_accuracy_mean"])
        best_acc = [r[best]["accuracy"] for r in rows]
        students.update(ms_per_1000_torch=t1["student_torch"], ms_per_1000_onnx=t1["student_onnx"],
                        parameters=timing["student_parameters"], bytes=timing["student_bytes"])
        probes = [e["probe"][str(k)] for e in embedding]
        by_k[str(k)] = {
            "teacher": {"accuracy_mean": mean_sd(teacher)[0], "accuracy_sd": mean_sd(teacher)[1],
                        "nll_mean": mean_sd([r["teacher"]["nll"] for r in rows])[0],
                        "ece_mean": mean_sd([r["teacher"]["ece"] for r in rows])[0],
                        "ms_per_1000": t1["teacher"], "parameters": timing["teacher_parameters"],
                        "bytes": timing["teacher_bytes"]},
            "tfidf_lr_accuracy_mean": mean_sd([r["tfidf_lr"]["accuracy"] for r in rows])[0],
            "tfidf_lr_accuracy_sd": mean_sd([r["tfidf_lr"]["accuracy"] for r in rows])[1],
            "students": students,
            "best_student": best,
            "best_student_chosen_on": "mean validation accuracy",
            "best_minus_labels_only": paired(best_acc, [r["labels_only"]["accuracy"]
                                                        for r in rows]),
            "best_minus_teacher": paired(best_acc, teacher),
            "speedup_vs_teacher": t1["teacher"] / t1["student_torch"],
            "speedup_vs_teacher_onnx": t1["teacher"] / t1["student_onnx"],
            "size_ratio_vs_teacher": timing["teacher_bytes"] / timing["student_bytes"],
            "cells": len(rows),
            "embedding": {
                "spearman": mean_sd([e["spearman"] for e in embedding])[0],
                "spearman_sd": mean_sd([e["spearman"] for e in embedding])[1],
                "probe_accuracy": float(np.mean([np.mean(p["student"]) for p in probes])),
                "teacher_probe_accuracy": float(np.mean([np.mean(p["teacher"])
                                                         for p in probes])),
                "speedup_vs_teacher": t1["teacher"] / t1.get("embedding_student_torch", np.nan),
            },
        }
    return {"experiment": "text", "labels_per_class": list(cfg.labels_per_class),
            "seeds": list(cfg.seeds), "draws": cfg.draws, "by_k": by_k, "latency": timing,
            "split_sizes": {"train": len(data.train), "validation": len(data.val),
                            "test": len(data.test)},
            "crops": int(len(data.crop_of)),
            "reported_epoch": "last",
            "interval": "95% t-interval over seeds x draws (paired by cell)",
            "spearman_interval": interval([e["spearman"] for e in embedding])}
