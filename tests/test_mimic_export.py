"""A mimic exported for other runtimes: ONNX against onnxruntime, safetensors + JSON spec."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kdistill.cli import main
from kdistill.distill.checkpoint import CheckpointError
from kdistill.tabular.encoding import TabularEncoder
from kdistill.tabular.mimic import MimicClassifier, load_mimic

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("safetensors")


def rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colour = rng.choice(np.array(["red", "blue", None], dtype=object), n)
    return pd.DataFrame({"x0": rng.standard_normal(n), "x1": 10 + 3 * rng.standard_normal(n),
                         "colour": colour})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    X = rows(200, 0)
    y = np.where(X["x0"] + (X["colour"] == "red") > 0.5, "yes", "no").astype(object)
    y[X["x1"] > 12] = "maybe"
    mimic = MimicClassifier(pseudo="none", hidden=(16, 8), epochs=30, batch_size=64,
                            lr=1e-2).fit(X, y)
    return mimic, tmp_path_factory.mktemp("export")


def test_onnx_gives_the_same_probabilities_as_the_mimic(fitted) -> None:
    import onnxruntime as ort

    mimic, d = fitted
    path = mimic.export(d / "mimic.onnx", target="label")
    spec = json.loads((d / "mimic.onnx.json").read_text())
    assert spec["classes"] == ["maybe", "no", "yes"] and spec["target"] == "label"
    assert spec["output"] == "probabilities" and spec["max_abs_diff"] <= 1e-5
    # the consumer's path: the encoder rebuilt from the JSON spec, the graph run by onnxruntime
    test = rows(500, 1)
    encoder = TabularEncoder.from_dict(spec["encoder"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([spec["output"]], {spec["input"]: encoder.transform(test)})[0]
    want = mimic.predict_proba(test)
    err = float(np.abs(got - want).max())
    print(f"ONNX parity: max abs difference {err:.3g} over {len(test)} rows")
    assert got.shape == (500, 3) and err <= 1e-5
    np.testing.assert_array_equal(np.array(spec["classes"])[got.argmax(1)], mimic.predict(test))
    with pytest.raises(CheckpointError, match="ONNX file"):
        load_mimic(path)


def test_safetensors_round_trip_and_a_changed_file_is_refused(fitted) -> None:
    mimic, d = fitted
    path = mimic.export(d / "mimic.safetensors", classes=["M", "N", "Y"], target="label")
    loaded = load_mimic(path)
    test = rows(100, 2)
    np.testing.assert_array_equal(loaded.predict_proba(test), mimic.predict_proba(test))
    assert list(loaded.classes_) == ["M", "N", "Y"] and loaded.target_ == "label"
    with pytest.raises(ValueError, match="target column 'label'"):
        loaded.predict_proba(test.assign(label="N"))
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="does not match its spec"):
        load_mimic(path)


def test_cli_export_takes_a_compress_mimic(fitted, tmp_path, capsys) -> None:
    mimic, _ = fitted
    mimic.export(tmp_path / "mimic.pt")
    assert main(["export", str(tmp_path / "mimic.pt"), "--format", "safetensors", "--out",
                 str(tmp_path / "m.safetensors")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["classes"] == ["maybe", "no", "yes"]
    test = rows(30, 3)
    np.testing.assert_array_equal(load_mimic(tmp_path / "m.safetensors").predict_proba(test),
                                  mimic.predict_proba(test))
