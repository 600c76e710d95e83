"""`reproduce omitted-class`: the bias fix on a student that never saw some classes."""

import json

import numpy as np
import pytest

from kdistill.cli import main
from kdistill.experiments import omitted_class


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_evaluate_fix_by_hand():
    # 3 classes; the student gives class 2 far too little mass on unlabelled data.
    rng = np.random.default_rng(0)
    y_u = rng.integers(0, 3, 600)
    z_u = 3.0 * np.eye(3)[y_u] + rng.normal(0, 0.5, (600, 3))
    z_u[:, 2] -= 4.0
    y_t = np.array([0, 1, 2, 2, 2, 0])
    z_t = 3.0 * np.eye(3)[y_t]
    z_t[:, 2] -= 4.0
    prior = np.array([1 / 3, 1 / 3, 1 / 3])
    fix = omitted_class.evaluate_fix(z_u, z_t, y_t, [2], prior, [2])
    b = fix["offsets"][2]
    shifted = z_u.copy()
    shifted[:, 2] += b
    assert _softmax(shifted).mean(0)[2] == pytest.approx(1 / 3, abs=1e-4)
    assert fix["errors_before"] == 3 and fix["recall_omitted_before"] == 0.0
    # Before: every class-2 test row is predicted 0 (a tie broken low) -> 3 errors. After the
    # offset (about +4) class 2 wins on its rows and loses on the others.
    zt = z_t.copy()
    zt[:, 2] += b
    assert fix["errors_auto"] == int((zt.argmax(1) != y_t).sum()) == 0
    assert fix["recall_omitted_auto"] == 1.0
    assert fix["errors_oracle"] == 0 and 1.0 < fix["oracle_offset"] <= 7.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("om")
    cfg = omitted_class.config_from("digits", out=str(out / "work"), report_dir=str(out / "rep"),
                                    teacher_hidden=(32,), student_hidden=(16,),
                                    teacher_epochs=8, student_epochs=5, temperature=4.0,
                                    progress=False)
    return omitted_class.run(cfg, log=lambda s: None), out, cfg


def test_cases_and_required_keys(tiny):
    r, out, _ = tiny
    data = json.loads((out / "rep" / "digits.json").read_text())
    for key in ("omitted_classes", "teacher_recall_omitted", "recall_omitted_before",
                "recall_omitted_auto", "recall_omitted_oracle", "errors_before", "errors_auto",
                "errors_oracle", "errors_full_transfer"):
        assert data[key] == r[key]
    assert r["omitted_classes"] == [3]
    assert r["cases"]["keep_only"]["omitted_classes"] == [0, 1, 2, 3, 4, 5, 6, 9]
    assert r["cases"]["keep_only"]["oracle_classes"] == [7, 8]
    # the transfer sets really lack the classes: sizes from the labels
    from kdistill.distill.data import load_dataset

    y = load_dataset("digits").train.y.numpy()
    assert r["transfer_size"] == int((y != 3).sum())
    assert r["cases"]["keep_only"]["transfer_size"] == int(np.isin(y, [7, 8]).sum())
    # the oracle is tuned on test, so it can never lose to no shift (offset 0 is in its grid)
    for c in r["cases"].values():
        assert c["errors_oracle"] <= c["errors_before"]
    # a student trained only on 7s and 8s misses most other classes before the fix
    assert r["cases"]["keep_only"]["recall_omitted_before"] < 0.5
    assert r["cases"]["keep_only"]["recall_omitted_auto"] > \
        r["cases"]["keep_only"]["recall_omitted_before"]
    assert r["teacher_prior"] == pytest.approx(np.array(r["teacher_prior"]) / sum(
        r["teacher_prior"]))


def test_rerun_trains_nothing(tiny):
    r, _, cfg = tiny
    logs = []
    again = omitted_class.run(cfg, log=logs.append)
    assert again["cases"] == r["cases"]
    assert not any("| loss" in line for line in logs)


@pytest.mark.parametrize("flags, words", [
    (["--omit", "10"], "does not exist"),
    (["--omit", "3", "3"], "repeats"),
    (["--keep-only", "-1"], "does not exist"),
    (["-T", "0"], "temperature"),
])
def test_cli_rejects_bad_settings(tmp_path, capsys, flags, words):
    out = tmp_path / "never"
    code = main(["reproduce", "omitted-class", "--dataset", "digits", "--out", str(out), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and "\n" not in err
    assert not out.exists()


def test_figures_over_seeds(tiny):
    """digits runs three seeds: each in its own folder, the means and paired differences are
    those of the per-seed figures."""
    r, out, _ = tiny
    assert r["seeds"] == [0, 1, 2]
    assert (out / "work" / "seed-2" / "runs" / "student-omit-3" / "checkpoint.pt").exists()
    before = [s["omit"]["errors_before"] for s in r["per_seed"]]
    auto = [s["omit"]["errors_auto"] for s in r["per_seed"]]
    assert r["errors_before"] == before[0]
    assert r["errors_auto_mean"] == pytest.approx(np.mean(auto))
    assert r["errors_auto_sd"] == pytest.approx(np.std(auto, ddof=1))
    d = np.subtract(auto, before)
    half = 4.303 * np.std(d, ddof=1) / np.sqrt(3)
    assert r["auto_minus_before_errors"]["interval"] == pytest.approx(
        [d.mean() - half, d.mean() + half])
    assert "Over 3 seed(s)" in (out / "rep" / "digits.md").read_text()
