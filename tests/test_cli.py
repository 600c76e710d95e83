import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_data import make_idx_folder

from kdistill.cli import main
from kdistill.distill.models import MLP

SMALL = ["--hidden", "32", "32", "--epochs", "5", "--batch-size", "32", "--lr", "0.005",
         "--no-progress"]


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_usage_error(code, err, *words):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    assert main(["train", "--dataset", "digits", "--out", str(out), *SMALL]) == 0
    return out / "checkpoint.pt"


def test_train_distill_evaluate_end_to_end_on_digits(digits_teacher, tmp_path, capsys):
    out = tmp_path / "student"
    code, stdout, _ = run_cli(["distill", "--teacher", str(digits_teacher), "--dataset", "digits",
                               "--out", str(out), "-T", "4", *SMALL], capsys)
    assert code == 0 and "teacher logits computed" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["test_accuracy"] > 0.8 and metrics["test_size"] == 450
    # same command again: the run is complete and the cache is reused, not recomputed
    code, stdout, _ = run_cli(["distill", "--teacher", str(digits_teacher), "--dataset",
                               "digits", "--out", str(out), "-T", "4", *SMALL], capsys)
    assert code == 0 and "reused" in stdout
    code, stdout, _ = run_cli(["evaluate", str(out / "checkpoint.pt"), "--dataset", "digits"],
                              capsys)
    assert code == 0
    assert json.loads(stdout)["errors"] == metrics["final"]["test_errors"]
    # with jitter the teacher runs online instead of from the cache
    code, stdout, _ = run_cli(["distill", "--teacher", str(digits_teacher), "--dataset",
                               "digits", "--out", str(tmp_path / "online"), "--jitter", "1",
                               *SMALL], capsys)
    assert code == 0 and "teacher logits" not in stdout


@pytest.mark.parametrize("flags, words", [
    (["-T", "0"], ["temperature", "> 0"]),
    (["-T", "-3"], ["temperature"]),
    (["--soft-weight", "-1"], ["soft_weight", ">= 0"]),
    (["--hard-weight", "nan"], ["hard_weight"]),
    (["--soft-weight", "0", "--hard-weight", "0"], ["both 0"]),
    (["--epochs", "0"], ["epochs"]),
    (["--bogus-flag"], ["unrecognized arguments"]),
])
def test_bad_flags_exit_2_with_one_line(digits_teacher, tmp_path, capsys, flags, words):
    out = tmp_path / "never"
    code, _, err = run_cli(["distill", "--teacher", str(digits_teacher), "--dataset", "digits",
                            "--out", str(out), *SMALL, *flags], capsys)
    assert_usage_error(code, err, *words)
    assert not out.exists()  # nothing half-written


def test_class_count_mismatch(digits_teacher, tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "three.npz", x_train=rng.random((30, 8, 8)), y_train=np.arange(30) % 3,
             x_test=rng.random((6, 8, 8)), y_test=np.arange(6) % 3)
    code, _, err = run_cli(["distill", "--teacher", str(digits_teacher), "--dataset",
                            str(tmp_path / "three.npz"), "--out", str(tmp_path / "s"), *SMALL],
                           capsys)
    assert_usage_error(code, err, "class-count mismatch", "10", "3")
    assert not (tmp_path / "s").exists()


def test_labels_out_of_range_and_missing_or_corrupt_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDISTILL_DATA", str(tmp_path / "empty"))
    bad = make_idx_folder(tmp_path / "bad", label_max=11)
    code, _, err = run_cli(["train", "--dataset", "mnist", "--data-dir", str(bad),
                            "--out", str(tmp_path / "o"), *SMALL], capsys)
    assert_usage_error(code, err, "labels must lie in [0, 9]")
    code, _, err = run_cli(["train", "--dataset", "mnist", "--data-dir",
                            str(tmp_path / "nope"), "--out", str(tmp_path / "o"), *SMALL], capsys)
    assert_usage_error(code, err, "mnist", "not found")
    good = make_idx_folder(tmp_path / "good")
    (good / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    code, _, err = run_cli(["train", "--dataset", "mnist", "--data-dir", str(good),
                            "--out", str(tmp_path / "o"), *SMALL], capsys)
    assert_usage_error(code, err, "t10k-labels", "cannot read")
    assert not (tmp_path / "o").exists()


def test_corrupt_checkpoint_and_nan_teacher(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(500))
    code, _, err = run_cli(["evaluate", str(junk), "--dataset", "digits"], capsys)
    assert_usage_error(code, err, "corrupt")
    code, _, err = run_cli(["distill", "--teacher", str(junk), "--dataset", "digits",
                            "--out", str(tmp_path / "s"), *SMALL], capsys)
    assert_usage_error(code, err, "corrupt")
    # a teacher whose weights are NaN produces NaN logits
    spec = {"name": "mlp", "in_features": 64, "num_classes": 10, "hidden": [8]}
    model = MLP(64, 10, [8])
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    torch.save({"format": 1, "model_spec": spec, "model_state": model.state_dict()},
               tmp_path / "nan.pt")
    code, _, err = run_cli(["distill", "--teacher", str(tmp_path / "nan.pt"), "--dataset",
                            "digits", "--out", str(tmp_path / "s2"), *SMALL], capsys)
    assert_usage_error(code, err, "NaN")
    assert not (tmp_path / "s2" / "checkpoint.pt").exists()


def test_console_script_has_no_traceback_and_help_documents_flags(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kdistill", "distill", "--teacher",
                           str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"kdistill: error: checkpoint not found: {tmp_path}/missing.pt"
    folder = subprocess.run([sys.executable, "-m", "kdistill", "predict", str(tmp_path),
                             str(tmp_path / "rows.csv"), "--out", str(tmp_path / "p.csv")],
                            capture_output=True, text=True)
    assert folder.returncode == 2 and folder.stderr.strip() == (
        f"kdistill: error: {tmp_path} is a folder, not a checkpoint: name the file in it (a "
        "run's checkpoint.pt, compress's mimic.pt)")
    help_text = subprocess.run([sys.executable, "-m", "kdistill", "distill", "--help"],
                               capture_output=True, text=True).stdout
    for flag in ("--temperature", "--soft-weight", "--hard-weight", "--method", "--cache-dir",
                 "--jitter", "--grad-clip", "--no-resume", "--max-norm"):
        assert flag in help_text


def test_distill_from_an_ensemble_of_checkpoints(digits_teacher, tmp_path, capsys):
    second = tmp_path / "t2"
    assert main(["train", "--dataset", "digits", "--out", str(second), "--seed", "1",
                 *SMALL]) == 0
    code, stdout, _ = run_cli(["distill", "--teacher", str(digits_teacher),
                               str(second / "checkpoint.pt"), "--dataset", "digits", "--out",
                               str(tmp_path / "s"), "-T", "3", *SMALL], capsys)
    assert code == 0 and "teacher logits computed" in stdout
    # the cached soft targets are the members' mean probability at T (as logits * T)
    from kdistill.cli import _load_model
    from kdistill.distill.data import load_dataset
    from kdistill.distill.teachers import combine_members

    x = load_dataset("digits").train.x
    with torch.no_grad():
        members = [_load_model(p)[0](x) for p in (digits_teacher, second / "checkpoint.pt")]
    want = combine_members(members, 3.0, "arith_prob")
    cached = np.load(next((tmp_path / "s" / "teacher-cache").glob("*/*.npy")))
    assert np.allclose(torch.softmax(torch.from_numpy(np.array(cached)) / 3, 1).numpy(),
                       torch.softmax(want / 3, 1).numpy(), atol=1e-5)


def test_ensemble_members_with_different_class_counts_are_refused(digits_teacher, tmp_path,
                                                                  capsys):
    other = tmp_path / "other.pt"
    ckpt = torch.load(digits_teacher, weights_only=False)
    torch.manual_seed(0)
    model = MLP(64, 4, [32, 32])
    ckpt["model_spec"] = {**ckpt["model_spec"], "num_classes": 4}
    ckpt["model_state"] = model.state_dict()
    torch.save(ckpt, other)
    code, _, err = run_cli(["distill", "--teacher", str(digits_teacher), str(other),
                            "--dataset", "digits", "--out", str(tmp_path / "s"), *SMALL], capsys)
    assert_usage_error(code, err, "disagree on the number of classes")
    assert not (tmp_path / "s").exists()


def test_fix_bias_undoes_a_known_shift(digits_teacher, tmp_path, capsys):
    # A "student" that is the teacher with class 3's bias lowered by 5: matching the teacher's
    # mean prediction on the same inputs has exactly one answer, +5 on class 3.
    ckpt = torch.load(digits_teacher, weights_only=False)
    head = [k for k in ckpt["model_state"] if k.endswith("bias")][-1]
    ckpt["model_state"][head][3] -= 5.0
    crippled = tmp_path / "crippled.pt"
    torch.save(ckpt, crippled)
    fixed = tmp_path / "fixed.pt"
    code, stdout, _ = run_cli(["fix-bias", str(crippled), "--teacher", str(digits_teacher),
                               "--classes", "3", "--dataset", "digits", "--out", str(fixed)],
                              capsys)
    assert code == 0
    report = json.loads(stdout)
    assert report["offsets"][3] == pytest.approx(5.0, abs=1e-3)
    assert all(v == 0 for i, v in enumerate(report["offsets"]) if i != 3)
    original = torch.load(digits_teacher, weights_only=False)["model_state"][head]
    assert torch.allclose(torch.load(fixed, weights_only=False)["model_state"][head], original,
                          atol=1e-3)
    assert report["test_errors_after"] <= report["test_errors_before"]
    code, _, err = run_cli(["fix-bias", str(crippled), "--teacher", str(digits_teacher),
                            "--classes", "11", "--dataset", "digits", "--out",
                            str(tmp_path / "never.pt")], capsys)
    assert_usage_error(code, err, "does not exist")
    assert not (tmp_path / "never.pt").exists()


def test_records_name_the_cli_command_however_it_was_invoked(monkeypatch):
    """`python -c "...main()" reproduce text` once recorded `-c reproduce text`."""
    import argparse

    import kdistill.cli as cli
    from kdistill.reporting import command_line, provenance

    seen = []

    class Command:
        @staticmethod
        def run(args):
            seen.append((command_line(), provenance()["command"]))
            return 0

    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--out")
    monkeypatch.setattr(cli, "build_parser", lambda: (parser, {"fake": Command}))
    monkeypatch.setattr(sys, "argv", ["-c", "fake", "--out", "a b"])
    assert cli.main() == 0 and cli.main(["fake", "--out", "x"]) == 0
    assert seen == [("kdistill fake --out 'a b'",) * 2, ("kdistill fake --out x",) * 2]
    assert not command_line().startswith("kdistill fake")   # reset after the command
