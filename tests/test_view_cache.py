"""The teacher-output cache over augmented views: what it stores is the teacher on the replayed
inputs, it is rebuilt when its key changes and never trusts changed bytes, and training from it
is training from the teacher (bit for bit where the stored values are exact) and resumes."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from kdistill.distill import methods
from kdistill.distill.augment import Jitter, PerExample
from kdistill.distill.cache import cached_teacher_logits
from kdistill.distill.callbacks import Callback
from kdistill.distill.data import ArrayDataset
from kdistill.distill.hooks import FeatureHooks
from kdistill.distill.methods import Method
from kdistill.distill.models import MLP
from kdistill.distill.trainer import TrainConfig, train
from kdistill.distill.view_cache import cached_teacher_views, view_generator

QUIET = {"log": lambda s: None}
KD = {"temperature": 2.0, "hard_weight": 0.5}


def cfg(**kw):
    base = dict(epochs=3, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9, seed=0,
                progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


class ConvTeacher(nn.Module):
    def __init__(self, scale: float = 20.0):
        super().__init__()
        torch.manual_seed(123)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.flat = nn.Flatten()
        self.head = nn.Linear(64, 3)
        self.scale = scale

    def forward(self, x):
        return self.head(self.flat(self.body(x))) * self.scale


def student(seed=1, dropout=False):
    torch.manual_seed(seed)
    return MLP(16, 3, (32,), input_dropout=0.1 * dropout, hidden_dropout=0.3 * dropout)


def teacher_on(teacher, x, layers=("body", "flat")):
    with FeatureHooks(teacher, layers) as hooks, torch.no_grad():
        logits = teacher.eval()(x)
        return logits, hooks.take()


def test_cached_views_are_the_teacher_on_the_replayed_inputs(blobs, tmp_path):
    t = ConvTeacher()
    cache = cached_teacher_views(t, blobs, tmp_path, views=3, augment=Jitter(1),
                                 layers=["body", "flat"], batch_size=32)
    n = len(blobs)
    assert cache.rebuilt and cache.views == 3 and len(cache) == n
    assert cache.logits.dtype == torch.float32  # |z| up to ~30: float16 would err by > 1e-3
    assert {k: f.dtype for k, f in cache.features.items()} == {"body": torch.float16,
                                                               "flat": torch.float16}
    # the stored rows are view v's documented draw, and apply(draw) is what __call__ does
    for v in range(3):
        assert torch.equal(cache.params[v], Jitter(1).draw(n, view_generator(0, v)))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(Jitter(1)(blobs.x, g1), Jitter(1).apply(blobs.x, Jitter(1).draw(n, g2)))
    idx = torch.randperm(n)[:40]  # any subset, any order: the replay is per example
    seen = []
    for v in range(3):
        views = torch.full((40,), v)
        x = cache.replay(blobs.x, idx, views)
        seen.append(x)
        logits, feats = teacher_on(t, x)
        out = cache.teacher_outputs(idx, views, "cpu")
        torch.testing.assert_close(out.logits, logits, rtol=0, atol=1e-5)
        for k in ("body", "flat"):
            torch.testing.assert_close(out.features[k], feats[k], rtol=1e-3, atol=1e-3)
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    plain = cached_teacher_views(t, blobs, tmp_path / "plain", dtype="float32")
    torch.testing.assert_close(plain.logits[0], teacher_on(t, blobs.x)[0], rtol=0, atol=1e-5)
    assert plain.params is None and plain.features == {}


def test_per_example_makes_any_augmentation_replayable(blobs, tmp_path):
    def noise(x, gen):
        return x + 0.1 * torch.randn(x.shape, generator=gen)

    aug = PerExample(noise)
    cache = cached_teacher_views(ConvTeacher(), blobs, tmp_path, views=2, augment=aug)
    idx = torch.tensor([7, 3, 100])
    x = cache.replay(blobs.x, idx, torch.tensor([1, 0, 1]))
    torch.testing.assert_close(x[0], noise(blobs.x[7:8], torch.Generator().manual_seed(
        int(cache.params[1, 7, 0])))[0])
    assert "per_example" in json.loads((tmp_path / "meta.json").read_text())["augment"]


def test_float16_rule(blobs, tmp_path):
    small = cached_teacher_views(ConvTeacher(scale=0.01), blobs, tmp_path / "a")
    assert small.logits.dtype == torch.float16  # |z| < 0.1: round trip error < 1e-4
    exact = cached_teacher_views(ConvTeacher(scale=0.01), blobs, tmp_path / "b",
                                 layers=["flat"], dtype="float32")
    assert exact.logits.dtype == exact.features["flat"].dtype == torch.float32
    with pytest.raises(ValueError, match="beyond float16's range"):
        cached_teacher_views(ConvTeacher(scale=1e6), blobs, tmp_path / "c", dtype="float16")
    huge = cached_teacher_views(ConvTeacher(scale=1e6), blobs, tmp_path / "d")
    assert huge.logits.dtype == torch.float32


def test_reused_while_the_key_matches_and_rebuilt_when_it_changes(blobs, tmp_path):
    t = ConvTeacher()
    base = dict(views=2, augment=Jitter(1), layers=["flat"], seed=0)
    first = cached_teacher_views(t, blobs, tmp_path, **base)
    again = cached_teacher_views(t, blobs, tmp_path, **base)
    assert not again.rebuilt and again.reason == "fingerprint matches"
    assert again.fingerprint == first.fingerprint
    assert torch.equal(again.features["flat"], first.features["flat"])
    for change, reason in [({"views": 3}, "number of views changed"),
                           ({"augment": Jitter(2)}, "augmentation changed"),
                           ({"layers": ["body"]}, "layers changed"),
                           ({"seed": 1}, "seed changed"),
                           ({"dtype": "float32"}, "dtype changed")]:
        res = cached_teacher_views(t, blobs, tmp_path, **{**base, **change})
        assert res.rebuilt and res.reason == reason, change
        assert res.fingerprint != first.fingerprint
        cached_teacher_views(t, blobs, tmp_path, **base)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".lock", "features-0.npy", "logits.npy", "meta.json", "params.npy"]
    other = ArrayDataset(blobs.x + 1e-3, blobs.y, 3)
    assert cached_teacher_views(t, other, tmp_path, **base).reason == "data changed"
    with torch.no_grad():
        t.head.bias[0] += 1.0
    res = cached_teacher_views(t, blobs, tmp_path, **base)
    assert res.rebuilt and res.reason == "teacher weights changed"


def test_a_flipped_byte_is_caught(blobs, tmp_path):
    t = ConvTeacher()
    kw = dict(views=2, augment=Jitter(1), layers=["flat"])
    good = cached_teacher_views(t, blobs, tmp_path, **kw)
    good_feats, good_params = good.features["flat"].clone(), good.params.clone()
    del good
    for name, what in (("features-0.npy", "features of 'flat'"), ("logits.npy", "logits"),
                       ("params.npy", "augmentation parameters")):
        path = tmp_path / name
        raw = bytearray(path.read_bytes())
        raw[-5] ^= 0x01
        path.write_bytes(bytes(raw))
        res = cached_teacher_views(t, blobs, tmp_path, **kw)
        assert res.rebuilt and res.reason == f"cached {what} do not match their checksum"
        assert torch.equal(res.features["flat"], good_feats)
        assert torch.equal(res.params, good_params)
    (tmp_path / "meta.json").write_text("{not json")
    assert cached_teacher_views(t, blobs, tmp_path, **kw).reason == "cache metadata unreadable"
    (tmp_path / "features-0.npy").unlink()
    assert cached_teacher_views(t, blobs, tmp_path, **kw).reason == (
        "cached features of 'flat' missing")


def test_kd_from_one_plain_view_is_the_logit_cache_run_bit_for_bit(blobs, tmp_path):
    t = ConvTeacher()
    logits = cached_teacher_logits(t, blobs, tmp_path / "logits", batch_size=32).logits
    views = cached_teacher_views(t, blobs, tmp_path / "views", dtype="float32", batch_size=32)
    assert torch.equal(views.logits[0], logits)
    a = train(student(dropout=True), blobs, cfg(), method=methods.get("kd", **KD),
              teacher_logits=logits, **QUIET)
    b = train(student(dropout=True), blobs, cfg(), method=methods.get("kd", **KD),
              teacher_views=views, **QUIET)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-5), ("auto", 2e-3)])
def test_fitnets_from_views_matches_the_online_teacher(blobs, tmp_path, dtype, atol):
    t = ConvTeacher()
    views = cached_teacher_views(t, blobs, tmp_path, layers=["flat"], dtype=dtype)

    def fitnets():
        return methods.get("fitnets", student_layer="hidden_layers.0", teacher_layer="flat")

    online = train(student(), blobs, cfg(), method=fitnets(), teacher=t, **QUIET)
    cached = train(student(), blobs, cfg(), method=fitnets(), teacher_views=views, **QUIET)
    for k, v in online.model.state_dict().items():
        torch.testing.assert_close(cached.model.state_dict()[k], v, rtol=0, atol=atol)
    for r, s in zip(online.history, cached.history):
        assert r["train_hint"] == pytest.approx(s["train_hint"], rel=10 * atol)
    torch.testing.assert_close(cached.method.regressor.weight, online.method.regressor.weight,
                               rtol=0, atol=atol)


class Check(Method):
    """Compares, on every batch, the cached teacher outputs with the teacher run on the batch's
    own (replayed) inputs, and trains the student toward the teacher's logits."""

    name = "check"

    def __init__(self, teacher=None):
        super().__init__()
        self.teacher, self.inputs = [teacher], []

    def teacher_layers(self):
        return ["flat"]

    def forward(self, student, teacher, batch):
        logits, feats = teacher_on(self.teacher[0], batch.inputs, ["flat"])
        torch.testing.assert_close(teacher.logits, logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(teacher.features["flat"], feats["flat"], rtol=0, atol=1e-5)
        self.inputs.append((batch.index.clone(), batch.inputs.clone()))
        return {"mse": (student.logits - teacher.logits).pow(2).mean(dim=1)}


def test_every_batch_gets_the_teacher_outputs_on_its_own_input(blobs, tmp_path):
    t = ConvTeacher()
    views = cached_teacher_views(t, blobs, tmp_path, views=3, augment=Jitter(1),
                                 layers=["flat"], dtype="float32")
    check = Check(t)
    train(student(), blobs, cfg(epochs=4, lr=1e-3), method=check, teacher_views=views,
          **QUIET)
    assert len(check.inputs) == 4 * 10
    # over four epochs, example 0 was seen in more than one view
    of_zero = {tuple(x[(i == 0).nonzero()[0, 0]].flatten().tolist())
               for i, x in check.inputs if (i == 0).any()}
    assert len(of_zero) > 1


def test_ranks_take_exact_shares_of_each_global_batch(blobs, tmp_path):
    views = cached_teacher_views(ConvTeacher(), blobs, tmp_path, views=3, augment=Jitter(1),
                                 layers=["flat"])
    one = list(views.batches(blobs.x, blobs.y, 16, 0, 2, 0, 1))
    shares = [list(views.batches(blobs.x, blobs.y, 16, 0, 2, r, 3)) for r in range(3)]
    for step, b in enumerate(one):
        parts = [s[step] for s in shares]
        assert all(p.n_global == b.n_global == len(b) for p in parts)
        assert torch.equal(torch.cat([p.inputs for p in parts]), b.inputs)
        assert torch.equal(torch.cat([p.labels for p in parts]), b.labels)
        assert torch.equal(torch.cat([p.cached.features["flat"] for p in parts]),
                           b.cached.features["flat"])


class StopAfter(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, row, model):
        if row["epoch"] == self.epoch:
            raise KeyboardInterrupt  # killed after the checkpoint of this epoch


def test_resume_from_views_is_bit_identical(blobs, tmp_path):
    views = cached_teacher_views(ConvTeacher(), blobs, tmp_path / "cache", views=2,
                                 augment=Jitter(1), layers=["flat"])
    kw = dict(method=methods.get("kd", **KD), teacher_views=views, **QUIET)
    ref = train(student(dropout=True), blobs, cfg(epochs=4), out_dir=tmp_path / "ref", **kw)
    with pytest.raises(KeyboardInterrupt):
        train(student(dropout=True), blobs, cfg(epochs=4), out_dir=tmp_path / "run",
              callbacks=[StopAfter(2)], **kw)
    resumed = train(student(seed=9, dropout=True), blobs, cfg(epochs=4),
                    out_dir=tmp_path / "run", **kw)
    assert resumed.resumed_from_epoch == 2
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert [r["train_loss"] for r in ref.history] == [r["train_loss"] for r in resumed.history]
    other = cached_teacher_views(ConvTeacher(), blobs, tmp_path / "other", views=3,
                                 augment=Jitter(1), layers=["flat"])
    with pytest.raises(ValueError, match="different run .teacher_views"):
        train(student(), blobs, cfg(epochs=4), out_dir=tmp_path / "run",
              **{**kw, "teacher_views": other})


def test_refusals(blobs, tmp_path):
    t = ConvTeacher()
    with pytest.raises(ValueError, match="views must be an integer >= 1, got 0"):
        cached_teacher_views(t, blobs, tmp_path, views=0)
    with pytest.raises(ValueError, match="views=2 needs an augmentation"):
        cached_teacher_views(t, blobs, tmp_path, views=2)
    with pytest.raises(ValueError, match="no draw.*PerExample"):
        cached_teacher_views(t, blobs, tmp_path, views=2, augment=lambda x, g: x)
    with pytest.raises(ValueError, match="dtype must be one of"):
        cached_teacher_views(t, blobs, tmp_path, dtype="bfloat16")
    views = cached_teacher_views(t, blobs, tmp_path, views=2, augment=Jitter(1),
                                 layers=["flat"])
    fit = methods.get("fitnets", student_layer="hidden_layers.0", teacher_layer="body")
    with pytest.raises(ValueError, match=r"fitnets reads teacher layers \['body'\], which the "
                                         r"view cache does not hold \(it holds \['flat'\]\)"):
        train(student(), blobs, cfg(), method=fit, teacher_views=views, **QUIET)
    with pytest.raises(ValueError, match="holds 150 examples but blobs has 100"):
        train(student(), blobs.subset(torch.arange(100)), cfg(), teacher_views=views, **QUIET)
    shuffled = blobs.subset(torch.arange(150).flip(0))
    with pytest.raises(ValueError, match="built on other inputs"):
        train(student(), shuffled, cfg(), teacher_views=views, **QUIET)
    with pytest.raises(ValueError, match="drop augment="):
        train(student(), blobs, cfg(), teacher_views=views, augment=Jitter(1), **QUIET)
    with pytest.raises(ValueError, match="one of teacher, teacher_logits or teacher_views"):
        train(student(), blobs, cfg(), teacher_views=views, teacher=t, **QUIET)
    with pytest.raises(ValueError, match="needs an ArrayDataset"):
        cached_teacher_views(t, blobs.x, tmp_path)
    assert np.load(tmp_path / "params.npy").shape == (2, 150, 2)
