"""Faults: killed writers leave no temporary files behind for good, concurrent cache builders
never read each other's logits, and a run killed with SIGKILL resumes bit-identically."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from kdistill.distill.callbacks import Callback
from kdistill.distill.checkpoint import load_checkpoint
from kdistill.files import atomic_write_text, file_lock, remove_stale_temporaries


def test_leftover_temporaries_of_killed_writers_are_removed(tmp_path):
    target = tmp_path / "checkpoint.pt"
    stale = tmp_path / ".checkpoint.pt.dead1234.tmp"
    stale.write_bytes(b"x" * 1000)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".checkpoint.pt.young.tmp"  # may belong to a writer that just began
    fresh.write_bytes(b"y")
    other = tmp_path / ".other.pt.dead.tmp"
    other.write_bytes(b"z")
    os.utime(other, (old, old))
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert not stale.exists() and fresh.exists() and other.exists()


def test_a_temporary_held_by_a_live_writer_is_left_alone(tmp_path):
    import fcntl

    live = tmp_path / ".c.pt.live.tmp"
    live.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(live, (old, old))
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert remove_stale_temporaries(tmp_path / "c.pt") == []
        assert live.exists()
    finally:
        os.close(fd)
    assert remove_stale_temporaries(tmp_path / "c.pt") == [live]


def test_file_lock_serializes(tmp_path):
    with file_lock(tmp_path / ".lock"):
        assert (tmp_path / ".lock").exists()


BUILDER = textwrap.dedent("""
    import sys, torch
    from kdistill.distill.cache import cached_teacher_logits
    torch.set_num_threads(1)
    seed, folder, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    torch.manual_seed(seed)
    teacher = torch.nn.Linear(8, 3)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    want = teacher(x).detach()
    bad = 0
    for _ in range(rounds):
        got = cached_teacher_logits(teacher, x, folder).logits
        bad += int(not torch.allclose(got, want, atol=1e-6))
    print(bad)
""")


def test_concurrent_builders_with_different_teachers_get_their_own_logits(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(seed), str(tmp_path / "c"),
                               "12"], stdout=subprocess.PIPE, text=True, env=env)
             for seed in (1, 2)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [int(o.strip().splitlines()[-1]) for o in outs] == [0, 0]


WORKER = Path(__file__).with_name("fault_worker.py")


def run_worker(out: Path, mode: str) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(WORKER), str(out), mode], env=env,
                          timeout=300).returncode


def test_sigkill_after_and_during_a_checkpoint_resumes_bit_identically(tmp_path):
    """Killed right after checkpoint 3 was written, and halfway through writing checkpoint 2
    (checkpoint 1 stays the last good one): the rerun of the same command finishes with the
    uninterrupted run's weights, bit for bit, and no temporary file is left."""
    assert run_worker(tmp_path / "ref", "none") == 0
    ref = torch.load(tmp_path / "ref" / "final.pt")
    for mode in ("epoch:3", "write:2"):
        out = tmp_path / mode.replace(":", "-")
        assert run_worker(out, mode) == -signal.SIGKILL
        assert not (out / "final.pt").exists()
        time.sleep(1.1)  # older than a writer's create-then-lock window
        assert run_worker(out, "none") == 0
        got = torch.load(out / "final.pt")
        assert all(torch.equal(ref[k], got[k]) for k in ref), mode
        assert not list(out.glob(".*.tmp")), mode


def test_resume_refuses_other_data_of_the_same_shape(blobs, tmp_path):
    from kdistill.distill.data import ArrayDataset
    from kdistill.distill.models import MLP
    from kdistill.distill.trainer import TrainConfig, train

    cfg = TrainConfig(epochs=2, batch_size=16, progress=False, device="cpu")
    torch.manual_seed(0)
    train(MLP(16, 3, (8,)), blobs, cfg, out_dir=tmp_path, log=lambda s: None)
    other = ArrayDataset(blobs.x.flip(0), blobs.y.flip(0), 3, name="other")
    with pytest.raises(ValueError, match="different run .data"):
        train(MLP(16, 3, (8,)), other, cfg, out_dir=tmp_path, log=lambda s: None)
    relabelled = ArrayDataset(blobs.x, (blobs.y + 1) % 3, 3)
    with pytest.raises(ValueError, match="different run .data"):
        train(MLP(16, 3, (8,)), relabelled, cfg, out_dir=tmp_path, log=lambda s: None)


def test_a_diverged_run_continues_from_its_last_good_checkpoint_with_a_lower_lr(blobs,
                                                                              tmp_path):
    from kdistill.distill.data import ArrayDataset
    from kdistill.distill.models import MLP
    from kdistill.distill.trainer import TrainConfig, TrainingDiverged, train

    big = ArrayDataset(blobs.x * 30, blobs.y, 3, name="big")
    cfg = TrainConfig(epochs=6, batch_size=150, optimizer="sgd", lr=1.0, momentum=0.0,
                      schedule="constant", progress=False, device="cpu")

    class Explode(Callback):  # after epoch 2, make the lr absurd: the run diverges in epoch 3
        def on_epoch_end(self, row, model):
            if row["epoch"] == 2:
                for p in model.parameters():
                    p.data.mul_(1e30)

    torch.manual_seed(0)
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(MLP(16, 3, (8,)), big, cfg, out_dir=tmp_path / "run", callbacks=[Explode()],
              log=lambda s: None)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model_state"].values())
    # the same folder refuses a changed lr; a new run started from that checkpoint does not
    lower = TrainConfig(epochs=2, batch_size=150, optimizer="sgd", lr=0.01, momentum=0.0,
                        schedule="constant", progress=False, device="cpu")
    with pytest.raises(ValueError, match="different run"):
        train(MLP(16, 3, (8,)), big, lower, out_dir=tmp_path / "run", log=lambda s: None)
    logs = []
    result = train(MLP(16, 3, (8,)), big, lower, out_dir=tmp_path / "continued",
                   init_from=tmp_path / "run" / "checkpoint.pt", log=logs.append)
    assert any("initialized from" in line for line in logs)
    assert len(result.history) == 2 and all(
        torch.isfinite(p).all() for p in result.model.parameters())
