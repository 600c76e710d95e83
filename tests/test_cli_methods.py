"""`kdistill distill --method NAME --method-arg key=value`: every registered method from the
command line, and one clean line (exit 2) for each kind of bad method input, before any work."""

import json

import pytest
from test_cli import SMALL, assert_usage_error, run_cli

from kdistill.cli import main
from kdistill.cli.distill import parse_method_args


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    assert main(["train", "--dataset", "digits", "--out", str(out), *SMALL]) == 0
    return str(out / "checkpoint.pt")


def test_method_args_parse_as_json_or_strings():
    assert parse_method_args(["beta=8", "standardize=true", "student_layer=net.2",
                              "temperature=2.5"]) == {
        "beta": 8, "standardize": True, "student_layer": "net.2", "temperature": 2.5}


@pytest.mark.parametrize("method,args,term", [
    ("dkd", ["--method-arg", "beta=2", "-T", "4"], "train_nckd"),
    ("fitnets", ["--method-arg", "student_layer=hidden_layers.1",
                 "--method-arg", "teacher_layer=hidden_layers.1"], "train_hint"),
    ("kd", ["--method-arg", "standardize=true", "-T", "2"], "train_soft"),
])
def test_every_method_runs_from_the_cli(teacher, tmp_path, capsys, method, args, term):
    out = tmp_path / method
    code, _, err = run_cli(["distill", "--teacher", teacher, "--dataset", "digits", "--out",
                            str(out), "--method", method, *args, *SMALL], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert term in metrics["final"] and metrics["final"]["test_accuracy"] > 0.7


@pytest.mark.parametrize("args,words", [
    (["--method", "nope"], ["unknown method 'nope'", "dkd"]),
    (["--method", "dkd", "--method-arg", "beta"], ["KEY=VALUE"]),
    (["--method", "dkd", "--method-arg", "gamma=1"], ["no parameter 'gamma'"]),
    (["--method", "dkd", "--method-arg", "beta=-1"], ["beta must be"]),
    (["--method", "fitnets"], ["needs student_layer, teacher_layer"]),
    (["--method", "fitnets", "--method-arg", "student_layer=hidden.1", "--method-arg",
      "teacher_layer=hidden_layers.1"], ["no module named 'hidden.1'", "hidden_layers.1"]),
    (["--method", "fitnets", "-T", "3", "--method-arg", "student_layer=head",
      "--method-arg", "teacher_layer=head"], ["--temperature does not apply"]),
    (["--method", "ce"], ["kdistill train"]),
])
def test_bad_method_input_is_one_line(teacher, tmp_path, capsys, args, words):
    out = tmp_path / "bad"
    code, _, err = run_cli(["distill", "--teacher", teacher, "--dataset", "digits", "--out",
                            str(out), *args, *SMALL], capsys)
    assert_usage_error(code, err, *words)
    assert not (out / "checkpoint.pt").exists()


def test_cli_trains_and_distils_resnets(tmp_path, capsys):
    tiny = ["--dataset", "digits", "--epochs", "1", "--batch-size", "64", "--no-progress"]
    code, _, err = run_cli(["train", "--model", "resnet", "--depth", "8", "--width", "4",
                            "--out", str(tmp_path / "t"), *tiny], capsys)
    assert code == 0, err
    spec = json.loads((tmp_path / "t" / "metrics.json").read_text())["model_spec"]
    assert spec["name"] == "resnet" and spec["depth"] == 8 and spec["in_channels"] == 1
    code, _, err = run_cli(["distill", "--teacher", str(tmp_path / "t" / "checkpoint.pt"),
                            "--model", "wrn", "--depth", "10", "--width", "1",
                            "--method", "fitnets", "--method-arg", "student_layer=stage2",
                            "--method-arg", "teacher_layer=stage2",
                            "--out", str(tmp_path / "s"), *tiny], capsys)
    assert code == 0, err
    code, _, err = run_cli(["train", "--model", "resnet", "--depth", "9",
                            "--out", str(tmp_path / "bad"), *tiny], capsys)
    assert_usage_error(code, err, "6n + 2")
