"""The compression pipeline, `kdistill compress` and `kdistill reproduce model-compression`."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest

from kdistill.cli import main
from kdistill.experiments import model_compression as mc
from kdistill.tabular import compress as tc
from kdistill.tabular.metrics import metric_score
from kdistill.tabular.mimic import load_mimic
from kdistill.tabular.problems import TabularProblem

QUICK = dict(preset="tiny", n_jobs=1, selection_bags=3, munge_k=2, mimic_hidden=((16,), (4,)),
             epochs=5, batch_size=64, ann_hidden=((8,),), ann_epochs=(5,), timing_rows=200)
QUICK_FLAGS = ["--preset", "tiny", "--n-jobs", "1", "--munge-k", "2", "--mimic-hidden", "16",
               "4", "--mimic-epochs", "5"]


def synthetic(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x0": rng.standard_normal(n), "x1": rng.standard_normal(n),
                      "shade": pd.Categorical(rng.choice(["dark", "light"], n))})
    score = X["x0"] - X["x1"] ** 2 + (X["shade"] == "dark") + 0.4 * rng.standard_normal(n)
    return X, (score > 0).to_numpy().astype(np.int64)


def test_gain_captured_matches_the_paper_rows() -> None:
    # letter.p2 in Table 2: munge 0.179, ensemble 0.178, ann 0.228 -> 0.98
    assert tc.gain_captured(0.228, 0.179, 0.178) == pytest.approx(0.98)
    assert tc.gain_captured(0.3, 0.3, 0.31) is None  # the ensemble did not beat the ANN


def test_compress_split_numbers_are_what_the_saved_models_give(tmp_path) -> None:
    X, y = synthetic()
    parts = [(X.iloc[a:b].reset_index(drop=True), y[a:b]) for a, b in
             ((0, 120), (120, 180), (180, 240))]
    cfg = tc.CompressionConfig(**QUICK)
    r = tc.compress_split(*parts[0], *parts[1], *parts[2], cfg, out_dir=tmp_path,
                          log=lambda _: None)
    X_test, y_test = parts[2]
    ensemble = joblib.load(tmp_path / "ensemble.joblib")
    mimic = load_mimic(tmp_path / "mimic.pt")
    assert r["rmse"]["ensemble"] == pytest.approx(
        metric_score(y_test, ensemble.predict_proba(X_test), "rmse"))
    assert r["rmse"]["mimic_munge"] == pytest.approx(
        metric_score(y_test, mimic.predict_proba(X_test), "rmse"), rel=1e-6)
    p = mimic.predict_proba(X_test)[:, 1]
    assert r["rmse"]["mimic_munge"] == pytest.approx(np.sqrt(np.mean((p - y_test) ** 2)),
                                                     rel=1e-6)
    assert r["rows"] == {"train": 120, "hillclimb": 60, "test": 60, "transfer": 360,
                         "input_features": 4}
    assert set(r["rmse"]) == set(tc.METHODS)
    assert r["size_ratio_vs_ensemble"] == pytest.approx(
        r["size_bytes"]["ensemble"] / r["size_bytes"]["mimic_munge"])
    assert (tmp_path / "selection.png").stat().st_size > 0


def test_run_writes_the_summary(tmp_path, monkeypatch) -> None:
    def fake_problem(name: str) -> TabularProblem:
        X, y = synthetic(seed=len(name))
        return TabularProblem(name, X, y, ["shade"], f"synthetic {name}", (120, 60, None))

    monkeypatch.setattr(mc, "load_problem", fake_problem)
    s = mc.run(tc.CompressionConfig(**QUICK), ("letter.p1", "dna"), report_dir=tmp_path / "rep",
               out=tmp_path / "runs", log=lambda _: None)
    saved = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert [p["name"] for p in saved["problems"]] == ["letter.p1", "dna"]
    for p in saved["problems"]:
        assert set(p["rmse"]) == {"single", "ensemble", "ann", "mimic_munge", "mimic_small",
                                  "mimic_random"}
        assert p["computed_by"]
    mean = {m: np.mean([p["rmse"][m] for p in saved["problems"]]) for m in tc.METHODS}
    expected = tc.gain_captured(mean["ann"], mean["mimic_munge"], mean["ensemble"])
    assert saved["mean_gain_captured"] == (None if expected is None
                                           else pytest.approx(expected))
    for key in ("speedup_vs_ensemble", "size_ratio_vs_ensemble", "command", "hardware",
                "seeds", "wall_seconds"):
        assert key in saved
    assert s["problems"][0]["rows"]["test"] == 60
    assert (tmp_path / "rep" / "results.md").read_text().startswith("# Model compression")
    assert (tmp_path / "rep" / "results.png").is_file()

    # Resume: the saved per-problem results are reused; other settings recompute.
    def no_compute(*args, **kwargs):
        raise AssertionError("a saved result should have been reused")

    monkeypatch.setattr(mc, "compress_split", no_compute)
    again = mc.run(tc.CompressionConfig(**{**QUICK, "n_jobs": 2}), ("letter.p1", "dna"),
                   report_dir=tmp_path / "rep2", out=tmp_path / "runs", log=lambda _: None)
    assert again["problems"] == saved["problems"]
    assert again["mean_gain_captured"] == saved["mean_gain_captured"]
    with pytest.raises(AssertionError, match="should have been reused"):
        mc.run(tc.CompressionConfig(**{**QUICK, "epochs": 6}), ("letter.p1",),
               report_dir=tmp_path / "rep3", out=tmp_path / "runs", log=lambda _: None)
    with pytest.raises(AssertionError, match="should have been reused"):
        mc.run(tc.CompressionConfig(**QUICK), ("letter.p1",), report_dir=tmp_path / "rep3",
               out=tmp_path / "runs", log=lambda _: None, resume=False)


def test_the_small_mimic_is_the_best_candidate_within_the_size_budget(tmp_path) -> None:
    X, y = synthetic()
    parts = [(X.iloc[a:b].reset_index(drop=True), y[a:b]) for a, b in
             ((0, 120), (120, 180), (180, 240))]
    archs = ((2,), (64, 64), (8,))
    cfg = tc.CompressionConfig(**{**QUICK, "mimic_hidden": archs})
    r = tc.compress_split(*parts[0], *parts[1], *parts[2], cfg, log=lambda _: None)
    trials = r["mimic_selection"]
    assert [t["hidden"] for t in trials] == [list(a) for a in archs]
    best = min(trials, key=lambda t: t["hillclimb_rmse"])
    assert r["mimic_chosen"]["mimic_munge"] == best["hidden"]
    assert r["mimic_chosen"]["mimic_random"] == best["hidden"]
    # A budget between the two smaller exports and the big one: the big net may not be small.
    sizes = sorted(t["size_bytes"] for t in trials)
    budget = r["size_bytes"]["ensemble"] / ((sizes[1] + sizes[2]) / 2)
    r = tc.compress_split(*parts[0], *parts[1], *parts[2],
                          tc.CompressionConfig(**{**QUICK, "mimic_hidden": archs,
                                                  "size_budget": budget}), log=lambda _: None)
    within = [t for t in r["mimic_selection"] if t["within_budget"]]
    assert [t["hidden"] for t in within] == [[2], [8]] and r["mimic_small_within_budget"]
    small = min(within, key=lambda t: t["hillclimb_rmse"])
    assert r["mimic_chosen"]["mimic_small"] == small["hidden"]
    assert r["size_bytes"]["mimic_small"] <= r["size_bytes"]["ensemble"] / budget
    assert r["size_ratio_vs_ensemble_small"] == pytest.approx(
        r["size_bytes"]["ensemble"] / r["size_bytes"]["mimic_small"])
    # No candidate fits: the smallest one, and the log and report say it is over budget.
    lines: list[str] = []
    r = tc.compress_split(*parts[0], *parts[1], *parts[2],
                          tc.CompressionConfig(**{**QUICK, "mimic_hidden": archs,
                                                  "size_budget": 1e9}), log=lines.append)
    assert r["mimic_chosen"]["mimic_small"] == [2]
    assert not any(t["within_budget"] for t in r["mimic_selection"])
    assert r["mimic_small_within_budget"] is False
    assert any("no candidate is within 1/1e+09" in line for line in lines)
    assert not any("the best within" in line for line in lines)
    summary = {"problems": [{"name": "p1", **r}, {"name": "p2", "mimic_small_within_budget": True}]}
    assert mc._over_budget(summary).startswith(" No candidate fits the budget on p1:")


def write_csv(path, n: int = 200, **extra) -> None:
    X, y = synthetic(n)
    frame = X.assign(label=np.where(y == 1, "pos", "neg"), **extra)
    frame.to_csv(path, index=False)


def one_line_exit_2(code: int, err: str, *words: str) -> None:
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


def test_cli_compress_end_to_end(tmp_path, capsys) -> None:
    write_csv(tmp_path / "d.csv")
    out = tmp_path / "out"
    code = main(["compress", str(tmp_path / "d.csv"), "--target", "label", "--out", str(out),
                 *QUICK_FLAGS])
    stdout = capsys.readouterr().out
    assert code == 0 and "mimic" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == ["neg", "pos"] and report["rows"]["train"] == 120
    for name in ("mimic.pt", "ensemble.joblib", "report.md", "selection.png"):
        assert (out / name).is_file()


@pytest.mark.parametrize("case, words", [
    ("missing-target", ["target column 'label' not in"]),
    ("unencodable", ["column 'comment' is not numeric", "cannot encode"]),
    ("too-few-rows", ["too few rows"]),
    ("no-file", ["not found"]),
    ("bad-fraction", ["fraction"]),
])
def test_cli_compress_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, words) -> None:
    path = tmp_path / "d.csv"
    target, extra = "label", []
    if case == "missing-target":
        write_csv(path)
        target = "outcome"
        words = [f"target column '{target}' not in"]
    elif case == "unencodable":
        write_csv(path, comment=[f"free text {i}" for i in range(200)])
    elif case == "too-few-rows":
        write_csv(path, n=40)
    elif case == "bad-fraction":
        write_csv(path)
        extra = ["--test-fraction", "0.9"]
    out = tmp_path / "out"
    code = main(["compress", str(path), "--target", target, "--out", str(out), *QUICK_FLAGS,
                 *extra])
    one_line_exit_2(code, capsys.readouterr().err, *words)
    assert not out.exists()  # nothing written


def test_cli_rejects_a_bad_mimic_architecture(tmp_path, capsys) -> None:
    write_csv(tmp_path / "d.csv")
    code = main(["compress", str(tmp_path / "d.csv"), "--target", "label", "--out",
                 str(tmp_path / "out"), "--mimic-hidden", "64x0"])
    one_line_exit_2(code, capsys.readouterr().err, "not an architecture: '64x0'")


def test_cli_reproduce_model_compression_rejects_unknown_problem(tmp_path, capsys) -> None:
    code = main(["reproduce", "model-compression", "--problems", "adult", "--report-dir",
                 str(tmp_path / "rep")])
    one_line_exit_2(code, capsys.readouterr().err, "unknown problem 'adult'")
    assert not (tmp_path / "rep").exists()
