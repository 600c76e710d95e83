"""The engine around the methods: feature hooks by module name, adapters for real outputs and
batches, the cache over any data, a method that is one file, and a train() that leaves the
caller's world as it was."""

import numpy as np
import pytest
import torch
from torch import nn

from kdistill.distill import methods
from kdistill.distill.adapters import Batch, logits_of, split_batch
from kdistill.distill.cache import cached_teacher_logits, with_index
from kdistill.distill.callbacks import Callback, TensorBoardCallback
from kdistill.distill.checkpoint import load_checkpoint
from kdistill.distill.data import ArrayDataset
from kdistill.distill.hooks import FeatureHooks, resolve_module
from kdistill.distill.methods import Method, Outputs
from kdistill.distill.models import MLP
from kdistill.distill.teachers import run_teacher
from kdistill.distill.trainer import TrainConfig, train

QUIET = {"log": lambda s: None}


def cfg(**kw):
    base = dict(epochs=3, batch_size=16, optimizer="adam", lr=1e-2, seed=0, progress=False,
                device="cpu")
    return TrainConfig(**{**base, **kw})


def mlp(seed=1, hidden=(32,)):
    torch.manual_seed(seed)
    return MLP(16, 3, hidden)


def test_hooks_name_layers_and_suggest_close_names():
    model = mlp(hidden=(8, 8))
    with pytest.raises(ValueError, match="no module named 'hidden_layer.1'; closest: "
                                         "hidden_layers.1"):
        resolve_module(model, "hidden_layer.1")
    assert resolve_module(model, "module.hidden_layers.1") is model.hidden_layers[1]
    with FeatureHooks(model, ["hidden_layers.0", "head"]) as hooks:
        x = torch.randn(5, 16)
        out = model(x)
        feats = hooks.take()
    assert torch.equal(feats["head"], out)
    assert torch.allclose(feats["hidden_layers.0"], model.hidden_layers[0](x))
    assert not model.hidden_layers[0]._forward_hooks and not model.head._forward_hooks


def test_wrong_layer_fails_before_the_first_step(blobs):
    teacher = mlp(seed=5)
    method = methods.get("fitnets", student_layer="hidden_layers.0", teacher_layer="layer3")
    calls = []

    class Spy(Callback):
        def on_epoch_end(self, row, model):
            calls.append(row)

    with pytest.raises(ValueError, match="teacher .MLP. has no module named 'layer3'"):
        train(mlp(), blobs, cfg(), teacher=teacher, method=method, callbacks=[Spy()], **QUIET)
    assert calls == []
    with pytest.raises(ValueError, match="cached logits do not hold"):
        train(mlp(), blobs, cfg(), teacher_logits=torch.zeros(len(blobs), 3),
              method=methods.get("fitnets", student_layer="head", teacher_layer="head"),
              **QUIET)


def test_adapters_read_batches_and_outputs():
    x, y, i = torch.randn(4, 3), torch.arange(4), torch.arange(4) + 10
    b = split_batch({"input_ids": x, "attention_mask": x, "labels": y, "index": i})
    assert set(b.inputs) == {"input_ids", "attention_mask"} and b.labels is y and b.index is i
    assert split_batch({"x": x, "y": y}).inputs is x
    assert split_batch((x, y, i)).index is i and split_batch(x).labels is None
    with pytest.raises(ValueError, match="tuple batch"):
        split_batch((x, y, i, i))
    assert logits_of((x, "extra")) is x and logits_of({"logits": x}) is x
    assert logits_of({"scores": x}, "scores") is x and logits_of(x, lambda o: o * 2).sum() == \
        (x * 2).sum()
    with pytest.raises(ValueError, match="has no 'logits'; its keys: \\['scores'\\]"):
        logits_of({"scores": x})


def test_labels_of_any_integer_dtype_and_float64_inputs(blobs):
    x64 = blobs.x.double().numpy()
    for labels in (blobs.y.int(), blobs.y.numpy(), blobs.y.numpy().astype(np.int32),
                   blobs.y.to(torch.uint8)):
        data = ArrayDataset(x64, labels, 3)
        assert data.x.dtype == torch.float32 and data.y.dtype == torch.int64
        train(mlp(), data, cfg(epochs=1), **QUIET)
    for bad, what in ((blobs.y.float(), "got float32"), (blobs.y > 0, "got bool")):
        with pytest.raises(ValueError, match=f"labels must be integers, {what}"):
            ArrayDataset(blobs.x, bad, 3)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(blobs.x.double(), blobs.y.int()), batch_size=16)
    train(mlp(), loader, cfg(epochs=1), **QUIET)


def test_train_leaves_the_callers_world_as_it_was(blobs):
    teacher, student = mlp(seed=5).train(), mlp()
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    train(student, blobs, cfg(epochs=1), teacher=teacher, **QUIET)
    assert torch.equal(torch.get_rng_state(), before)
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())


def test_method_terms_are_logged_and_a_new_method_is_one_class(blobs):
    @methods.register("test-margin")
    class Margin(Method):
        """A scalar (batch-mean) term: hinge on the teacher's top class."""

        def __init__(self, margin: float = 1.0):
            super().__init__()
            self.margin = float(margin)

        def forward(self, student, teacher, batch):
            top = teacher.logits.argmax(1)
            z = student.logits
            true = z.gather(1, top[:, None])
            return {"hinge": (self.margin - true + z).clamp_min(0).mean()}

    assert "test-margin" in methods.available()
    teacher = train(mlp(seed=5), blobs, cfg(epochs=4), **QUIET).model
    result = train(mlp(), blobs, cfg(epochs=4), teacher=teacher, method="test-margin",
                   eval_sets={"test": blobs}, **QUIET)
    assert "train_hinge" in result.final and result.final["test_accuracy"] > 0.9
    kd = train(mlp(), blobs, cfg(epochs=1), teacher=teacher,
               method=methods.get("kd", hard_weight=0.5), **QUIET)
    row = kd.final
    assert row["train_loss"] == pytest.approx(row["train_soft"] + row["train_hard"])


def test_fitnets_regressor_trains_is_saved_and_resumes(blobs, tmp_path):
    teacher = mlp(seed=5, hidden=(24,))
    method = methods.get("fitnets", student_layer="hidden_layers.0",
                         teacher_layer="hidden_layers.0")
    result = train(mlp(), blobs, cfg(epochs=2), teacher=teacher, method=method,
                   out_dir=tmp_path, **QUIET)
    reg = result.method.regressor
    assert isinstance(reg, nn.Linear) and reg.weight.shape == (24, 32)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert torch.equal(ckpt["method_state"]["regressor.weight"], reg.weight.detach())
    assert ckpt["method"]["name"] == "fitnets"
    hist = result.history
    assert hist[-1]["train_hint"] < hist[0]["train_hint"]
    # a resumed run restores the regressor; a changed method parameter is another run
    again = train(mlp(), blobs, cfg(epochs=2), teacher=teacher, method=methods.get(
        "fitnets", student_layer="hidden_layers.0", teacher_layer="hidden_layers.0"),
        out_dir=tmp_path, **QUIET)
    assert again.resumed_from_epoch == 2
    assert torch.equal(again.method.regressor.weight, reg.weight)
    with pytest.raises(ValueError, match="different run .method.hint_weight"):
        train(mlp(), blobs, cfg(epochs=2), teacher=teacher, method=methods.get(
            "fitnets", student_layer="hidden_layers.0", teacher_layer="hidden_layers.0",
            hint_weight=2.0), out_dir=tmp_path, **QUIET)


def test_cache_over_a_dataset_of_dicts_trains_through_a_dataloader(blobs, tmp_path):
    class Dicts(torch.utils.data.Dataset):
        def __len__(self):
            return len(blobs)

        def __getitem__(self, i):
            return {"x": blobs.x[i], "labels": blobs.y[i]}

    teacher = train(mlp(seed=5), blobs, cfg(epochs=4), **QUIET).model
    cache = cached_teacher_logits(teacher, Dicts(), tmp_path / "cache")
    assert cache.rebuilt
    torch.testing.assert_close(cache.logits, run_teacher(teacher, blobs.x))
    assert not cached_teacher_logits(teacher, Dicts(), tmp_path / "cache").rebuilt
    # the same examples as a tensor give the same fingerprint
    assert not cached_teacher_logits(teacher, blobs.x, tmp_path / "cache").rebuilt
    shuffled = torch.utils.data.DataLoader(Dicts(), batch_size=8, shuffle=True)
    with pytest.raises(ValueError, match="fixed order"):
        cached_teacher_logits(teacher, shuffled, tmp_path / "other")
    loader = torch.utils.data.DataLoader(with_index(Dicts()), batch_size=16, shuffle=True)
    result = train(mlp(), loader, cfg(epochs=4), teacher_logits=cache.logits,
                   method=methods.get("kd", temperature=2.0, hard_weight=0.0),
                   eval_sets={"test": blobs}, **QUIET)
    assert result.final["test_accuracy"] > 0.9


def test_tensorboard_callback_writes_scalars(blobs, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(mlp(), blobs, cfg(epochs=2), val_data=blobs,
          callbacks=[TensorBoardCallback(tmp_path / "tb")], **QUIET)
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert {"train_loss", "val_accuracy", "lr"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("val_accuracy")] == [1, 2]


def test_method_outputs_are_checked_against_the_batch():
    z = torch.zeros(4, 3)
    kd = methods.get("kd")
    out = kd(Outputs(z), Outputs(z), Batch(None, torch.zeros(4, dtype=torch.long)))
    assert set(out) == {"soft", "hard"} and all(v.shape == (4,) for v in out.values())
