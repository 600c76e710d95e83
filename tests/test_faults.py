"""Faults: killed writers leave no temporary files behind for good, concurrent cache builders
never read each other's logits, and a run killed with SIGKILL resumes bit-identically."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

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
