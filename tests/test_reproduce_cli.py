"""`kdistill reproduce NAME` flags generated from the experiments' config dataclasses, and
config_from setting a field to None."""

from __future__ import annotations

import argparse
import dataclasses
import typing

import pytest

from kdistill.cli import build_parser, main
from kdistill.cli.reproduce import CUSTOM, field_argument, given_settings
from kdistill.experiments import COMMON_HELP, EXPERIMENTS, load, setting
from kdistill.experiments import specialists as se


def parse(*argv: str):
    parser, _ = build_parser()
    return parser.parse_args(["reproduce", *argv])


def test_every_generated_experiment_builds_a_flag_with_help_for_each_field() -> None:
    for name, exp in EXPERIMENTS.items():
        if name in CUSTOM:
            continue
        cls = getattr(load(name), exp.config)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            names, kwargs = field_argument(f, hints[f.name])
            assert names[0] == "--" + f.name.replace("_", "-")
            assert f.metadata.get("help") or f.name in COMMON_HELP, (name, f.name)
            assert kwargs["default"] is argparse.SUPPRESS


def test_flags_left_out_are_not_passed_and_given_ones_are_typed() -> None:
    a = parse("ensemble", "--members", "3", "--temperatures", "2", "4.5", "--no-self-distill")
    cls = load("ensemble").EnsembleConfig
    assert given_settings(cls, a) == {"members": 3, "temperatures": (2.0, 4.5),
                                      "self_distill": False}
    a = parse("omitted-class", "-T", "4", "--keep-only")
    assert given_settings(load("omitted-class").OmittedClassConfig, a) == {
        "temperature": 4.0, "keep_only": ()}


def test_specialists_subset_size_zero_means_the_disjoint_partition() -> None:
    a = parse("specialists", "--subset-size", "0", "--seeds", "0", "1")
    given = given_settings(se.SpecialistsConfig, a)
    assert given == {"subset_size": None, "seeds": (0, 1)}
    assert se.config_from("letter", **given).subset_size is None


def test_config_from_sets_a_field_to_none_over_a_data_set_default() -> None:
    assert se.config_from("letter").subset_size == 5  # letter's default
    assert se.config_from("letter", subset_size=None).subset_size is None
    hm = load("hinton-mnist")
    assert hm.config_from("digits", report_dir="x").report_dir == "x"
    assert hm.config_from("digits").batch_size == 64  # unset keeps the data set's default


def test_bad_values_are_one_line_exit_2(capsys) -> None:
    code = main(["reproduce", "ensemble", "--members", "two"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--members" in err and "invalid int" in err and "\n" not in err
    code = main(["reproduce", "hinton-mnist", "--teacher-recipe", "magic"])
    assert code == 2 and "invalid choice" in capsys.readouterr().err


def test_a_field_without_a_command_line_form_is_refused() -> None:
    @dataclasses.dataclass
    class Odd:
        table: dict = setting(None, "a mapping")

    with pytest.raises(TypeError, match="table"):
        field_argument(dataclasses.fields(Odd)[0], dict)


def test_log_parameter_still_receives_the_messages(tmp_path) -> None:
    from kdistill.experiments.model_compression import _load_result

    path = tmp_path / "result.json"
    path.write_text("{not json")
    seen: list[str] = []
    assert _load_result(path, "key", seen.append) is None
    assert seen and "unreadable" in seen[0]
