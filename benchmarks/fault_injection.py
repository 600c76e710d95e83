"""Kill -9 at random moments, resume, compare: the slow variant of tests/test_faults.py.

Each round picks a random kill point -- a training step, halfway through a checkpoint write,
or right after one -- kills the run there with SIGKILL (up to two kills per round), reruns
the same command until it finishes, and checks the final weights against an uninterrupted
run bit for bit, and that no temporary file is left. Writes docs/results/fault-injection.json.

    python benchmarks/fault_injection.py [--rounds 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "fault_worker.py"
sys.path.insert(0, str(WORKER.parent))
import fault_worker  # noqa: E402

from kdistill.files import atomic_write_json  # noqa: E402
from kdistill.reporting import provenance  # noqa: E402

DDP = False  # --ddp: every run is 2 processes under torchrun (gloo), rank 0 is killed


def run(out: Path, mode: str) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc-per-node", "2"] if DDP else [sys.executable])
    return subprocess.run([*launcher, str(WORKER), str(out), mode], env=env, timeout=600,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def killed(code: int) -> bool:
    """One process: SIGKILL. Under torchrun: the launcher reports the killed rank as a
    failure (exit code 1)."""
    return code == -signal.SIGKILL or (DDP and code != 0)


def random_mode(rng: random.Random) -> str:
    total = fault_worker.STEPS_PER_EPOCH * fault_worker.EPOCHS
    kind = rng.choice(["step", "step", "write", "epoch"])
    if kind == "step":
        return f"step:{rng.randint(1, total)}"
    return f"{kind}:{rng.randint(1, fault_worker.EPOCHS)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ddp", action="store_true", help="2-process torchrun runs (dropout)")
    ap.add_argument("--out", default=None, help="default: docs/results/fault-injection"
                                                "[-ddp].json")
    args = ap.parse_args()
    global DDP
    DDP = args.ddp
    args.out = args.out or str(ROOT / "docs" / "results" /
                               f"fault-injection{'-ddp' if DDP else ''}.json")
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        assert run(tmp / "ref", "none") == 0
        ref = torch.load(tmp / "ref" / "final.pt")
        rounds, kills, identical, leftovers = [], 0, 0, 0
        for r in range(args.rounds):
            out = tmp / f"round{r}"
            modes = [random_mode(rng) for _ in range(rng.randint(1, 2))]
            codes = []
            for mode in modes:
                codes.append(run(out, mode))
                kills += killed(codes[-1])
                time.sleep(1.1)
            for _ in range(3):  # a failed rerun (e.g. a stray launcher error) is retried
                if (out / "final.pt").exists():
                    break
                codes.append(run(out, "none"))
            try:
                got = torch.load(out / "final.pt")
            except (OSError, RuntimeError):
                got = {}
            same = bool(got) and all(torch.equal(ref[k], got[k]) for k in ref)
            left = len(list(out.glob(".*.tmp")))
            identical += same
            leftovers += left
            rounds.append({"modes": modes, "exit_codes": codes, "bit_identical": same,
                           "leftover_tmp_files": left})
            print(f"round {r + 1}/{args.rounds}: {modes} -> codes {codes}, "
                  f"bit-identical {same}, leftover tmp {left}", flush=True)
    result = {"processes": 2 if DDP else 1, "rounds": args.rounds, "kills": kills,
              "bit_identical": identical, "leftover_tmp_files": leftovers, "per_round": rounds,
              "seconds": round(time.perf_counter() - t0, 1),
              "command": f"python benchmarks/fault_injection.py --rounds {args.rounds} "
                         f"--seed {args.seed}" + (" --ddp" if DDP else ""), **provenance()}
    atomic_write_json(args.out, result)
    print(f"{kills} kills in {args.rounds} rounds: {identical}/{args.rounds} resumed "
          f"bit-identically, {leftovers} leftover temporary files; {args.out}")


if __name__ == "__main__":
    main()
