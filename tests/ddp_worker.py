"""Run under torchrun (2 processes, gloo), not a test module itself.

`ddp_worker.py OUT`: train the same student as test_training's single-process run and save
rank 0's final weights. `ddp_worker.py OUT resume`: a dropout student trained without a break,
and again crashed in epoch 2 on every rank and resumed; rank 0 saves both final weights, and
every rank records what `from_rank_zero` handed it. `launch` starts torchrun for the tests.
"""

import json
import os
import subprocess
import sys
import warnings

import torch
import torch.distributed as dist

from kdistill.distill.augment import Jitter
from kdistill.distill.checkpoint import load_checkpoint
from kdistill.distill.data import ArrayDataset
from kdistill.distill.models import MLP
from kdistill.distill.runtime import from_rank_zero
from kdistill.distill.trainer import TrainConfig, train

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_training import FixedTeacher  # noqa: E402

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2"]


GLOO_TEARDOWN_ABORT = "terminate called without an active exception"


def launch(args: list[str], timeout: float = 600, done_dir: str | None = None
           ) -> subprocess.CompletedProcess:
    """torchrun with 2 processes, one thread each, over loopback; fails the calling test with
    the tails of both streams (each rank's traceback is in them) if it does not exit 0.

    With `done_dir`, a worker that wrote `done-rank<r>` for both ranks after its last collective
    has finished all its work: a C++ abort of gloo's threads while the processes exit (seen
    once in CI, not reproducible here in 12 loaded runs) is then a warning, not a failure, as
    the test's assertions are on the files the ranks wrote."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run([*TORCHRUN, *args], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"torchrun ran past {timeout} s\nstdout: {tail(exc.stdout)}\n"
                             f"stderr: {tail(exc.stderr)}") from None
    finished = done_dir is not None and all(
        os.path.exists(os.path.join(done_dir, f"done-rank{r}")) for r in (0, 1))
    if proc.returncode != 0 and finished and GLOO_TEARDOWN_ABORT in proc.stderr:
        warnings.warn(f"torchrun exit {proc.returncode} after both ranks finished: gloo "
                      f"aborted in teardown\n{tail(proc.stderr, 1000)}", stacklevel=2)
        return proc
    assert proc.returncode == 0, (f"torchrun exit {proc.returncode}\nstdout: "
                                  f"{tail(proc.stdout)}\nstderr: {tail(proc.stderr)}")
    return proc


def tail(text, n: int = 4000) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "")[-n:]


def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(100, 1, 6, 6, generator=g)
    y = (x.view(100, -1)[:, :3].argmax(1))
    return ArrayDataset(x, y, 3, name="ddp-problem")


def config(**kw):
    base = dict(epochs=2, batch_size=32, optimizer="sgd", lr=0.1, momentum=0.9, seed=3,
                progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


def fresh_model():
    torch.manual_seed(11)
    return MLP(36, 3, (16,))


def dropout_model(seed: int = 11):
    torch.manual_seed(seed)
    return MLP(36, 3, (16,), hidden_dropout=0.3)


def teacher(crash_at: int | None = None) -> FixedTeacher:
    """Fixed weights; raises at its `crash_at`-th call. Every rank calls it once per step
    (plus once for the probe), so every rank stops at the same step."""
    return FixedTeacher(crash_at, in_features=36)


def _fail():
    raise ValueError("cache  broken\non rank 0")


def _resume_case(out: str) -> None:
    cfg = config(epochs=3)
    kw = {"augment": Jitter(1), "log": lambda s: None}
    ref = train(dropout_model(), problem(), cfg, teacher=teacher(), out_dir=out + "/ref", **kw)
    try:  # 4 steps an epoch: call 1 is the probe, call 7 is in epoch 2
        train(dropout_model(), problem(), cfg, teacher=teacher(crash_at=7),
              out_dir=out + "/run", **kw)
        raise AssertionError("the crashing teacher did not stop the run")
    except KeyboardInterrupt:
        pass
    dist.barrier()
    crashed_at = load_checkpoint(out + "/run/checkpoint.pt")["epoch"]
    resumed = train(dropout_model(seed=99), problem(), cfg, teacher=teacher(),
                    out_dir=out + "/run", **kw)
    rank = dist.get_rank()
    try:
        from_rank_zero(_fail)
        shared_error = None
    except ValueError as exc:
        shared_error = str(exc)
    report = {"crashed_at": crashed_at, "resumed_from": resumed.resumed_from_epoch,
              "shared": from_rank_zero(lambda: f"made by rank {dist.get_rank()}"),
              "shared_error": shared_error}
    with open(f"{out}/rank{rank}.json", "w") as fh:
        json.dump(report, fh)
    if rank == 0:
        torch.save({"ref": ref.model.state_dict(), "resumed": resumed.model.state_dict()},
                   out + "/resume_weights.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    if sys.argv[2:] == ["resume"]:
        _resume_case(sys.argv[1])
    else:
        result = train(fresh_model(), problem(), config(), augment=Jitter(1),
                       out_dir=sys.argv[1] + "/run", log=lambda s: None)
        if dist.get_rank() == 0:
            torch.save(result.model.state_dict(), sys.argv[1] + "/ddp_weights.pt")
    dist.barrier()  # every rank's files are written: the work is done
    with open(f"{sys.argv[1]}/done-rank{dist.get_rank()}", "w") as fh:
        fh.write("done\n")
    dist.destroy_process_group()
