"""`reproduce league`: a 2-method, 1-seed league on the 8x8 digits end to end through the CLI,
resuming without training, assemble-only giving the same JSON, cells selection, the stratified
subset, the layer pairs, the epoch chosen on validation and the paired t-interval."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from kdistill.cli import main
from kdistill.distill import trainer
from kdistill.distill.data import ArrayDataset
from kdistill.distill.models import build_model
from kdistill.experiments import league
from kdistill.experiments.league_plan import (
    LAYERS,
    Plan,
    cell_row,
    parse_cells,
    select_cells,
    stratified_subset,
)
from kdistill.experiments.league_report import paired_interval, t_quantile

TINY = ["--dataset", "digits", "--teacher-depth", "10", "--teacher-width", "1",
        "--teacher-epochs", "2", "--epochs", "2", "--seeds", "1", "--methods", "kd", "dkd",
        "--validation-size", "200", "--subset", "400", "--no-progress"]
VOLATILE = ("wall_seconds", "command", "config")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("league")
    argv = ["reproduce", "league", *TINY, "--out", str(root / "work"), "--report-dir",
            str(root / "rep")]
    assert main(argv) == 0
    return root, argv, json.loads((root / "rep" / "digits.json").read_text())


def _stable(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in VOLATILE}


def test_the_report_has_every_required_key(tiny) -> None:
    root, _, r = tiny
    assert {"teacher", "seeds", "students", "command", "hardware", "wall_seconds"} <= set(r)
    assert set(r["teacher"]) >= {"name", "accuracy"} and r["teacher"]["name"] == "WRN-10-1"
    assert r["seeds"] == [0] and r["missing_cells"] == []
    assert set(r["students"]) == {"resnet8", "mlp800"}
    for st in r["students"].values():
        assert {"accuracy_mean", "accuracy_sd"} <= set(st["plain"])
        assert list(st["methods"]) == ["kd", "dkd"]
        for e in st["methods"].values():
            assert {"accuracy_mean", "accuracy_sd", "val_chosen_accuracy_mean",
                    "gap_recovered", "delta_vs_kd", "epoch_cost_vs_plain"} <= set(e)
            assert e["teacher_outputs"] == "cached logits" and e["n_seeds"] == 1
            assert e["accuracy_sd"] is None        # one seed has no spread
            assert e["epoch_cost_vs_plain"] > 0
        kd, dkd = st["methods"]["kd"], st["methods"]["dkd"]
        assert kd["delta_vs_kd"] is None
        assert dkd["delta_vs_kd"]["mean"] == pytest.approx(dkd["accuracy_mean"]
                                                           - kd["accuracy_mean"])
        gap = r["teacher"]["accuracy"] - st["plain"]["accuracy_mean"]
        want = (kd["accuracy_mean"] - st["plain"]["accuracy_mean"]) / gap if gap > 0 else None
        assert kd["gap_recovered"] == (pytest.approx(want) if want is not None else None)
    assert r["students"]["resnet8"]["transfer_size"] == 400          # the CPU tier's subset
    assert r["students"]["mlp800"]["transfer_size"] == r["train_size"]
    md = (root / "rep" / "digits.md").read_text()
    assert "| dkd |" in md and "seeds" in md
    # the warm-up is a twelfth of each student's own steps: 2 epochs x ceil(n / 64)
    for s, n in (("resnet8", 400), ("mlp800", r["train_size"])):
        steps = round(2 * -(-n // 64) / 12)
        assert r["students"][s]["methods"]["dkd"]["parameters"]["warmup_steps"] == steps
        assert f"- dkd ({s}): alpha = 1.0" in md and f"warmup_steps = {steps}" in md
    assert "- kd: temperature = 4.0" in md                   # the same for both: one line
    assert (root / "rep" / "digits.png").stat().st_size > 0
    assert (root / "work" / "results.json").exists()


def test_a_second_call_resumes_every_run_without_training(tiny, monkeypatch) -> None:
    root, argv, first = tiny

    def no_training(*_a, **_k):
        raise AssertionError("trained although every run was finished")

    monkeypatch.setattr(trainer, "train_epoch", no_training)
    assert main(argv) == 0
    again = json.loads((root / "rep" / "digits.json").read_text())
    assert _stable(again) == _stable(first)


def test_assemble_only_rebuilds_the_same_report(tiny, monkeypatch) -> None:
    root, argv, first = tiny
    monkeypatch.setattr(league, "fit_run", lambda *a, **k: pytest.fail("assemble trained"))
    assert main([*argv, "--assemble-only"]) == 0
    rebuilt = json.loads((root / "rep" / "digits.json").read_text())
    assert _stable(rebuilt) == _stable(first)
    assert rebuilt["config"]["assemble_only"] is True


def test_cells_need_the_teacher_first_and_then_train_only_their_own(tmp_path) -> None:
    cfg = dict(teacher_depth=10, teacher_width=1, teacher_epochs=1, epochs=1, seeds=1,
               methods=("kd",), validation_size=200, subset=300, progress=False,
               out=str(tmp_path / "w"), students=("mlp800",))
    with pytest.raises(ValueError, match="--cells teacher"):
        league.run(league.config_from("digits", cells="mlp800:kd:0", **cfg), log=lambda s: None)
    r = league.run(league.config_from("digits", cells="teacher", **cfg), log=lambda s: None)
    assert r["cells_trained"] == []
    assert list((tmp_path / "w" / "cache").iterdir())       # the cached logits, built once
    r = league.run(league.config_from("digits", cells="*:plain:*", **cfg), log=lambda s: None)
    assert r["cells_trained"] == ["mlp800:plain:0"]
    done = league.run(league.config_from("digits", assemble_only=True, **cfg),
                      log=lambda s: None)
    assert done["missing_cells"] == ["mlp800:kd:0"]
    assert done["students"]["mlp800"]["methods"]["kd"]["accuracy_mean"] is None
    assert done["students"]["mlp800"]["plain"]["n_seeds"] == 1


def test_a_diverged_cell_is_recorded_the_others_go_on_and_a_rerun_clears_it(
        tmp_path, monkeypatch) -> None:
    cfg = dict(teacher_depth=10, teacher_width=1, teacher_epochs=1, epochs=1, seeds=1,
               methods=("kd",), validation_size=200, subset=300, progress=False,
               out=str(tmp_path / "w"), students=("mlp800",))
    league.run(league.config_from("digits", cells="teacher", **cfg), log=lambda s: None)
    train_cell = league._train_cell

    def kd_diverges(plan, cell, outputs, log):
        if cell[1] == "kd":
            raise trainer.TrainingDiverged("loss term 'soft' became nan by epoch 1, step 3")
        train_cell(plan, cell, outputs, log)

    monkeypatch.setattr(league, "_train_cell", kd_diverges)
    r = league.run(league.config_from("digits", cells="*:*:*", **cfg), log=lambda s: None)
    assert r["cells_trained"] == ["mlp800:plain:0"]
    assert r["cells_diverged"] == {"mlp800:kd:0": "loss term 'soft' became nan by epoch 1, "
                                                   "step 3"}
    done = league.run(league.config_from("digits", assemble_only=True, **cfg),
                      log=lambda s: None)
    assert done["missing_cells"] == [] and list(done["diverged_cells"]) == ["mlp800:kd:0"]
    md = league.render_markdown(done, "x.png")
    assert "Diverged, left out of the means: mlp800:kd:0" in md and "| 0 + 1 diverged |" in md
    monkeypatch.setattr(league, "_train_cell", train_cell)
    league.run(league.config_from("digits", cells="*:kd:*", **cfg), log=lambda s: None)
    done = league.run(league.config_from("digits", assemble_only=True, **cfg),
                      log=lambda s: None)
    assert done["diverged_cells"] == {} and done["students"]["mlp800"]["methods"]["kd"][
        "n_seeds"] == 1


def test_dkd_rows_warm_up_over_the_papers_share_of_the_schedule() -> None:
    data = ArrayDataset(torch.zeros(1000, 1, 8, 8), torch.arange(1000) % 10, 10, name="d")
    plan = Plan(league.config_from("digits", epochs=6, batch_size=64, subset=None), data,
                data, data, "test", None, cuda=False)
    for name in ("dkd", "dkd_ls"):   # 6 epochs x 16 steps, a twelfth of them: 8
        assert plan.method("mlp800", name).warmup_steps == 8
    assert "warmup_steps" not in plan.method("mlp800", "kd").describe()


def test_cell_selection() -> None:
    cells = [(s, m, k) for k in (0, 1) for s in ("resnet8", "mlp800") for m in ("plain", "kd")]
    assert select_cells(cells, "") == cells and select_cells(cells, "teacher") == []
    shards = [select_cells(cells, f"{i}/3") for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(cells) and all(shards)
    assert select_cells(cells, "mlp800:*:1, resnet8:kd:0") == [
        ("resnet8", "kd", 0), ("mlp800", "plain", 1), ("mlp800", "kd", 1)]
    for bad in ("3/3", "a/b", "resnet8:kd"):
        with pytest.raises(ValueError):
            parse_cells(bad)


def test_stratified_subset_keeps_the_class_shares() -> None:
    y = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    data = ArrayDataset(torch.zeros(1000, 1, 2, 2), y, 3)
    sub = stratified_subset(data, 100, seed=3)
    assert torch.bincount(sub.y).tolist() == [60, 30, 10]
    again = stratified_subset(data, 100, seed=3)
    assert torch.equal(sub.y, again.y) and stratified_subset(data, 5000, 3) is data


def test_every_layer_pair_names_modules_of_both_models() -> None:
    data = ArrayDataset(torch.zeros(4, 1, 28, 28), torch.arange(4) % 2, 10)
    cfg = league.config_from("fashion-mnist")
    plan = Plan(cfg, data, data, data, "test", None, False)
    teacher = dict(build_model(plan.teacher_spec).named_modules())
    for student, pairs in LAYERS.items():
        names = dict(build_model(plan.specs[student]).named_modules())
        for method, (s, t) in pairs.items():
            for a in (s,) if isinstance(s, str) else s:
                assert a in names, (student, method, a)
            for b in (t,) if isinstance(t, str) else t:
                assert b in teacher, (student, method, b)


def test_the_epoch_is_chosen_on_validation_never_on_test(tmp_path) -> None:
    recipe = Plan(league.config_from("digits", epochs=4), *[ArrayDataset(
        torch.zeros(4, 1, 8, 8), torch.arange(4) % 2, 10)] * 3, "t", tmp_path,
        False).student_recipe(0)
    hist = [{"test_accuracy": t, "val_accuracy": v, "seconds": 2.0}
            for t, v in zip((0.1, 0.2, 0.3, 0.4), (0.5, 0.7, 0.7, 0.6))]
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 2, "model_state": {}, "config": recipe.config.to_dict(),
                "method": None, "epoch": 4, "history": hist}, path)
    row = cell_row(path, recipe, None)
    assert (row["chosen_epoch"], row["val_chosen_test_accuracy"]) == (2, 0.2)
    assert row["test_accuracy"] == 0.4 and row["seconds_per_epoch"] == 2.0
    torch.save({"format": 2, "model_state": {}, "config": recipe.config.to_dict(),
                "epoch": 3, "history": hist[:3]}, path)
    assert cell_row(path, recipe, None) is None                 # unfinished
    other = {**recipe.config.to_dict(), "lr": 0.5}
    torch.save({"format": 2, "model_state": {}, "config": other, "epoch": 4,
                "history": hist}, path)
    with pytest.raises(ValueError, match="other settings"):
        cell_row(path, recipe, None)


def test_paired_interval_against_a_hand_computation(monkeypatch) -> None:
    a, b = [0.90, 0.92, 0.91], [0.89, 0.90, 0.905]
    # d = 0.01, 0.02, 0.005: mean 0.011667, sd 0.0076376, se 0.0044096, t(0.975, 2) 4.302653
    half = 4.302653 * 0.0076376 / math.sqrt(3)
    got = paired_interval(a, b)
    assert got["n"] == 3 and got["mean"] == pytest.approx(0.0116667, abs=1e-6)
    assert (got["low"], got["high"]) == (pytest.approx(0.0116667 - half, abs=1e-6),
                                         pytest.approx(0.0116667 + half, abs=1e-6))
    monkeypatch.setitem(sys.modules, "scipy.stats", None)    # the table, without scipy
    assert t_quantile(2) == 4.303 and t_quantile(100) == 1.960
    assert paired_interval(a, b)["high"] == pytest.approx(0.0116667 + half, abs=1e-4)
    one = paired_interval([0.5], [0.4])
    assert one["mean"] == pytest.approx(0.1) and one["low"] is None
    with pytest.raises(ValueError):
        paired_interval([1.0], [1.0, 2.0])
