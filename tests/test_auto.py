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
    plan_shares,
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
    # 5 temperatures at hard weight 0.1 on the short share; the best 2 on the long share; the
    # other 2 hard weights of the winner on the long share
    assert [r[0] for r in runs] == (["temperature"] * 5 + ["temperature, longer"] * 2
                                    + ["hard weight"] * 2 + ["final"])
    short, long = {r[1:] for r in runs if r[0] == "temperature"}, {
        r[1:] for r in runs if r[0] in ("temperature, longer", "hard weight")}
    assert len(short) == len(long) == 1
    (n_short, e_short), (n_long, e_long) = short.pop(), long.pop()
    assert n_short * e_short < n_long * e_long <= 3 * n_short * e_short
    search = sum(n * e for ph, n, e in runs if ph != "final")
    assert search == res.search_cost <= 3.0 * CFG.epochs * len(problem[0])
    assert runs[-1] == ("final", 120, CFG.epochs)  # the final run: all training data
    rec = res.record()
    assert rec["search_cost_over_one_run"] <= 3.0
    assert rec["total_cost_over_one_run"] == pytest.approx(rec["search_cost_over_one_run"] + 1)
    first, longer, third = rec["stages"]
    assert [(r["temperature"], r["hard_weight"]) for r in sorted(
        first["candidates"], key=lambda r: r["grid_position"])] == [
        (t, 0.1) for t in (1.0, 2.0, 4.0, 8.0, 20.0)]
    kept = [r["grid_position"] for r in first["candidates"] if r["kept"]]
    assert kept == [r["grid_position"] for r in first["candidates"][:2]]
    assert sorted(r["grid_position"] for r in longer["candidates"]) == sorted(kept)
    winner = longer["candidates"][0]["temperature"]
    assert sorted((r["temperature"], r["hard_weight"]) for r in third["candidates"]) == [
        (winner, h) for h in (0.0, 0.1, 0.5)]
    reused = [r for r in third["candidates"] if r["trained_in"] == "temperature, longer"]
    assert third["trained"] == 2 and [r["hard_weight"] for r in reused] == [0.1]
    by_pos = {r["grid_position"]: r for r in longer["candidates"]}
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
        short, long = plan_shares(grid, int(0.8 * n), epochs, n, budget)
        # 5 short runs, then 2 + 2 long ones
        assert 5 * short.cost + 4 * long.cost <= budget * epochs * n
    # digits (1,347 training images, 30 epochs): 17 units of 3 x 30 x 1,347 / 17 = 7,132
    # example-epochs: the short runs 6 epochs of the 1,078 fit images (the first rung of the
    # successive halving this replaced: 2), the long ones (3 units) 19
    short, long = plan_shares(grid, 1078, 30, 1347, 3.0)
    assert (short.epochs, long.epochs) == (6, 19) and short.examples == long.examples == 1078
    # a budget of 20 runs would exceed a full run on the fit split: capped there
    assert plan_shares(grid, 80, 5, 100, 20.0)[1].cost == 5 * 80
    with pytest.raises(ValueError, match="budget"):
        plan_shares(grid, 8, 1, 10, 0.01)
    # a grid that is not a product: one temperature with two settings, two with one
    odd = [Candidate(1, 0.5), Candidate(1, 0), Candidate(4, 0.3), Candidate(8, 0.1)]
    first, second = stage_positions(odd)
    assert first == [1, 2, 3] and second([1.0, 8.0]) == [0, 1, 3]
    # 3 temperatures keep 1: 3 short runs, then T 1's two settings long: 3 + 3 x 2 units of
    # 3 x 10 x 125 / 9 example-epochs; the long share's 1,250 is capped at a full run on the
    # fit split (10 epochs of 100), the short one is a third of that
    short, long = plan_shares(odd, 100, 10, 125, 3.0)
    assert (short, long) == (auto_lib.Share(3, 100), auto_lib.Share(10, 100))
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
    assert [len(r["candidates"]) for r in rec["stages"]] == [5, 2, 3]
    assert (tmp_path / "s" / "checkpoint.pt").is_file()
    code, _, err = run_cli(["distill", "--teacher", str(tmp_path / "t" / "checkpoint.pt"),
                            "--auto", "-T", "4", "--out", str(tmp_path / "x")], capsys)
    assert code != 0 and "--temperature" in err


def test_one_standard_error_rule_by_hand():
    # 100 validation examples, best 0.90: one SE = sqrt(0.9 x 0.1 / 100) = 0.03, so 0.88 is
    # within it and, earlier in the grid, goes first; 0.85 and 0.80 follow by accuracy
    rows = [{"grid_position": g, "val_accuracy": a, "val_nll": 0.3}
            for g, a in ((3, 0.90), (0, 0.88), (2, 0.80), (1, 0.85))]
    ranked = auto_lib.rank_rows(rows, 100)
    assert [r["grid_position"] for r in ranked] == [0, 3, 1, 2]
    assert [r["within_one_se"] for r in ranked] == [True, True, False, False]
    # a perfect best (se 0) still tolerates one example: 1/n
    rows = [{"grid_position": 1, "val_accuracy": 1.0, "val_nll": 0.1},
            {"grid_position": 0, "val_accuracy": 0.99, "val_nll": 0.2}]
    assert [r["grid_position"] for r in auto_lib.rank_rows(rows, 100)] == [0, 1]
