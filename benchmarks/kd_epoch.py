"""What does distillation cost per epoch, and how close to the machine's matmul rate do we train?

In one run, same student (784-800-800-10), same data, interleaved repeats, medians:
  plain       a hard-label epoch (method "ce", no teacher);
  kd-online   KD running the teacher (784-1200-1200-10) on every batch, as most KD libraries do;
  kd-cached   KD from cached teacher logits (kdistill's default without augmentation);
  dkd-cached  decoupled KD (Zhao et al. 2022) from the same cached logits;
  fitnets     a FitNets hint from the student's hidden_layers.1 to the teacher's (a learned
              800 -> 1200 regressor) plus the hard labels; the teacher runs online, since the
              cache holds only logits.
Reports each epoch's cost over the plain one, samples per second, and the student's achieved
GFLOP/s against a large float32 matmul timed in the same run. Each epoch is one `train` call
(setup included); the trainer's own epoch time (the loop alone) is reported beside it.
Writes docs/results/bench-kd-epoch.json.

    python benchmarks/kd_epoch.py [--examples 20000] [--repeats 3] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from kdistill.distill import methods
from kdistill.distill.cache import cached_teacher_logits
from kdistill.distill.data import ArrayDataset, load_fashion_mnist
from kdistill.distill.models import MLP
from kdistill.distill.trainer import TrainConfig, resolve_device, train
from kdistill.files import atomic_write_json
from kdistill.reporting import provenance

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("plain", "kd-online", "kd-cached", "dkd-cached", "fitnets")
TEMPERATURE = 20.0
HARD_WEIGHT = 0.1


def mlp_train_flops(sizes: list[int]) -> int:
    """Multiply-adds of the linear layers x 2 (flops) x 3 (forward + two backward matmuls)."""
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 2 * 3 * macs


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def load_data(n: int) -> tuple[ArrayDataset, str]:
    try:
        train_set = load_fashion_mnist().train
        return train_set.subset(torch.arange(min(n, len(train_set)))), "fashion-mnist"
    except FileNotFoundError:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(n, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (n,), generator=g)
        return ArrayDataset(x, y, 10, name="synthetic"), "synthetic (fashion-mnist not installed)"


def run_kind(kind: str) -> tuple[methods.Method, str]:
    """The method of one kind and where its teacher comes from ("none", "online", "cached")."""
    if kind == "plain":
        return methods.get("ce"), "none"
    if kind in ("kd-online", "kd-cached"):
        kd = methods.get("kd", temperature=TEMPERATURE, soft_weight=1.0, hard_weight=HARD_WEIGHT)
        return kd, kind.split("-")[1]
    if kind == "dkd-cached":
        return methods.get("dkd"), "cached"
    if kind == "fitnets":
        return methods.get("fitnets", student_layer="hidden_layers.1",
                           teacher_layer="hidden_layers.1"), "online"
    raise ValueError(f"unknown kind {kind!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(ROOT / "docs/results/bench-kd-epoch.json"))
    args = ap.parse_args()
    t_start = time.perf_counter()
    device = resolve_device(args.device)
    data, source = load_data(args.examples)
    torch.manual_seed(0)
    teacher = MLP(784, 10, (1200, 1200), 0.2, 0.5, 15.0).to(device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        cache = cached_teacher_logits(teacher, data.x, tmp, device=device).logits.clone()

    def epoch(kind: str) -> tuple[float, float]:
        """(seconds of the whole train call, seconds of its epoch loop)."""
        torch.manual_seed(1)
        student = MLP(784, 10, (800, 800))
        cfg = TrainConfig(epochs=1, batch_size=args.batch_size, optimizer="adam", lr=1e-3,
                          progress=False, device=str(device))
        method, source_of_teacher = run_kind(kind)
        kw = {"online": {"teacher": teacher}, "cached": {"teacher_logits": cache},
              "none": {}}[source_of_teacher]
        _sync(device)
        t = time.perf_counter()
        result = train(student, data, cfg, method=method, log=lambda s: None, **kw)
        _sync(device)
        return time.perf_counter() - t, float(result.history[-1]["seconds"])

    epoch("plain")  # warm-up: allocator, thread pool, kernels
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    loop: dict[str, list[float]] = {k: [] for k in KINDS}
    matmul: list[float] = []
    for r in range(args.repeats):
        for k in (KINDS if r % 2 == 0 else KINDS[::-1]):  # interleaved, order alternated
            total, inner = epoch(k)
            times[k].append(total)
            loop[k].append(inner)
            print(f"repeat {r + 1}/{args.repeats} {k:>10}: {total:.2f} s (loop {inner:.2f} s)",
                  flush=True)
        matmul.append(matmul_gflops(device))
    med = {k: statistics.median(v) for k, v in times.items()}
    med_loop = {k: statistics.median(v) for k, v in loop.items()}
    n = len(data)
    flops = mlp_train_flops([784, 800, 800, 10]) * n
    gflops = flops / med["plain"] / 1e9
    peak = statistics.median(matmul)
    ratios = {k: med[k] / med["plain"] for k in KINDS}
    result = {
        "ratios_over_plain": ratios,
        "ratios_over_plain_loop_only": {k: med_loop[k] / med_loop["plain"] for k in KINDS},
        "ratio_online_over_plain": ratios["kd-online"],
        "ratio_cached_over_plain": ratios["kd-cached"],
        "ratio_dkd_cached_over_plain": ratios["dkd-cached"],
        "ratio_fitnets_over_plain": ratios["fitnets"],
        "samples_per_second": {k: n / med[k] for k in KINDS},
        "seconds_per_epoch_median": med,
        "seconds_per_epoch_all": times,
        "loop_seconds_all": loop,
        "gflops_achieved": gflops,
        "gflops_matmul": peak,
        "fraction_of_matmul_rate": gflops / peak,
        "goals": {"ratio_cached_over_plain": "<= 1.05", "fraction_of_matmul_rate": ">= 0.60"},
        "examples": n,
        "data": source,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "student": "MLP 784-800-800-10, Adam lr 1e-3",
        "teacher": "MLP 784-1200-1200-10 (dropout, eval mode)",
        "methods": {k: run_kind(k)[0].describe() | {"teacher": run_kind(k)[1]} for k in KINDS},
        "flops_counted": "2 x 3 x multiply-adds of the linear layers per example (forward + "
                         "backward); softmax, loss, optimizer and data movement not counted",
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        **provenance(" ".join(["python", "benchmarks/kd_epoch.py", *sys.argv[1:]])),
    }
    atomic_write_json(args.out, result)
    print("  ".join(f"{k} {v:.3f}" for k, v in ratios.items())
          + f"  plain {n / med['plain']:.0f} samples/s  achieved {gflops:.1f} GFLOP/s of "
          f"{peak:.1f} matmul ({100 * gflops / peak:.0f}%)  -> {args.out}")


if __name__ == "__main__":
    main()
