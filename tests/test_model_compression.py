"""The compression pipeline, `kdistill compress` and `kdistill reproduce model-compression`."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest

from kdistill.cli import main
from kdistill.experiments import model_compression as mc
from kdistill.experiments import model_compression_report as mcr
from kdistill.tabular import compress as tc
from kdistill.tabular.compress_nets import budget_widths
from kdistill.tabular.metrics import metric_score
from kdistill.tabular.mimic import load_mimic
from kdistill.tabular.problems import TabularProblem

QUICK = dict(preset="tiny", n_jobs=1, selection_bags=3, munge_k=2, mimic_hidden=((16,), (4,)),
             epochs=5, small_epochs=5, batch_size=64, ann_hidden=((8,),), ann_epochs=(5,),
             timing_rows=200)
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
    cfg = tc.CompressionConfig(**QUICK, numeric="robust")   # the nets' inputs only
    r = tc.compress_split(*parts[0], *parts[1], *parts[2], cfg, out_dir=tmp_path,
                          log=lambda _: None)
    X_test, y_test = parts[2]
    ensemble = joblib.load(tmp_path / "ensemble.joblib")
    mimic = load_mimic(tmp_path / "mimic.pt")
    assert mimic.encoder_.numeric == "robust" and r["nets_numeric"] == "robust"
    assert load_mimic(tmp_path / "mimic-small.pt").encoder_.numeric == "robust"
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
    noise = saved["mean_gain_noise"]
    assert noise["gain"] == pytest.approx(np.mean([p["gain_noise"]["gain"]
                                                   for p in saved["problems"]]))
    if noise["ci95"][0] <= 0:  # the mean gain within the noise: no share shown
        expected = None
    assert saved["mean_gain_captured"] == (None if expected is None
                                           else pytest.approx(expected))
    assert saved["metric"] == "rmse"
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
    quick = {**QUICK, "budget_fitted": False}   # the fixed candidates alone
    cfg = tc.CompressionConfig(**{**quick, "mimic_hidden": archs})
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
                          tc.CompressionConfig(**{**quick, "mimic_hidden": archs,
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
                          tc.CompressionConfig(**{**quick, "mimic_hidden": archs,
                                                  "size_budget": 1e9}), log=lines.append)
    assert r["mimic_chosen"]["mimic_small"] == [2]
    assert not any(t["within_budget"] for t in r["mimic_selection"])
    assert r["mimic_small_within_budget"] is False
    assert any("no candidate is within 1/1e+09" in line for line in lines)
    assert not any("the best within" in line for line in lines)
    summary = {"problems": [{"name": "p1", **r}, {"name": "p2", "mimic_small_within_budget": True}]}
    assert mcr._over_budget(summary).startswith(" No candidate fits the budget on p1:")


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


def test_budget_widths_are_the_widest_nets_whose_weights_fit() -> None:
    # 10 inputs, 3 classes: one layer of h has 14h + 3 weights, two of h have h^2 + 15h + 3.
    assert budget_widths(10, 3, 4 * (14 * 20 + 3)) == [(20,), (10, 10)]
    assert budget_widths(10, 3, 4 * (14 * 20 + 3) - 1)[0] == (19,)
    assert budget_widths(10, 3, 4 * (20 * 20 + 15 * 20 + 3))[1] == (20, 20)
    assert budget_widths(10, 3, 4 * (20 * 20 + 15 * 20 + 3) - 1)[1] == (19, 19)
    for n_bytes in (500, 4321, 98765):   # against a brute-force search over widths
        one, two = budget_widths(10, 3, n_bytes)
        fits1 = [h for h in range(1, 2000) if 4 * (14 * h + 3) <= n_bytes]
        fits2 = [h for h in range(1, 2000) if 4 * (h * h + 15 * h + 3) <= n_bytes]
        assert one == (max(fits1),) and two == (max(fits2),) * 2
    assert budget_widths(10, 3, 40) == []    # nothing of width 4 or more fits


def test_budget_fitted_mimics_spend_the_budget_and_compete_for_the_small_mimic() -> None:
    X, y = synthetic()
    parts = [(X.iloc[a:b].reset_index(drop=True), y[a:b]) for a, b in
             ((0, 120), (120, 180), (180, 240))]
    archs = ((2,), (64, 64))
    r = tc.compress_split(*parts[0], *parts[1], *parts[2],
                          tc.CompressionConfig(**{**QUICK, "mimic_hidden": archs}),
                          log=lambda _: None)
    small, big = (t["size_bytes"] for t in r["mimic_selection"][:2])
    budget = r["size_bytes"]["ensemble"] / ((small + big) / 2)     # between the two
    lines: list[str] = []
    r = tc.compress_split(*parts[0], *parts[1], *parts[2],
                          tc.CompressionConfig(**{**QUICK, "mimic_hidden": archs,
                                                  "size_budget": budget}), log=lines.append)
    max_bytes = r["size_bytes"]["ensemble"] / budget
    trials = r["mimic_selection"]
    fitted = [t for t in trials if t.get("budget_fitted")]
    assert [len(t["hidden"]) for t in fitted] == [1, 2]
    for t in fitted:
        assert t["epochs"] == QUICK["small_epochs"] and t["within_budget"]
        assert small < t["size_bytes"] <= max_bytes     # wider than the fixed net that fits
    within = [t for t in trials if t["within_budget"]]
    chosen = min(within, key=lambda t: t["hillclimb_rmse"])
    assert r["mimic_chosen"]["mimic_small"] == chosen["hidden"]
    # The most accurate mimic is still chosen among the fixed candidates only.
    assert r["mimic_chosen"]["mimic_munge"] == min(trials[:2], key=lambda t: t[
        "hillclimb_rmse"])["hidden"]
    assert sum("budget-fitted" in line for line in lines) == 2


def test_cli_compress_end_to_end(tmp_path, capsys) -> None:
    write_csv(tmp_path / "d.csv")
    out = tmp_path / "out"
    code = main(["compress", str(tmp_path / "d.csv"), "--target", "label", "--out", str(out),
                 *QUICK_FLAGS, "--metric", "log-loss"])
    stdout = capsys.readouterr().out
    assert code == 0 and "mimic" in stdout
    assert "library: model 1 of" in stdout and "mimic: candidate 2 of 2" in stdout  # progress
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == ["neg", "pos"] and report["rows"]["train"] == 120
    assert report["metric"] == "log_loss" and report["config"]["metric"] == "log_loss"
    assert report["gain_noise"]["metric"] == "log_loss"
    assert f"test log-loss: ensemble {report['log_loss']['ensemble']:.4f}" in stdout
    md = (out / "report.md").read_text()
    assert "**log-loss** (`--metric`)" in md
    assert ("gain within noise" in md) == (report["gain_captured_reason"] or "").startswith(
        "gain within noise")
    for name in ("mimic.pt", "ensemble.joblib", "report.md", "selection.png"):
        assert (out / name).is_file()


@pytest.mark.parametrize("case, words", [
    ("missing-target", ["target column 'label' not in"]),
    ("unencodable", ["column 'comment' is not numeric", "cannot encode"]),
    ("too-few-rows", ["too few rows"]),
    ("no-file", ["not found"]),
    ("bad-fraction", ["fraction"]),
    ("bad-metric", ["--metric", "unknown metric 'f2'", "log-loss, roc-auc"]),
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
    elif case == "bad-metric":
        write_csv(path)
        extra = ["--metric", "f2"]
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


# ------------------------------------------------ issue 14, part 4: honest reports

def split_parts() -> list[tuple[pd.DataFrame, np.ndarray]]:
    X, y = synthetic()
    return [(X.iloc[a:b].reset_index(drop=True), y[a:b]) for a, b in
            ((0, 120), (120, 180), (180, 240))]


def report_of(r: dict) -> str:
    from kdistill.tabular.compress_report import render_report

    return render_report({**r, "data": "d.csv", "target": "label", "classes": ["neg", "pos"],
                          "command": "kdistill compress d.csv", "hardware": "cpu",
                          "total_wall_seconds": 1.0})


def test_metric_chooses_everything_and_the_gain_follows_the_noise_rule(tmp_path, caplog) -> None:
    from sklearn.metrics import accuracy_score, log_loss

    from kdistill.tabular.gain import bootstrap_gain, gain_verdict

    parts = split_parts()
    lines: list[str] = []
    with caplog.at_level("INFO", logger="kdistill"):
        r = tc.compress_split(*parts[0], *parts[1], *parts[2],
                              tc.CompressionConfig(**QUICK, metric="accuracy"),
                              out_dir=tmp_path, log=lines.append)
    (X_hill, y_hill), (X_test, y_test) = parts[1], parts[2]
    ensemble = joblib.load(tmp_path / "ensemble.joblib")
    mimic = load_mimic(tmp_path / "mimic.pt")
    assert r["metric"] == "accuracy" and r["selection"]["metric"] == "accuracy"
    # the selection's hillclimb score is the saved ensemble's accuracy on the hillclimb rows
    assert r["selection"]["hillclimb_score"] == pytest.approx(
        accuracy_score(y_hill, ensemble.predict_proba(X_hill).argmax(axis=1)))
    # the mimic kept is the candidate with the best hillclimb accuracy, which it has
    trials = r["mimic_selection"]
    best = max(trials, key=lambda t: t["hillclimb_score"])
    assert r["mimic_chosen"]["mimic_munge"] == best["hidden"]
    assert best["hillclimb_score"] == pytest.approx(
        accuracy_score(y_hill, mimic.predict(X_hill)))
    assert r["log_loss"]["ensemble"] == pytest.approx(
        log_loss(y_test, ensemble.predict_proba(X_test)))
    worse = r["selection"]["hillclimb_score"] < r["selection"]["best_single_hillclimb_score"]
    assert r["selection"]["worse_than_best_single"] == worse == bool(r["warnings"])
    # the gain captured is shown exactly when the interval of the gain lies above 0
    noise = r["gain_noise"]
    assert noise["metric"] == "accuracy" and noise["gain"] == pytest.approx(
        r["accuracy"]["ensemble"] - r["accuracy"]["ann"])
    shown = noise["ci95"][0] > 0
    assert (r["gain_captured"] is not None) == shown
    assert (r["gain_captured_reason"] is None) == shown
    if shown:
        assert r["gain_captured"] == pytest.approx(tc.gain_captured(
            r["accuracy"]["ann"], r["accuracy"]["mimic_munge"], r["accuracy"]["ensemble"],
            "accuracy"))
    # progress of every long step: the library (logging), labelling, each candidate, the ANN
    library_lines = [rec.getMessage() for rec in caplog.records
                     if rec.name == "kdistill.tabular.library"]
    assert library_lines[0].startswith("  library: model 1 of ")
    assert any(line.startswith("  MUNGE labelling: model 1 of ") for line in lines)
    assert sum(line.startswith("  mimic: candidate ") for line in lines) == 2
    assert any(line.startswith("  ann: trial 1 of 1") for line in lines)
    md = report_of(r)
    assert "**accuracy** (`--metric`)" in md and "95% interval" in md

    # a hand-built tiny gain in the same report: no share, and "gain within noise" instead
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p_ann = np.clip(np.where(y == 1, 0.7, 0.3) + 0.25 * rng.standard_normal(400), 0.06, 0.94)
    p_ens = p_ann + 0.01 * np.where(y == 1, 1, -1) * np.where(np.arange(400) % 2, 1, -0.9)
    tiny = bootstrap_gain(y, p_ens, p_ann, "rmse")
    assert tiny["ci95"][0] < 0 < tiny["ci95"][1]
    _, reason = gain_verdict(tiny)
    md = report_of({**r, "metric": "rmse", "gain_noise": tiny, "gain_captured": None,
                    "gain_captured_small": None, "gain_captured_reason": reason})
    assert "No share of the ensemble's gain is reported: gain within noise" in md
    assert "kept by the mimic" not in md and "of the gain and" not in md


class WorstSelection:
    """All weight on the library model worst on the hillclimb rows."""

    def __init__(self, metric: str, **_: object) -> None:
        self.metric = metric

    def fit(self, P: np.ndarray, y: np.ndarray) -> WorstSelection:
        scores = np.array([metric_score(y, p, self.metric) for p in P])
        worst = int(np.argmax(scores) if self.metric == "rmse" else np.argmin(scores))
        self.weights_ = np.eye(len(P))[worst]
        self.score_ = float(scores[worst])
        self.trajectory_ = np.array([[self.score_]])
        return self


def test_a_warning_when_the_ensemble_loses_to_its_best_single_model(monkeypatch, caplog) -> None:
    monkeypatch.setattr(tc, "EnsembleSelection", WorstSelection)
    parts = split_parts()
    with caplog.at_level("WARNING", logger="kdistill"):
        r = tc.compress_split(*parts[0], *parts[1], *parts[2], tc.CompressionConfig(**QUICK),
                              skip_baselines=True, log=lambda _: None)
    assert r["selection"]["worse_than_best_single"]
    assert r["selection"]["hillclimb_score"] > r["selection"]["best_single_hillclimb_score"]
    warned = [rec for rec in caplog.records if rec.levelname == "WARNING"]
    assert len(warned) == 1 and "worse on the hillclimb rows than its best single model" in \
        warned[0].getMessage() and r["selection"]["best_single"] in warned[0].getMessage()
    assert r["warnings"] == [warned[0].getMessage()]
    assert f"**Warning:** {r['warnings'][0]}." in report_of(r)
    assert r["gain_captured"] is None and r["gain_captured_reason"].startswith("baselines")


def test_mean_gain_of_the_reproduction_follows_the_noise_rule() -> None:
    def row(name: str, ann: float, ens: float, mimic: float, noise: dict | None) -> dict:
        scores = {"single": ens, "ensemble": ens, "ann": ann, "mimic_munge": mimic,
                  "mimic_small": mimic, "mimic_random": mimic}
        return {"name": name, "rmse": scores, "gain_noise": noise}

    clear = [row("a", 0.30, 0.20, 0.22, {"metric": "rmse", "gain": 0.10, "se": 0.01}),
             row("b", 0.20, 0.18, 0.19, {"metric": "rmse", "gain": 0.02, "se": 0.01})]
    g = mc._mean_gains(clear, "rmse")
    # means: ann 0.25, ensemble 0.19, mimic 0.205 -> (0.25 - 0.205) / (0.25 - 0.19) = 0.75
    assert g["mean_gain_captured"] == pytest.approx(0.75)
    assert g["mean_gain_noise"]["se"] == pytest.approx(np.sqrt(2) * 0.01 / 2)
    noisy = [row("a", 0.30, 0.299, 0.29, {"metric": "rmse", "gain": 0.001, "se": 0.002}),
             row("b", 0.20, 0.199, 0.19, {"metric": "rmse", "gain": 0.001, "se": 0.002})]
    g = mc._mean_gains(noisy, "rmse")
    assert g["mean_gain_captured"] is None and g["mean_gain_captured_small"] is None
    assert g["mean_gain_captured_reason"].startswith("gain within noise")
    old = [row("a", 0.30, 0.20, 0.22, None), clear[1]]  # saved before the noise estimate
    g = mc._mean_gains(old, "rmse")
    assert g["mean_gain_captured"] == pytest.approx(0.75)
    assert g["mean_gain_captured_reason"] == ("noise not assessed: results saved before the "
                                              "noise estimate for a")
