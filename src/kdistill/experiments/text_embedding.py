"""The text experiment's embedding student (issue 13): a bag of hashed words trained to
reproduce MiniLM's 384-dimensional sentence vectors on the unlabelled training text (articles
and crops), scored on the held-out test articles by `text_eval.embedding_scores`."""

from __future__ import annotations

import torch
from torch import nn

from ..distill import methods
from ..distill.data import ArrayDataset
from ..distill.models import build_model
from ..distill.trainer import TrainConfig, predict_logits, train
from ..text.features import HashedNgrams
from . import text_eval

__all__ = ["featurizers", "student", "cell"]


def featurizers(cfg) -> tuple[HashedNgrams, HashedNgrams]:
    """For articles and for crops: the first words the teacher read (words past its window
    did not shape the vectors the student is asked to reproduce)."""
    return (HashedNgrams(cfg.buckets, cfg.embedding_ngrams, max_words=cfg.embedding_words),
            HashedNgrams(cfg.buckets, cfg.embedding_ngrams, max_words=cfg.embedding_crop_words))


def student(cfg, data, seed: int, train_config: TrainConfig) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model({"name": "bag-of-ngrams", "buckets": cfg.buckets,
                         "dim": cfg.embedding_dim, "out_features": int(data.emb.shape[1])})
    x = torch.cat([data.emb_ids[data.train], data.emb_crop_ids])
    target = torch.cat([data.emb[data.train], data.crop_emb])
    res = train(model, ArrayDataset(x, None, int(target.shape[1])), train_config,
                method=methods.get("embed"), teacher_logits=target, log=lambda s: None)
    return res.model


def cell(cfg, data, seed: int, train_config: TrainConfig) -> dict:
    model = student(cfg, data, seed, train_config)
    student_emb = predict_logits(model, data.emb_ids, batch_size=1024).float()
    return {"seed": seed, **text_eval.embedding_scores(cfg, data, student_emb)}
