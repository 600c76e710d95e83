import json

import pytest

from kdistill.experiments import hinton_mnist as hm


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hm")
    cfg = hm.config_from("digits", out=str(out / "work"), report_dir=str(out / "report"),
                         teacher_epochs=2, student_epochs=2, student_hidden=16,
                         sweep_hidden=(16, 8), sweep_temperatures=(2.0,), temperature=4.0,
                         progress=False)
    logs = []
    return hm.run(cfg, log=logs.append), out, cfg, logs


def test_results_hold_the_protocol(tiny_run):
    r, out, _, logs = tiny_run
    for key in ("teacher_errors", "student_errors", "distilled_errors", "test_size", "sweep",
                "wall_seconds", "seeds", "command", "hardware"):
        assert key in r
    assert r["test_size"] == 450
    assert r["sweep"]["hidden"] == [16, 8] and r["sweep"]["temperatures"] == [2.0, 4.0]
    assert len(r["sweep"]["errors"]) == 2 and len(r["sweep"]["errors"][0]) == 2
    assert r["distilled_errors"] == r["sweep"]["errors"][0][1]
    assert r["student_errors"] == r["sweep"]["hard_label_errors"][0]
    gap = r["student_errors"] - r["teacher_errors"]
    if gap > 0:
        assert r["gap_recovered"] == pytest.approx(
            (r["student_errors"] - r["distilled_errors"]) / gap)
    # auto: the recipe with the fewest validation errors, never a test-set choice
    sel = r["teacher_selection"]
    assert set(sel) == set(hm.AUTO_CANDIDATES)
    assert sel[r["teacher_recipe"]]["validation_errors"] == min(
        v["validation_errors"] for v in sel.values())
    assert all(v["validation_size"] == 270 for v in sel.values())


def test_report_files_are_written(tiny_run):
    r, out, _, _ = tiny_run
    for folder, stem in ((out / "work", "results"), (out / "report", "digits")):
        data = json.loads((folder / f"{stem}.json").read_text())
        assert data["distilled_errors"] == r["distilled_errors"]
        md = (folder / f"{stem}.md").read_text()
        assert "| teacher" in md and "T=2" in md and "wall time" in md
        assert (folder / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_resumes_every_finished_run(tiny_run):
    r, out, cfg, _ = tiny_run
    logs = []
    again = hm.run(cfg, log=logs.append)
    assert again["sweep"] == r["sweep"] and again["teacher_errors"] == r["teacher_errors"]
    assert sum("resumed from" in line for line in logs) == len(hm.AUTO_CANDIDATES) + 1 + 2 + 4
    assert not any("/2 | loss" in line for line in logs)  # no epoch was trained again
    assert any(line.startswith("teacher logits 1/1: reused") for line in logs)


def test_bad_settings_rejected():
    with pytest.raises(ValueError, match="unknown teacher recipe"):
        hm.config_from("digits", teacher_recipe="magic").validate()
    with pytest.raises(ValueError, match="unknown hinton-mnist settings"):
        hm.config_from("digits", colour="blue")


def test_ensemble_teacher_run(tmp_path):
    cfg = hm.config_from("digits", out=str(tmp_path), teacher_recipe="dropout", teacher_members=2,
                         teacher_epochs=2, student_epochs=1, student_hidden=8, sweep=False,
                         progress=False)
    r = hm.run(cfg, log=lambda s: None)
    assert r["teacher_members"] == 2 and len(r["teacher_member_errors"]) == 2
    assert (tmp_path / "runs" / "teacher-dropout-m1" / "checkpoint.pt").exists()
    assert (tmp_path / "runs" / "distilled-8-T20-dropout-ens2" / "checkpoint.pt").exists()
    assert "ensemble of 2" in (tmp_path / "results.md").read_text()


def test_seeds_and_validation_choices(tmp_path):
    """Three seeds with the schedule and headline T chosen on validation: each cell's mean and
    sd are those of its per-seed runs, the paired difference and the gap recovered are
    computed seed by seed, and nothing is chosen on the test set."""
    import numpy as np

    cfg = hm.config_from("digits", out=str(tmp_path), teacher_recipe="dropout",
                         teacher_epochs=2, student_hidden=8, sweep_hidden=(8,),
                         sweep_temperatures=(1.0, 4.0), temperature=4.0, seeds=(0, 1, 2),
                         choose_on_validation=True, student_epochs_choices=(1, 2),
                         progress=False)
    r = hm.run(cfg, log=lambda s: None)
    assert r["seeds"] == [0, 1, 2] and r["train_size"] == 1347 - 270
    sel = r["schedule_selection"]
    assert r["student_epochs"] == min(sel, key=lambda e: (sel[e]["validation_errors"], e))
    sw = r["sweep"]
    val = sw["val_errors"][0]
    assert r["temperature"] == sw["temperatures"][int(np.argmin(val))]
    col = sw["temperatures"].index(r["temperature"])
    d, s = sw["errors_per_seed"][0][col], sw["hard_label_errors_per_seed"][0]
    assert r["distilled_errors_per_seed"] == d and r["student_errors_per_seed"] == s
    assert r["distilled_errors_mean"] == pytest.approx(np.mean(d))
    assert r["distilled_errors_sd"] == pytest.approx(np.std(d, ddof=1))
    diff = np.subtract(d, s)
    half = 4.303 * np.std(diff, ddof=1) / np.sqrt(3)
    assert r["distilled_minus_student"]["interval"] == pytest.approx(
        [diff.mean() - half, diff.mean() + half])
    gaps = [(a - b) / (a - r["teacher_errors"]) if a > r["teacher_errors"] else None
            for a, b in zip(s, d)]
    if None not in gaps:
        assert r["gap_recovered_mean"] == pytest.approx(np.mean(gaps))
    # best-on-validation: each run's test errors at its lowest-validation epoch
    row = r["distilled"]
    i = int(np.argmin(row["val_curve"]))
    assert r["distilled_errors_best_val_per_seed"][0] == row["curve"][i]
    for seed in (1, 2):
        assert (tmp_path / "runs" / f"val-student-8-e{r['student_epochs']}-s{seed}").is_dir()
    md = (tmp_path / "results.md").read_text()
    assert "±" in md and "best on validation" in md and "chosen on validation" in md
