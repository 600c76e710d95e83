"""The league's feature cells from the teacher's view cache: a 2-method (kd, fitnets), 1-seed
league on the 8x8 digits trains fitnets from cached teacher features to the very weights the
online teacher gives (K = 1, no augmentation, float32 storage), a second invocation reuses
every cache and run, the report says how each cell read the teacher, and fit_run refuses a
checkpoint made from other views."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from kdistill.cli import main
from kdistill.distill import methods, trainer, view_cache
from kdistill.distill.checkpoint import load_checkpoint
from kdistill.distill.data import load_dataset
from kdistill.distill.models import MLP
from kdistill.distill.trainer import TrainConfig
from kdistill.experiments import league
from kdistill.experiments.common import Recipe, fit_run, mlp_spec, split_validation
from kdistill.experiments.league_plan import Plan, method_for
from kdistill.experiments.league_teacher import (
    LABELS,
    LOGITS,
    ONLINE,
    VIEWS,
    source_for,
    trained_from,
)

SETTINGS = dict(teacher_depth=10, teacher_width=1, teacher_epochs=2, epochs=2, seeds=1,
                methods=("kd", "fitnets"), validation_size=200, subset=400, progress=False)
ARGV = ["reproduce", "league", "--dataset", "digits", "--teacher-depth", "10",
        "--teacher-width", "1", "--teacher-epochs", "2", "--epochs", "2", "--seeds", "1",
        "--methods", "kd", "fitnets", "--validation-size", "200", "--subset", "400",
        "--no-progress"]
QUIET = {"log": lambda s: None}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("league-views")
    argv = [*ARGV, "--out", str(root / "work"), "--report-dir", str(root / "rep")]
    assert main(argv) == 0
    return root, argv, json.loads((root / "rep" / "digits.json").read_text())


def _plan(out: Path, **overrides) -> Plan:
    cfg = league.config_from("digits", out=str(out), **{**SETTINGS, **overrides})
    splits = load_dataset("digits")
    fit, val = split_validation(splits.train, cfg.validation_size, cfg.seed + 12345)
    return Plan(cfg, fit, val, splits.test, splits.source, out, False)


def test_fitnets_from_the_view_cache_is_the_online_teacher_bit_for_bit(run, tmp_path) -> None:
    root, _, report = run
    plan = _plan(root / "work")
    teacher = league._train_teacher(plan, plan.cfg, QUIET["log"])     # resumed: finished
    for student in ("resnet8", "mlp800"):
        cell = (student, "fitnets", 0)
        ckpt = load_checkpoint(root / "work" / "runs" / plan.run_name(cell) / "checkpoint.pt")
        assert ckpt["identity"]["teacher_views"]                  # trained from the cache
        assert "extra.teacher" not in ckpt["identity"]
        online, _ = fit_run(plan.run_name(cell), plan.specs[student], plan.transfer[student],
                            plan.test, plan.student_recipe(0), tmp_path, teacher=teacher,
                            model=plan.build(plan.specs[student], 2), val_data=plan.val,
                            method=method_for("fitnets", student, len(plan.transfer[student])),
                            **QUIET)
        cached = ckpt["model_state"]
        assert online.state_dict().keys() == cached.keys()
        for k, v in online.state_dict().items():
            assert torch.equal(v, cached[k]), (student, k, (v.float() - cached[k]).abs().max())
        methods = report["students"][student]["methods"]
        assert methods["fitnets"]["teacher_outputs"] == VIEWS
        assert methods["kd"]["teacher_outputs"] == LOGITS
    caches = sorted(p.name for p in (root / "work" / "cache").iterdir())
    assert caches == ["teacher-wrn-10-1-e2-j2-mlp800-all",
                      "teacher-wrn-10-1-e2-j2-mlp800-all-views1-pool",
                      "teacher-wrn-10-1-e2-j2-resnet8w8-sub400",
                      "teacher-wrn-10-1-e2-j2-resnet8w8-sub400-views1-stage2"]
    assert "cached views; stage2 → stage2" in (root / "rep" / "digits.md").read_text()


def test_a_second_invocation_reuses_every_cache_and_run(run, monkeypatch) -> None:
    root, argv, first = run
    metas = sorted((root / "work" / "cache").glob("*views*/meta.json"))
    stamps = [m.stat().st_mtime_ns for m in metas]

    def refuse(*_a, **_k):
        raise AssertionError("rebuilt or retrained although everything was valid")

    monkeypatch.setattr(view_cache, "_build", refuse)
    monkeypatch.setattr(trainer, "train_epoch", refuse)
    assert main(argv) == 0
    again = json.loads((root / "rep" / "digits.json").read_text())
    assert again["students"] == first["students"]
    assert [m.stat().st_mtime_ns for m in metas] == stamps and len(metas) == 2


def test_online_only_where_the_cache_cannot_serve() -> None:
    fitnets = method_for("fitnets", "resnet8", 100)
    plain = Recipe(TrainConfig(epochs=1))
    assert source_for(fitnets, plain)[0] == VIEWS
    how, why = source_for(fitnets, Recipe(TrainConfig(epochs=1), jitter=2))
    assert how == ONLINE and "augmented" in why
    how, why = source_for(fitnets, plain, cache_gib=9.0, limit_gib=8.0)
    assert how == ONLINE and "9.0 GiB" in why
    assert source_for(method_for("kd", "mlp800", 100), plain)[0] == LOGITS
    assert source_for(method_for("plain", "mlp800", 100), plain)[0] == LABELS
    # how a finished cell trained is read back from its run identity, old online ones included
    assert trained_from({"identity": {"teacher_views": "ab", "extra.teacher": None}}) == VIEWS
    assert trained_from({"identity": {"extra.teacher": "cd"}}) == ONLINE
    assert trained_from({"identity": {"extra.teacher_logits": "ef"}}) == LOGITS
    assert trained_from({}) == LABELS


def test_fit_run_refuses_a_checkpoint_made_from_other_views(blobs, tmp_path) -> None:
    recipe = Recipe(TrainConfig(epochs=1, batch_size=32, progress=False, device="cpu"))

    def views(seed: int):
        torch.manual_seed(seed)
        teacher = MLP(16, 3, (8,))
        return view_cache.cached_teacher_views(teacher, blobs, tmp_path / f"v{seed}",
                                               layers=["hidden_layers.0"], dtype="float32")

    method = methods.get("fitnets", student_layer="hidden_layers.0",
                         teacher_layer="hidden_layers.0")
    args = ("r", mlp_spec(blobs, [8]), blobs, blobs, recipe, tmp_path)
    _, row = fit_run(*args, teacher_views=views(0), method=method, init_seed=1, **QUIET)
    _, again = fit_run(*args, teacher_views=views(0), method=method, init_seed=1, **QUIET)
    assert again["test_accuracy"] == row["test_accuracy"]          # the same views: resumed
    with pytest.raises(ValueError, match="different run .*teacher_views"):
        fit_run(*args, teacher_views=views(1), method=method, init_seed=1, **QUIET)


def test_a_cache_over_the_size_limit_keeps_the_teacher_online(tmp_path) -> None:
    settings = {**SETTINGS, "teacher_epochs": 1, "epochs": 1, "methods": ("fitnets",),
                "students": ("mlp800",)}
    r = league.run(league.config_from("digits", out=str(tmp_path), view_cache_gb=0,
                                      **settings), **QUIET)
    entry = r["students"]["mlp800"]["methods"]["fitnets"]
    assert entry["teacher_outputs"] == ONLINE and "view_cache_gb = 0" in entry[
        "teacher_outputs_why"]
    assert not list((tmp_path / "cache").glob("*views*"))
    assert "online (its cached teacher outputs" in (tmp_path / "results.md").read_text()


def test_a_logits_view_cache_over_the_size_limit_keeps_the_teacher_online(tmp_path) -> None:
    """K views of logits are sized too (N x K x classes x 4 bytes in the league's float32),
    so a huge --views runs kd online instead of filling the disk."""
    from kdistill.experiments.league_teacher import planned_source

    plan = _plan(tmp_path, students=("mlp800",), student_jitter=1, views=100_000,
                 view_cache_gb=1.0)
    kd = method_for("kd", "mlp800", len(plan.transfer["mlp800"]))
    how, why = planned_source(plan, "mlp800", kd, plan.student_recipe(0))
    assert plan.cfg.view_dtype == "float32"
    gib = len(plan.transfer["mlp800"]) * 100_000 * 10 * 4 / 2 ** 30
    assert how == ONLINE and f"would take {gib:.1f} GiB" in why
    small = _plan(tmp_path, students=("mlp800",), student_jitter=1, views=3)
    assert planned_source(small, "mlp800", kd, small.student_recipe(0))[0] == VIEWS


def test_a_jitter_that_shifts_the_image_away_is_refused_before_any_work(tmp_path,
                                                                          capsys) -> None:
    assert main([*ARGV, "--student-jitter", "4", "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "student_jitter 4" in err and "8-pixel image" in err and "at most 3" in err
    assert "Traceback" not in err and not (tmp_path / "w" / "runs").exists()


def test_jittered_students_replay_k_cached_teacher_views(tmp_path) -> None:
    """--student-jitter 1 --views 3: kd and fitnets both read a 3-view cache (logits only, and
    logits + fitnets' layer), whose stored logits are the teacher's on exactly the shifted
    images its stored rows describe; the plain student shifts its own images online."""
    out = tmp_path / "work"
    argv = [*ARGV, "--students", "mlp800", "--student-jitter", "1", "--views", "3",
            "--out", str(out), "--report-dir", str(tmp_path / "rep")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "rep" / "digits.json").read_text())
    assert report["schedule"]["augmentation"] == {"jitter": 1, "views": 3}
    rows = report["students"]["mlp800"]["methods"]
    assert rows["kd"]["teacher_outputs"] == rows["fitnets"]["teacher_outputs"] == VIEWS
    caches = sorted(p.name for p in (out / "cache").iterdir())
    assert caches == ["teacher-wrn-10-1-e2-j2-mlp800-all-views3-j1-logits",
                      "teacher-wrn-10-1-e2-j2-mlp800-all-views3-j1-pool"]
    plan = _plan(out, students=("mlp800",), student_jitter=1, views=3)
    teacher = league._train_teacher(plan, plan.cfg, QUIET["log"])
    cache = league.TeacherOutputs(plan, teacher, torch.device("cpu")).views(
        "mlp800", method_for("kd", "mlp800", len(plan.transfer["mlp800"])))
    assert not cache.rebuilt and cache.views == 3
    teacher, x = copy.deepcopy(teacher).double(), plan.transfer["mlp800"].x.double()
    shifts = cache.params.long()                       # (3, N, 2): each view's (dy, dx)
    assert shifts.abs().max() == 1 and len({tuple(s) for s in shifts[:, 0].tolist()}) > 1
    for v, i in ((0, 0), (1, 5), (2, 17)):
        dy, dx = shifts[v, i].tolist()
        image = torch.zeros_like(x[i])                  # shift by hand, zero fill
        h, w = image.shape[-2:]
        image[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            x[i][..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        with torch.no_grad():
            want = teacher(image[None])[0]
        assert torch.allclose(cache.logits[v, i].double(), want, atol=1e-4), (v, i)
    ident = {m: load_checkpoint(out / "runs" / plan.run_name(("mlp800", m, 0))
                                / "checkpoint.pt")["identity"] for m in ("plain", "kd")}
    assert ident["plain"]["augment"] == "jitter(1)" and not ident["plain"]["teacher_views"]
    assert ident["kd"]["augment"] is None and ident["kd"]["teacher_views"]   # the cache's


def test_views_without_a_jitter_are_refused_before_any_work(tmp_path, capsys) -> None:
    assert main([*ARGV, "--views", "4", "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "without student_jitter" in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()
