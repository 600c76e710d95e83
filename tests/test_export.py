"""Export: safetensors + JSON spec round trips, tamper refusal, ONNX checked against torch, and
`kdistill export` end to end."""

import hashlib
import importlib.util
import json

import numpy as np
import pytest
import torch

from kdistill.cli import main
from kdistill.distill import export
from kdistill.distill.checkpoint import CheckpointError, load_model
from kdistill.distill.data import load_dataset
from kdistill.distill.models import build_model
from kdistill.distill.trainer import TrainConfig, train

MLP_SPEC = {"name": "mlp", "in_features": 64, "num_classes": 10, "hidden": [32, 16],
            "input_dropout": 0.1, "hidden_dropout": 0.2, "max_norm": 3.0}
CNN_SPEC = {"name": "cnn", "in_channels": 1, "num_classes": 10, "image_size": 8, "dropout": 0.1}


def _model(spec, seed=0):
    torch.manual_seed(seed)
    return build_model(spec).eval()


def _inputs(spec, n=37):
    shape = (1, 8, 8)  # digits-shaped: the MLP flattens them
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("spec", [MLP_SPEC, CNN_SPEC], ids=["mlp", "cnn"])
def test_safetensors_round_trip_is_bitwise(spec, tmp_path):
    model = _model(spec)
    path = tmp_path / "model.safetensors"
    meta_path = export.export_safetensors(model, spec, path)
    assert meta_path == tmp_path / "model.safetensors.json"
    meta = json.loads(meta_path.read_text())
    assert meta["model_spec"] == spec
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(meta["tensors"]) == set(model.state_dict())
    head, width = ("classifier.5", 256) if spec is CNN_SPEC else ("head", 16)
    assert meta["tensors"][f"{head}.weight"] == {"shape": [10, width], "dtype": "float32"}
    assert meta["kdistill_version"]
    assert b"torch._utils" not in path.read_bytes() and path.read_bytes()[8:9] == b"{"
    loaded, loaded_spec = export.load_safetensors(path)
    assert loaded_spec == spec and not loaded.training
    x = _inputs(spec)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    for name, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t)


def test_tampered_or_swapped_weights_are_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    export.export_safetensors(_model(MLP_SPEC), MLP_SPEC, path)
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[-5] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="does not match its spec: sha256"):
        export.load_safetensors(path)
    # Another model's weights with the hash updated: caught by the keys/shapes check.
    other = tmp_path / "other.safetensors"
    small = {**MLP_SPEC, "hidden": [8, 16]}
    export.export_safetensors(_model(small), small, other)
    path.write_bytes(other.read_bytes())
    meta = json.loads((tmp_path / "m.safetensors.json").read_text())
    meta["sha256"] = hashlib.sha256(other.read_bytes()).hexdigest()
    (tmp_path / "m.safetensors.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shapes or dtypes differ"):
        export.load_safetensors(path)
    (tmp_path / "m.safetensors.json").unlink()
    with pytest.raises(CheckpointError, match="no spec beside it"):
        export.load_safetensors(path)


def test_spec_that_does_not_rebuild_the_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not rebuild this model"):
        export.export_safetensors(_model(MLP_SPEC), {**MLP_SPEC, "hidden": [32, 15]},
                                  tmp_path / "m.safetensors")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("spec", [MLP_SPEC, CNN_SPEC], ids=["mlp", "cnn"])
def test_onnx_matches_torch_on_other_batch_sizes(spec, tmp_path):
    import onnxruntime as ort

    model = _model(spec)
    path = tmp_path / "m.onnx"
    r = export.export_onnx(model, _inputs(spec), path)
    assert r.max_abs_diff <= 1e-4 and r.examples == 37 and r.exporter == "dynamo"
    assert r.torch_ms_per_1000 > 0 and r.onnxruntime_ms_per_1000 > 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 300):  # the batch axis is dynamic
        x = _inputs(spec, n)
        got = session.run(["logits"], {"input": x.numpy()})[0]
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == (n, 10)
        assert np.abs(got - want).max() <= 1e-4


def test_onnx_mismatch_is_not_written(tmp_path, monkeypatch):
    real = export._write_onnx
    other = _model(MLP_SPEC, seed=1)
    monkeypatch.setattr(export, "_write_onnx",
                        lambda model, *args: real(other, *args))  # a wrong graph
    with pytest.raises(ValueError, match="differ from torch's by .* > 0.0001: not written"):
        export.export_onnx(_model(MLP_SPEC), _inputs(MLP_SPEC), tmp_path / "m.onnx")
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    splits = load_dataset("digits")
    spec = {"name": "mlp", "in_features": 64, "num_classes": 10, "hidden": [32]}
    torch.manual_seed(0)
    train(build_model(spec), splits.train, TrainConfig(epochs=1, batch_size=64, progress=False),
          out_dir=out, model_spec=spec)
    return out / "checkpoint.pt"


def _one_error_line(code, err, *words):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]


def test_cli_exports_both_formats(digits_checkpoint, tmp_path, capsys):
    model, _ = load_model(digits_checkpoint)
    x = load_dataset("digits").test.x
    out = tmp_path / "sub" / "model.onnx"
    assert main(["export", str(digits_checkpoint), "--format", "onnx", "--out", str(out),
                 "--dataset", "digits"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff"] <= 1e-4 and "digits test split (450" in report["inputs"]
    assert "torch" in report["latency"] and "onnxruntime" in report["latency"]
    import onnxruntime as ort

    got = ort.InferenceSession(str(out)).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - model(x).numpy()).max() <= 1e-4

    assert main(["export", str(digits_checkpoint), "--format", "onnx", "--out",
                 str(tmp_path / "r.onnx")]) == 0
    assert "random normal inputs of shape [64]" in json.loads(capsys.readouterr().out)["inputs"]

    st = tmp_path / "model.safetensors"
    assert main(["export", str(digits_checkpoint), "--format", "safetensors", "--out",
                 str(st)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sha256"] == hashlib.sha256(st.read_bytes()).hexdigest()
    loaded, _ = export.load_safetensors(st)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_cli_bad_input_exits_2_before_writing(digits_checkpoint, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [
        (["export", str(tmp_path / "none.pt"), "--format", "onnx", "--out",
          str(tmp_path / "m.onnx")], "checkpoint not found"),
        (["export", str(digits_checkpoint), "--format", "tflite", "--out",
          str(tmp_path / "m.onnx")], "invalid choice: 'tflite'"),
        (["export", str(digits_checkpoint), "--format", "onnx", "--out",
          str(blocker / "m.onnx")], "is not a writable folder"),
        (["export", str(digits_checkpoint), "--format", "safetensors", "--out",
          str(tmp_path)], "is a folder"),
        (["export", str(digits_checkpoint), "--format", "onnx", "--out",
          str(tmp_path / "m.onnx"), "--dataset", "fashion-mnist", "--data-dir",
          str(tmp_path / "nothing")], "fashion-mnist"),
    ]
    for argv, words in cases:
        code = main(argv)
        _one_error_line(code, capsys.readouterr().err, words)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    code = main(["export", str(digits_checkpoint), "--format", "onnx", "--out",
                 str(tmp_path / "m.onnx")])
    _one_error_line(code, capsys.readouterr().err, "onnxruntime (not installed)",
                    "kdistill[export]")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
