"""auto_distill: the search never sees the test set, stays inside its budget, is deterministic,
resumes without retraining; and `kdistill distill --auto` end to end on digits."""

import json

import pytest
import torch
from test_cli import run_cli

from kdistill.cli import main
from kdistill.distill import auto as auto_lib
from kdistill.distill import trainer as trainer_lib
from kdistill.distill.auto import (
    DEFAULT_GRID,
    Candidate,
    auto_distill,
    plan_share,
    stage_positions,
    stratified_split,
)
from kdistill.distill.data import ArrayDataset
from kdistill.distill.models import MLP
from kdistill.distill.trainer import TrainConfig

CFG = TrainConfig(epochs=3, batch_size=32, optimizer="adam", lr=5e-3, device="cpu",
                  progress=False)


def _problem(n: int, seed: int, name: str) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 3, generator=torch.Generator().manual_seed(99))
    x = torch.randn(n, 8, generator=g)
    return ArrayDataset(x, (x @ w).argmax(1), 3, ["a", "b", "c"], name)


@pytest.fixture(scope="module")
def problem():
    train, test = _problem(120, 0, "toy-train"), _problem(60, 1, "toy-test")
    w = torch.randn(8, 3, generator=torch.Generator().manual_seed(99))
    return train, test, 2.0 * (train.x @ w)  # a teacher that knows the rule


def _factory():
    return MLP(8, 3, (16,))


def _run(problem, out, **kw):
    train, test, logits = problem
    return auto_distill(_factory, train, CFG, teacher_logits=logits, seed=0,
                        eval_sets={"test": test}, out_dir=out, log=lambda s: None, **kw)


def _spy(monkeypatch):
    """Record every training run (phase, examples, epochs) and every evaluation (phase, set)."""
    runs, evals, phase = [], [], ["none"]
    real_train, real_eval = auto_lib.train, trainer_lib.evaluate

    def train(model, data, config, **kw):
        phase[0] = kw["extra"]["auto"]
        runs.append((phase[0], len(data), config.epochs))
        return real_train(model, data, config, **kw)

    def evaluate(model, data, *a, **kw):
        evals.append((phase[0], data.name))
        return real_eval(model, data, *a, **kw)

    monkeypatch.setattr(auto_lib, "train", train)
    monkeypatch.setattr(auto_lib, "evaluate", evaluate)
    monkeypatch.setattr(trainer_lib, "evaluate", evaluate)
    return runs, evals


def test_search_never_touches_the_test_set_and_keeps_its_budget(problem, tmp_path,
                                                                 monkeypatch):
    runs, evals = _spy(monkeypatch)
    res = _run(problem, tmp_path / "a")
    assert {name for ph, name in evals if ph != "final"} == {"auto-val"}
    assert {name for ph, name in evals if ph == "final"} == {"toy-test"}
    # 5 temperatures at hard weight 0.1, then the other 2 hard weights at the 2 best temperatures
    assert [r[0] for r in runs] == ["temperature"] * 5 + ["hard weight"] * 4 + ["final"]
    assert len({(n, e) for ph, n, e in runs if ph != "final"}) == 1  # one share for all
    search = sum(n * e for ph, n, e in runs if ph != "final")
    assert search == res.search_cost <= 3.0 * CFG.epochs * len(problem[0])
    assert runs[-1] == ("final", 120, CFG.epochs)  # the final run: all training data
    rec = res.record()
    assert rec["search_cost_over_one_run"] <= 3.0
    assert rec["total_cost_over_one_run"] == pytest.approx(rec["search_cost_over_one_run"] + 1)
    first, second = rec["stages"]
    assert [(r["temperature"], r["hard_weight"]) for r in sorted(
        first["candidates"], key=lambda r: r["grid_position"])] == [
        (t, 0.1) for t in (1.0, 2.0, 4.0, 8.0, 20.0)]
    kept = {r["temperature"] for r in first["candidates"] if r["kept"]}
    assert len(kept) == 2 and kept == {r["temperature"] for r in first["candidates"][:2]}
    assert sorted((r["temperature"], r["hard_weight"]) for r in second["candidates"]) == sorted(
        (t, h) for t in kept for h in (0.0, 0.1, 0.5))
    reused = [r for r in second["candidates"] if r["trained_in"] == "temperature"]
    assert second["trained"] == 4 and {r["hard_weight"] for r in reused} == {0.1}
    by_pos = {r["grid_position"]: r for r in first["candidates"]}
    assert all(r["val_accuracy"] == by_pos[r["grid_position"]]["val_accuracy"] for r in reused)
    assert rec["choice"] == {"temperature": res.choice.temperature,
                             "hard_weight": res.choice.hard_weight, "soft_weight": 1.0}
    top = rec["stages"][-1]["candidates"][0]
    assert (top["temperature"], top["hard_weight"]) == (res.choice.temperature,
                                                       res.choice.hard_weight)
    assert json.loads((tmp_path / "a" / "auto.json").read_text())["choice"] == rec["choice"]
    assert "test_accuracy" in res.final.final and "val_accuracy" not in res.final.final


def test_search_is_deterministic_and_resumes_without_retraining(problem, tmp_path,
                                                               monkeypatch):
    a, b = _run(problem, tmp_path / "a"), _run(problem, tmp_path / "b")
    assert a.stages == b.stages and a.choice == b.choice
    assert a.final.final["test_accuracy"] == b.final.final["test_accuracy"]
    epochs = []
    real = trainer_lib.train_epoch
    monkeypatch.setattr(trainer_lib, "train_epoch", lambda *x, **k: epochs.append(1) or real(
        *x, **k))
    again = _run(problem, tmp_path / "a")
    assert epochs == [] and again.stages == a.stages and again.search_cost == a.search_cost
    assert again.final.final["test_accuracy"] == a.final.final["test_accuracy"]


def test_budget_plan_and_stratified_split():
    grid = [Candidate(*g) for g in DEFAULT_GRID]
    for budget, epochs, n in ((3.0, 30, 1000), (1.0, 2, 120), (3.0, 10, 10_000)):
        share = plan_share(grid, int(0.8 * n), epochs, n, budget)
        assert 9 * share.cost <= budget * epochs * n  # 5 + 2 x 2 runs
    # digits (1,347 training images, 30 epochs): each run 12 epochs of the 1,078 fit images,
    # against 2 epochs in the first rung of the successive halving this replaced
    assert plan_share(grid, 1078, 30, 1347, 3.0).epochs == 12
    # a budget of 20 runs would exceed a full run on the fit split: capped there
    assert plan_share(grid, 80, 5, 100, 20.0).cost == 5 * 80
    with pytest.raises(ValueError, match="budget"):
        plan_share(grid, 8, 1, 10, 0.01)
    # a grid that is not a product: one temperature with two settings, two with one
    odd = [Candidate(1, 0.5), Candidate(1, 0), Candidate(4, 0.3), Candidate(8, 0.1)]
    first, second = stage_positions(odd)
    assert first == [1, 2, 3] and second([1.0, 8.0]) == [0, 1, 3]
    # 3 + 1 runs (T 1 adds one setting): 937.5 example-epochs each = 9 whole epochs of 100
    assert plan_share(odd, 100, 10, 125, 3.0) == auto_lib.Share(9, 100)
    data = _problem(300, 3, "s")
    fit, val = stratified_split(data, 60, 0)
    assert len(set(fit.tolist()) | set(val.tolist())) == 300 and len(val) == 60
    share = torch.bincount(data.y[val], minlength=3) / 60
    assert torch.allclose(share, torch.bincount(data.y, minlength=3) / 300, atol=0.02)
    assert torch.equal(stratified_split(data, 60, 0)[1], val)


def test_cli_auto_end_to_end_on_digits(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--out", str(tmp_path / "t"),
                 "--hidden", "32", "--epochs", "2", "--batch-size", "64", "--lr", "0.005",
                 "--no-progress"]) == 0
    code, out, err = run_cli(["distill", "--teacher", str(tmp_path / "t" / "checkpoint.pt"),
                              "--dataset", "digits", "--hidden", "16", "--epochs", "1",
                              "--batch-size", "128", "--auto", "--no-progress",
                              "--out", str(tmp_path / "s")], capsys)
    assert code == 0, err
    assert "auto: chose temperature" in out
    rec = json.loads((tmp_path / "s" / "metrics.json").read_text())["auto"]
    assert rec["search_cost_over_one_run"] <= 3.0
    assert [len(r["candidates"]) for r in rec["stages"]] == [5, 6]
    assert (tmp_path / "s" / "checkpoint.pt").is_file()
    code, _, err = run_cli(["distill", "--teacher", str(tmp_path / "t" / "checkpoint.pt"),
                            "--auto", "-T", "4", "--out", str(tmp_path / "x")], capsys)
    assert code != 0 and "--temperature" in err
