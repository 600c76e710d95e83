import json

import numpy as np
import pytest
import torch

from kdistill.distill.cache import cached_teacher_logits
from kdistill.distill.models import MLP
from kdistill.distill.teachers import fingerprint_module, run_teacher


def make_teacher(seed=0):
    torch.manual_seed(seed)
    return MLP(16, 3, (8,), input_dropout=0.5, hidden_dropout=0.5)


def test_run_teacher_uses_the_mean_network_and_restores_mode():
    t = make_teacher().train()
    x = torch.randn(10, 16)
    a = run_teacher(t, x, batch_size=3)
    assert t.training  # mode restored
    with torch.no_grad():
        ref = t.eval()(x)
    assert torch.allclose(a, ref, atol=1e-6)  # eval mode: dropout off, batches in order
    assert not a.requires_grad


def test_cache_reused_when_nothing_changed(tmp_path):
    t, x = make_teacher(), torch.randn(20, 16)
    first = cached_teacher_logits(t, x, tmp_path)
    again = cached_teacher_logits(t, x, tmp_path)
    assert first.rebuilt and not again.rebuilt
    assert torch.equal(first.logits, again.logits)
    assert torch.allclose(again.logits, run_teacher(t, x))


@pytest.mark.parametrize("change, reason", [
    ("weights", "teacher weights changed"),
    ("data", "data changed"),
    ("transform", "transform changed"),
])
def test_cache_rebuilt_when_teacher_data_or_transform_changes(tmp_path, change, reason):
    t, x = make_teacher(), torch.randn(20, 16)
    cached_teacher_logits(t, x, tmp_path, transform="identity")
    transform = "identity"
    if change == "weights":
        with torch.no_grad():
            t.head.bias[0] += 1.0
    elif change == "data":
        x = x.clone()
        x[3, 5] += 1e-3
    else:
        transform = "standardized"
    res = cached_teacher_logits(t, x, tmp_path, transform=transform)
    assert res.rebuilt and res.reason == reason
    assert torch.allclose(res.logits, run_teacher(t, x))


def test_cache_rebuilt_when_files_are_damaged(tmp_path):
    t, x = make_teacher(), torch.randn(20, 16)
    cached_teacher_logits(t, x, tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    assert cached_teacher_logits(t, x, tmp_path).reason == "cache metadata unreadable"
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "logits.npy").write_bytes(b"garbage")
    res = cached_teacher_logits(t, x, tmp_path)
    assert res.rebuilt and res.reason == "cached logits do not match their checksum"
    assert json.loads((tmp_path / "meta.json").read_text()) == meta


def test_cache_never_trusts_changed_bytes(tmp_path):
    """One flipped byte, or another array of the same shape, is caught by the checksum."""
    t, x = make_teacher(), torch.randn(20, 16)
    good = cached_teacher_logits(t, x, tmp_path).logits.clone()
    path = tmp_path / "logits.npy"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01
    path.write_bytes(bytes(raw))
    res = cached_teacher_logits(t, x, tmp_path)
    assert res.rebuilt and "checksum" in res.reason and torch.equal(res.logits, good)
    np.save(path, np.zeros((20, 3), dtype=np.float32))
    assert cached_teacher_logits(t, x, tmp_path).rebuilt
    (tmp_path / "meta.json").write_bytes(b"\xff\xfe not utf-8")
    assert cached_teacher_logits(t, x, tmp_path).reason == "cache metadata unreadable"
    (tmp_path / "meta.json").write_text("[1, 2]")
    assert cached_teacher_logits(t, x, tmp_path).reason == "cache metadata is not a JSON object"


def test_callable_teacher_needs_a_key_and_nan_teacher_is_rejected(tmp_path):
    x = torch.randn(4, 16)
    with pytest.raises(ValueError, match="teacher_key"):
        cached_teacher_logits(lambda b: b[:, :3], x, tmp_path)
    res = cached_teacher_logits(lambda b: b[:, :3], x, tmp_path, teacher_key="slice-v1")
    assert torch.equal(res.logits, x[:, :3])
    with pytest.raises(ValueError, match="NaN or infinite"):
        cached_teacher_logits(lambda b: b[:, :3] / 0, x, tmp_path / "nan", teacher_key="div0")


def test_fingerprint_sees_every_weight():
    a, b = make_teacher(), make_teacher()
    assert fingerprint_module(a) == fingerprint_module(b)
    with torch.no_grad():
        b.hidden_layers[0].weight[0, 0] += 1e-7
    assert fingerprint_module(a) != fingerprint_module(b)


def test_ensemble_arithmetic_mean_of_probabilities_at_T():
    from kdistill.distill.losses import softmax_t
    from kdistill.distill.teachers import EnsembleTeacher, combine_members

    torch.manual_seed(0)
    members = [torch.randn(5, 4) * 3 for _ in range(3)]
    for T in (1.0, 4.0):
        got = softmax_t(combine_members(members, T, "arith_prob"), T)
        manual = sum(torch.softmax(v / T, dim=1) for v in members) / 3
        assert torch.allclose(got, manual, atol=1e-6)
    geo = softmax_t(combine_members(members, 2.0, "geo_logit"), 2.0)
    g = torch.exp(sum(torch.log_softmax(v / 2.0, dim=1) for v in members) / 3)
    assert torch.allclose(geo, g / g.sum(1, keepdim=True), atol=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        combine_members([torch.zeros(5, 4), torch.zeros(5, 3)])
    with pytest.raises(ValueError, match="combine"):
        EnsembleTeacher([make_teacher()], combine="median")


def test_ensemble_cache_is_per_temperature(tmp_path):
    from kdistill.distill.teachers import EnsembleTeacher

    x = torch.randn(6, 16)
    members = [make_teacher(0), make_teacher(1)]
    cached_teacher_logits(EnsembleTeacher(members, temperature=2.0), x, tmp_path)
    res = cached_teacher_logits(EnsembleTeacher(members, temperature=4.0), x, tmp_path)
    assert res.rebuilt and res.reason == "teacher weights changed"
