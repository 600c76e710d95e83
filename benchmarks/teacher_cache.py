"""Does a student epoch still wait for the teacher when it trains with augmentation and feature
methods? The view cache (kdistill.distill.view_cache) says it should not.

In one run, same CNN student, same Fashion-MNIST images, Jitter(2) in every kind, interleaved
repeats (order alternated), medians:
  plain           a hard-label epoch (method "ce", no teacher);
  kd-online       KD running the CNN teacher on every augmented batch;
  kd-cached       KD from the view cache with K views (one view per example per epoch);
  fitnets-cached  a FitNets hint from the student's stage3 to the teacher's stage3 (a learned
                  1x1 conv) plus the hard labels, the teacher's features from the same cache.
Teacher: resnet8x4 (kdistill.distill.resnet.resnet8x4_spec); student: a CIFAR ResNet of depth
14 and width 16; FLOPs by kdistill.distill.models.count_flops. Each epoch is one `train` call
(setup included); the trainer's own loop time is reported beside it. The cache is built once,
before the timed epochs (its build time is reported). Writes docs/results/bench-teacher-cache.json.

    python benchmarks/teacher_cache.py [--examples 2000] [--views 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

# benchmarks/ is on the path when this file runs as a script: the same data and timing helpers
from kd_epoch import _sync, load_data

from kdistill.distill import methods
from kdistill.distill.augment import Jitter
from kdistill.distill.models import build_model, count_flops
from kdistill.distill.resnet import resnet8x4_spec
from kdistill.distill.trainer import TrainConfig, resolve_device, train
from kdistill.distill.view_cache import cached_teacher_views
from kdistill.files import atomic_write_json
from kdistill.reporting import provenance

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("plain", "kd-online", "kd-cached", "fitnets-cached")
STUDENT = {"name": "resnet", "in_channels": 1, "num_classes": 10, "image_size": 28,
           "depth": 14, "width": 16, "shortcut": "pad"}
TEACHER = resnet8x4_spec(in_channels=1, num_classes=10, image_size=28)
LAYER = "stage3"


def method_of(kind: str) -> methods.Method:
    if kind == "plain":
        return methods.get("ce")
    if kind.startswith("kd"):
        return methods.get("kd", temperature=4.0, hard_weight=0.5)
    return methods.get("fitnets", student_layer=LAYER, teacher_layer=LAYER)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(ROOT / "docs/results/bench-teacher-cache.json"))
    args = ap.parse_args()
    t_start = time.perf_counter()
    device = resolve_device(args.device)
    data, source = load_data(args.examples)
    augment = Jitter(2)
    torch.manual_seed(0)
    teacher = build_model(TEACHER).to(device).eval()
    flops = {"teacher": count_flops(teacher, (1, 28, 28)),
             "student": count_flops(build_model(STUDENT), (1, 28, 28))}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        cache = cached_teacher_views(teacher, data, tmp, views=args.views, augment=augment,
                                     layers=[LAYER], device=device)
        build_seconds = time.perf_counter() - t

        def epoch(kind: str) -> tuple[float, float]:
            """(seconds of the whole train call, seconds of its epoch loop)."""
            torch.manual_seed(1)
            student = build_model(STUDENT)
            cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.05, progress=False,
                              device=str(device))
            kw = ({"teacher_views": cache} if kind.endswith("cached") else
                  {"augment": augment, "teacher": teacher} if kind == "kd-online" else
                  {"augment": augment})
            _sync(device)
            t = time.perf_counter()
            result = train(student, data, cfg, method=method_of(kind), log=lambda s: None,
                           **kw)
            _sync(device)
            return time.perf_counter() - t, float(result.history[-1]["seconds"])

        epoch("plain")  # warm-up: allocator, thread pool, kernels
        times: dict[str, list[float]] = {k: [] for k in KINDS}
        loop: dict[str, list[float]] = {k: [] for k in KINDS}
        for r in range(args.repeats):
            for k in (KINDS if r % 2 == 0 else KINDS[::-1]):
                total, inner = epoch(k)
                times[k].append(total)
                loop[k].append(inner)
                print(f"repeat {r + 1}/{args.repeats} {k:>14}: {total:.2f} s (loop "
                      f"{inner:.2f} s)", flush=True)
        dtypes = {"logits": str(cache.logits.dtype).removeprefix("torch."),
                  LAYER: str(cache.features[LAYER].dtype).removeprefix("torch.")}
        bytes_per_example = cache.nbytes / len(cache)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_loop = {k: statistics.median(v) for k, v in loop.items()}
    ratios = {k: med[k] / med["plain"] for k in KINDS}
    result = {
        "ratio_online_over_plain": ratios["kd-online"],
        "ratio_cached_over_plain": ratios["kd-cached"],
        "ratio_cached_feature_over_plain": ratios["fitnets-cached"],
        "teacher_flops_over_student": flops["teacher"] / flops["student"],
        "cache_bytes_per_example": bytes_per_example,
        "ratios_over_plain": ratios,
        "ratios_over_plain_loop_only": {k: med_loop[k] / med_loop["plain"] for k in KINDS},
        "seconds_per_epoch_median": med,
        "seconds_per_epoch_all": times,
        "loop_seconds_all": loop,
        "cache_build_seconds": build_seconds,
        "cache_dtypes": dtypes,
        "goals": {"ratio_cached_over_plain": "<= 1.1", "ratio_online_over_plain": "2.5-4"},
        "views": args.views,
        "augment": augment.describe(),
        "examples": len(data),
        "data": source,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "teacher": TEACHER | {"mult_adds_per_image": flops["teacher"]},
        "student": STUDENT | {"mult_adds_per_image": flops["student"]},
        "methods": {k: method_of(k).describe() for k in KINDS},
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        **provenance(" ".join(["python", "benchmarks/teacher_cache.py", *sys.argv[1:]])),
    }
    atomic_write_json(args.out, result)
    print("  ".join(f"{k} {v:.3f}" for k, v in ratios.items())
          + f"  teacher/student flops {result['teacher_flops_over_student']:.1f}"
          f"  cache {bytes_per_example / 1024:.1f} KiB/example  -> {args.out}")


if __name__ == "__main__":
    main()
