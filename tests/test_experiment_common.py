"""Shared experiment plumbing: validation splits, resumable runs, JSON conversion, timing."""

import json
import math

import numpy as np
import pytest
import torch

from kdistill.distill.models import build_model
from kdistill.distill.trainer import TrainConfig
from kdistill.experiments.common import (
    Recipe,
    fit_run,
    jsonable,
    mlp_spec,
    ms_per_1000,
    split_validation,
)


def test_split_validation_is_a_disjoint_seeded_partition(blobs):
    fit, val = split_validation(blobs, 30, seed=3)
    assert len(fit) == 120 and len(val) == 30
    rows = {tuple(r.tolist()) for r in fit.x.flatten(1)} | {tuple(r.tolist())
                                                          for r in val.x.flatten(1)}
    assert len(rows) == 150  # every example once
    again = split_validation(blobs, 30, seed=3)[1]
    assert torch.equal(again.x, val.x)
    assert not torch.equal(split_validation(blobs, 30, seed=4)[1].x, val.x)
    for bad in (0, 150):
        with pytest.raises(ValueError, match="validation size"):
            split_validation(blobs, bad, seed=0)


def test_jsonable_makes_plain_json():
    obj = {1: np.float32(0.5), "a": (np.int64(3), np.array([1, 2])), "n": float("nan"),
           "b": np.bool_(True), "i": np.float64("inf")}
    out = jsonable(obj)
    assert out == {"1": 0.5, "a": [3, [1, 2]], "n": None, "b": True, "i": None}
    json.dumps(out, allow_nan=False)


def test_fit_run_resumes_and_refuses_other_soft_targets(blobs, tmp_path):
    spec = mlp_spec(blobs, [8])
    cfg = Recipe(TrainConfig(epochs=2, batch_size=32, optimizer="adam", lr=1e-2,
                             progress=False), temperature=2.0)
    logits = torch.randn(len(blobs), 3, generator=torch.Generator().manual_seed(0))
    logs = []
    _, row = fit_run("r", spec, blobs, blobs, cfg, tmp_path, teacher_logits=logits,
                     init_seed=1, eval_extra={"train": blobs}, log=logs.append)
    assert row["parameters"] == 16 * 8 + 8 + 8 * 3 + 3
    assert len(row["curve"]) == 2 and len(row["train_accuracy_curve"]) == 2
    # eval set and extra set are the same data here, so they must agree
    assert row["train_accuracy_curve"] == row["test_accuracy_curve"]
    logs.clear()
    _, again = fit_run("r", spec, blobs, blobs, cfg, tmp_path, teacher_logits=logits,
                       init_seed=1, eval_extra={"train": blobs}, log=logs.append)
    assert again["test_accuracy"] == row["test_accuracy"]
    assert any("resumed from" in line for line in logs)
    with pytest.raises(ValueError, match="teacher_logits"):
        fit_run("r", spec, blobs, blobs, cfg, tmp_path, teacher_logits=logits + 1.0,
                init_seed=1, log=logs.append)


def test_ms_per_1000_is_positive_and_restores_eval_mode():
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": [32], "in_features": 16, "num_classes": 3})
    x = torch.randn(500, 16)
    one = ms_per_1000(model, x, repeats=3)
    assert math.isfinite(one) and one > 0
    assert math.isfinite(ms_per_1000([model, model], x, repeats=1))
    assert not model.training
