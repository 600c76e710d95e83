"""`reproduce soft-regularizer`: a small fraction with hard labels vs. with soft targets."""

import json

import numpy as np
import pytest

from kdistill.cli import main
from kdistill.experiments import soft_regularizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("sr")
    cfg = soft_regularizer.config_from("digits", out=str(out / "work"),
                                       report_dir=str(out / "rep"), hidden=(32,),
                                       full_epochs=6, small_epochs=12, temperatures=(1.0, 4.0),
                                       jitter=1, progress=False)
    return soft_regularizer.run(cfg, log=lambda s: None), out, cfg


def test_figures_follow_from_the_curves(tiny):
    r, out, _ = tiny
    data = json.loads((out / "rep" / "digits.json").read_text())
    for key in ("full_data_accuracy", "hard_peak_accuracy", "hard_final_accuracy",
                "soft_final_accuracy"):
        assert data[key] == r[key]
    assert r["small_train_size"] == round(0.1 * (1347 - 270))
    curve = r["hard"]["test_accuracy_curve"]
    assert len(curve) == 12
    assert r["hard_peak_accuracy"] == max(curve)
    assert r["hard_peak_epoch"] == int(np.argmax(curve)) + 1
    assert r["hard_final_accuracy"] == curve[-1]
    soft = r["soft_by_temperature"]
    best = max(soft, key=lambda t: (soft[t]["val_accuracy"], -float(t)))
    assert r["temperature"] == float(best)
    assert r["soft_final_accuracy"] == soft[best]["test_accuracy_curve"][-1]
    gap = r["full_data_accuracy"] - r["hard_peak_accuracy"]
    if gap > 0:
        assert r["gap_recovered"] == pytest.approx(
            (r["soft_final_accuracy"] - r["hard_peak_accuracy"]) / gap)
    assert set(r["jittered"]) == {"hard", "soft"}
    assert len(r["hard"]["train_accuracy_curve"]) == 12
    assert "early stop ON TEST" in (out / "rep" / "digits.md").read_text()


def test_rerun_trains_nothing(tiny):
    r, _, cfg = tiny
    logs = []
    again = soft_regularizer.run(cfg, log=logs.append)
    assert again["soft_by_temperature"] == r["soft_by_temperature"]
    assert not any("| loss" in line for line in logs)


@pytest.mark.parametrize("flags, words", [
    (["--fraction", "0"], "fraction"),
    (["--fraction", "1.5"], "fraction"),
    (["--jitter", "-1"], "jitter"),
    (["--temperatures", "-2"], "temperature"),
])
def test_cli_rejects_bad_settings(tmp_path, capsys, flags, words):
    out = tmp_path / "never"
    code = main(["reproduce", "soft-regularizer", "--dataset", "digits", "--out", str(out),
                 *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and "\n" not in err
    assert not out.exists()


def test_seeds_and_fraction_curve(tmp_path):
    """Two seeds and a curve fraction: the over-seeds figures are the per-seed runs' mean, sd
    and paired differences; every seed repeats its own split; the curve holds each fraction."""
    cfg = soft_regularizer.config_from("digits", out=str(tmp_path), hidden=(16,),
                                       full_epochs=3, small_epochs=6, temperatures=(2.0,),
                                       seeds=(0, 1), curve_fractions=(0.3,), progress=False)
    r = soft_regularizer.run(cfg, log=lambda s: None)
    assert r["seeds"] == [0, 1]
    seed1 = json.loads((tmp_path / "results.json").read_text())
    assert seed1["gap_recovered_mean"] == r["gap_recovered_mean"]
    per = r["gap_recovered_per_seed"]
    if None not in per:
        assert r["gap_recovered_mean"] == pytest.approx(np.mean(per))
        half = 12.706 * np.std(per, ddof=1) / np.sqrt(2)
        assert r["gap_recovered_interval"] == pytest.approx(
            [np.mean(per) - half, np.mean(per) + half])
    assert (tmp_path / "seed-1" / "runs" / "small-hard" / "checkpoint.pt").exists()
    assert (tmp_path / "seed-1" / "runs" / "f0.3-small-hard" / "checkpoint.pt").exists()
    assert [c["fraction"] for c in r["fraction_curve"]] == [0.1, 0.3]
    point = r["fraction_curve"][1]
    assert point["small_train_size"] == round(0.3 * (1347 - 270))
    assert point["small_epochs"] == max(3, round(6 * 0.1 / 0.3))
    d = r["soft_minus_hard_final"]
    assert d["mean"] == pytest.approx(r["soft_final_accuracy_mean"] - r["hard_final_accuracy_mean"])
    md = (tmp_path / "results.md").read_text()
    assert "Over 2 seed(s)" in md and "against the data fraction" in md
