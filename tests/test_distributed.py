"""`torchrun ... kdistill train|distill` and per-rank RNG states: 2 CPU processes (gloo)
launched as the user would, compared with one process (same global batches, no dropout) or
with an uninterrupted 2-process run (dropout, bit for bit)."""

import json
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import ddp_worker  # noqa: E402

from kdistill.cli import main  # noqa: E402
from kdistill.distill.checkpoint import load_checkpoint  # noqa: E402
from kdistill.distill.trainer import train  # noqa: E402

EPOCHS = 2
FLAGS = ["--dataset", "digits", "--hidden", "32", "32", "--epochs", str(EPOCHS),
         "--batch-size", "32", "--optimizer", "sgd", "--lr", "0.05", "--no-progress"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def single_train(tmp_path_factory) -> Path:
    """One process, the reference for torchrun train and the teacher for distill."""
    out = tmp_path_factory.mktemp("single-train")
    assert main(["train", *FLAGS, "--out", str(out)]) == 0
    return out


def assert_close_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a)["model_state"], load_checkpoint(b)["model_state"]
    assert wa.keys() == wb.keys()
    for name in wa:
        diff = float((wa[name] - wb[name]).abs().max())
        assert diff <= 1e-5, f"{name}: max |difference| {diff:.3g}"


def assert_logged_once(stdout: str) -> None:
    lines = stdout.splitlines()
    for e in range(1, EPOCHS + 1):
        assert sum(line.startswith(f"epoch {e}/{EPOCHS} |") for line in lines) == 1, stdout
    assert sum(line.startswith("done:") for line in lines) == 1, stdout


def written(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def test_torchrun_train_is_one_run_split_over_ranks(single_train, tmp_path):
    out = tmp_path / "ddp"
    proc = ddp_worker.launch(["-m", "kdistill", "train", *FLAGS, "--out", str(out)])
    assert_logged_once(proc.stdout)
    assert written(out) == {"checkpoint.pt", "metrics.json"}  # no stray temporary files
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == EPOCHS and ckpt["world_size"] == 2 and len(ckpt["rng_state"]) == 2
    assert_close_weights(out / "checkpoint.pt", single_train / "checkpoint.pt")
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert final["test_accuracy"] > 0.3  # chance is 0.1


def test_torchrun_distill_builds_the_cache_once(single_train, tmp_path, capsys):
    teacher = str(single_train / "checkpoint.pt")
    args = ["distill", "--teacher", teacher, "-T", "4", *FLAGS]
    out = tmp_path / "ddp"
    proc = ddp_worker.launch(["-m", "kdistill", *args, "--out", str(out)])
    assert_logged_once(proc.stdout)
    assert proc.stdout.count("teacher logits computed") == 1, proc.stdout
    files = {p if not p.startswith("teacher-cache/") else
             "teacher-cache/<teacher>/" + p.rsplit("/", 1)[1] for p in written(out)}
    assert files == {"checkpoint.pt", "metrics.json", "teacher-cache/<teacher>/logits.npy",
                     "teacher-cache/<teacher>/meta.json", "teacher-cache/<teacher>/.lock"}
    assert len({p.split("/")[1] for p in written(out) if "/" in p}) == 1  # one teacher
    assert main([*args, "--out", str(tmp_path / "single")]) == 0
    # both ranks trained on the logits one process computes
    assert_close_weights(out / "checkpoint.pt", tmp_path / "single" / "checkpoint.pt")
    assert "teacher logits computed" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["train", *FLAGS, "--epochs", "0"], "epochs must be"),
    (["train", *FLAGS, "--dataset", "missing.npz"], "missing.npz"),
    (["distill", "--teacher", "missing.pt", *FLAGS], "missing.pt"),
])
def test_bad_input_under_torchrun_is_refused_before_joining(args, words, tmp_path, capsys,
                                                            monkeypatch):
    """Rank 1 of 2 refuses alone, before it would wait for the others in the process group."""
    import torch.distributed as dist

    def never(*a, **k):
        raise AssertionError("joined the process group before checking the input")

    monkeypatch.setattr(dist, "init_process_group", never)
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "never"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not out.exists()


def test_two_process_resume_restores_each_ranks_rng(tmp_path):
    """Dropout differs per rank: crashed in epoch 2 and resumed, every rank continues with its
    own RNG state and the weights equal an uninterrupted 2-process run bit for bit."""
    ddp_worker.launch([str(HERE / "ddp_worker.py"), str(tmp_path), "resume"],
                      done_dir=str(tmp_path))
    weights = torch.load(tmp_path / "resume_weights.pt")
    for name, w in weights["ref"].items():
        assert torch.equal(w, weights["resumed"][name]), name
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["crashed_at"] == 1 and r["resumed_from"] == 1 for r in ranks)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    states = [s["torch"] for s in ckpt["rng_state"]]
    assert ckpt["world_size"] == 2 and len(states) == 2 and not torch.equal(*states)
    # from_rank_zero: rank 0's result, and rank 0's failure, on both ranks
    assert [r["shared"] for r in ranks] == ["made by rank 0"] * 2
    assert [r["shared_error"] for r in ranks] == ["cache  broken\non rank 0"] * 2
    # one process cannot continue two ranks' states
    with pytest.raises(ValueError, match="written by 2 process.* this run has 1"):
        train(ddp_worker.dropout_model(), ddp_worker.problem(), ddp_worker.config(epochs=3),
              teacher=ddp_worker.teacher(), augment=ddp_worker.Jitter(1),
              out_dir=tmp_path / "run", log=lambda s: None)
