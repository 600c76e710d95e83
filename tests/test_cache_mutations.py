"""Every way a teacher-logit cache can stop matching its teacher, data or bytes: each one is
rebuilt, never used (the promise: 0 silently reused)."""

import json

import numpy as np
import pytest
import torch

from kdistill.distill.cache import cached_teacher_logits
from kdistill.distill.teachers import run_teacher


def teacher(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))


def data():
    return torch.randn(40, 12, generator=torch.Generator().manual_seed(1))


def flip(path, offset):
    raw = bytearray(path.read_bytes())
    raw[offset % len(raw)] ^= 0x10
    path.write_bytes(bytes(raw))


def edit_meta(key, value):
    def mutate(folder):
        meta = json.loads((folder / "meta.json").read_text())
        meta[key] = value
        (folder / "meta.json").write_text(json.dumps(meta))
    return mutate


ARRAY_MUTATIONS = {
    "flip a header byte": lambda f: flip(f / "logits.npy", 20),
    "flip the first data byte": lambda f: flip(f / "logits.npy", 128),
    "flip a middle data byte": lambda f: flip(f / "logits.npy", 128 + 300),
    "flip the last byte": lambda f: flip(f / "logits.npy", -1),
    "truncate the array": lambda f: (f / "logits.npy").write_bytes(
        (f / "logits.npy").read_bytes()[:-16]),
    "zero the array": lambda f: np.save(f / "logits.npy", np.zeros((40, 4), np.float32)),
    "another array of the same shape": lambda f: np.save(
        f / "logits.npy", np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)),
    "NaN in the array": lambda f: np.save(f / "logits.npy", np.full((40, 4), np.nan,
                                                                     np.float32)),
    "delete the array": lambda f: (f / "logits.npy").unlink(),
    "garbage array file": lambda f: (f / "logits.npy").write_bytes(b"garbage"),
    "delete the metadata": lambda f: (f / "meta.json").unlink(),
    "metadata not JSON": lambda f: (f / "meta.json").write_text("{nope"),
    "metadata not UTF-8": lambda f: (f / "meta.json").write_bytes(b"\xff\xfe\x00"),
    "metadata a JSON list": lambda f: (f / "meta.json").write_text("[1, 2, 3]"),
    "metadata checksum edited": edit_meta("sha256", "0" * 64),
    "metadata shape edited": edit_meta("shape", [40, 5]),
    "metadata size edited": edit_meta("n", 39),
    "metadata teacher edited": edit_meta("teacher", "f" * 64),
    "metadata format edited": edit_meta("format", 1),
}


@pytest.mark.parametrize("name", sorted(ARRAY_MUTATIONS))
def test_damaged_files_are_rebuilt(tmp_path, name):
    t, x = teacher(), data()
    cached_teacher_logits(t, x, tmp_path)
    ARRAY_MUTATIONS[name](tmp_path)
    res = cached_teacher_logits(t, x, tmp_path)
    assert res.rebuilt, name
    torch.testing.assert_close(res.logits, run_teacher(t, x), rtol=0, atol=0)
    assert not cached_teacher_logits(t, x, tmp_path).rebuilt  # and then reused


INPUT_CHANGES = {
    "other teacher weights": lambda t, x: (teacher(seed=5), x),
    "one weight nudged": lambda t, x: (_nudged(t), x),
    "one input value changed": lambda t, x: (t, _changed(x)),
    "inputs reordered": lambda t, x: (t, x.flip(0)),
    "inputs in float64": lambda t, x: (t, x.double()),
    "one example fewer": lambda t, x: (t, x[:-1]),
}


def _nudged(t):
    t2 = teacher()
    with torch.no_grad():
        t2[1].weight[0, 0] += 1e-3
    return t2


def _changed(x):
    x = x.clone()
    x[7, 3] += 1e-4
    return x


@pytest.mark.parametrize("name", sorted(INPUT_CHANGES))
def test_another_teacher_or_other_data_rebuilds(tmp_path, name):
    t, x = teacher(), data()
    cached_teacher_logits(t, x, tmp_path)
    t2, x2 = INPUT_CHANGES[name](t, x)
    res = cached_teacher_logits(t2, x2, tmp_path)
    assert res.rebuilt, name
    torch.testing.assert_close(res.logits, run_teacher(t2, x2))


def test_another_transform_rebuilds(tmp_path):
    t, x = teacher(), data()
    cached_teacher_logits(t, x, tmp_path, transform="identity")
    assert cached_teacher_logits(t, x, tmp_path, transform="normalized").rebuilt
