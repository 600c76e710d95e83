"""`reproduce ensemble`: members, ensemble metrics, T chosen on validation, self-distillation."""

import json

import pytest
import torch

from kdistill.cli import main
from kdistill.distill.data import load_dataset
from kdistill.distill.metrics import classification_metrics
from kdistill.distill.models import build_model
from kdistill.distill.teachers import combine_members
from kdistill.experiments import ensemble


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("ens")
    cfg = ensemble.config_from("digits", out=str(out / "work"), report_dir=str(out / "rep"),
                               members=3, hidden=(16,), epochs=3, student_epochs=4,
                               temperatures=(1.0, 4.0),
                               progress=False)
    return ensemble.run(cfg, log=lambda s: None), out, cfg


def _member(out, i, spec):
    ckpt = torch.load(out / "work" / "runs" / f"member-{i}" / "checkpoint.pt",
                      weights_only=False)
    model = build_model(spec)
    model.load_state_dict(ckpt["model_state"])
    return model.eval()


def test_ensemble_accuracy_is_the_mean_of_member_probabilities(tiny):
    r, out, _ = tiny
    test = load_dataset("digits").test
    members = [_member(out, i, r["model"]) for i in range(3)]
    with torch.no_grad():
        probs = torch.stack([m(test.x).softmax(1) for m in members]).mean(0)
    assert r["ensemble_accuracy"] == pytest.approx(float((probs.argmax(1) == test.y).float()
                                                         .mean()))
    logits = combine_members([m(test.x).detach() for m in members], 1.0)
    assert r["ensemble_nll"] == pytest.approx(classification_metrics(logits, test.y)["nll"],
                                              rel=1e-5)
    assert r["baseline_accuracy"] == r["member_accuracies"][0]


def test_headline_temperature_is_chosen_on_validation(tiny):
    r, _, _ = tiny
    by_t = r["distilled_by_temperature"]
    assert set(by_t) == {"1", "4"}
    best = max(by_t, key=lambda t: (by_t[t]["val_accuracy"], -float(t)))
    assert r["temperature"] == float(best)
    assert r["distilled_accuracy"] == by_t[best]["test_accuracy"]
    gain = r["ensemble_accuracy"] - r["baseline_accuracy"]
    if gain > 0:
        assert r["gain_recovered"] == pytest.approx(
            (r["distilled_accuracy"] - r["baseline_accuracy"]) / gain)
    assert r["self_distilled_accuracy"] is not None
    assert r["control_baseline_accuracy"] == r["rows"]["control_baseline"]["test_accuracy"]
    assert len(r["rows"]["control_baseline"]["test_accuracy_curve"]) == 4
    assert r["transfer_size"] == 3 * r["train_size"]  # the images and 2 jittered copies
    mean = sum(r["member_accuracies"]) / 3
    if r["ensemble_accuracy"] > mean:
        assert r["gain_recovered_vs_member_mean"] == pytest.approx(
            (r["distilled_accuracy"] - mean) / (r["ensemble_accuracy"] - mean))
    assert r["ensemble_ms_per_1000"] > 0 and r["distilled_ms_per_1000"] > 0
    assert r["train_size"] == 1347 - 270 and r["validation_size"] == 270


def test_report_files_and_resume(tiny):
    r, out, cfg = tiny
    data = json.loads((out / "rep" / "digits.json").read_text())
    for key in ("baseline_accuracy", "ensemble_accuracy", "distilled_accuracy",
                "self_distilled_accuracy", "ensemble_ms_per_1000", "distilled_ms_per_1000"):
        assert data[key] == r[key]
    assert "| 3x ensemble" in (out / "rep" / "digits.md").read_text()
    assert (out / "rep" / "digits.png").read_bytes()[:4] == b"\x89PNG"
    logs = []
    again = ensemble.run(cfg, log=logs.append)
    assert again["distilled_by_temperature"] == r["distilled_by_temperature"]
    # 3 members, 2 distilled, 1 self-distilled, 1 hard-label control on the transfer set
    assert sum("resumed from" in line for line in logs) == 3 + 2 + 1 + 1
    assert not any("| loss" in line for line in logs)


@pytest.mark.parametrize("flags, words", [
    (["--members", "1"], "at least 2 members"),
    (["--temperatures", "0"], "temperature"),
    (["--combine", "median"], "invalid choice"),
    (["--hard-weight", "-1"], "hard_weight"),
])
def test_cli_rejects_bad_settings(tmp_path, capsys, flags, words):
    out = tmp_path / "never"
    code = main(["reproduce", "ensemble", "--dataset", "digits", "--out", str(out), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and "\n" not in err
    assert not out.exists()


def test_seeds_repeat_the_protocol_and_pair_by_seed(tmp_path):
    """Two seeds: each repeats members and students in its own folder; the gain recovered over
    seeds is the mean of the per-seed gains, and every difference is paired by seed."""
    import numpy as np

    cfg = ensemble.config_from("digits", out=str(tmp_path), members=2, hidden=(8,), epochs=2,
                               student_epochs=3, temperatures=(2.0,), transfer_copies=0,
                               seeds=(0, 1), progress=False)
    r = ensemble.run(cfg, log=lambda s: None)
    assert r["seeds"] == [0, 1]
    assert (tmp_path / "seed-1" / "runs" / "member-1" / "checkpoint.pt").exists()
    assert (tmp_path / "runs" / "baseline-e3" / "checkpoint.pt").exists()  # the control
    per = r["gain_recovered_per_seed"]
    if None not in per:
        assert r["gain_recovered_mean"] == pytest.approx(np.mean(per))
    d = r["distilled_minus"]["control_baseline"]
    assert d["mean"] == pytest.approx(r["distilled_accuracy_mean"]
                                      - r["control_baseline_accuracy_mean"])
    assert len(d["per_seed"]) == 2
    assert "Over 2 seed(s)" in (tmp_path / "results.md").read_text()
