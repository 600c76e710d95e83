"""`kdistill distill`: a student on a teacher's soft targets at temperature T."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    add_data,
    add_model,
    add_training,
    build,
    finish,
    load_teacher,
    model_spec,
    train_config,
)

NAME = "distill"


def add_parser(subparsers) -> argparse.ArgumentParser:
    d = subparsers.add_parser(NAME, help="distill a student from a teacher checkpoint",
                              description="Train a student on a teacher's soft targets at "
                                          "temperature T (plus the hard labels, weighted).")
    d.add_argument("--teacher", required=True, nargs="+",
                   help="teacher checkpoint.pt (from kdistill train); several checkpoints form "
                        "an ensemble teacher")
    d.add_argument("--combine", choices=["arith_prob", "geo_logit"], default="arith_prob",
                   help="how an ensemble's members are combined: mean of probabilities at T "
                        "(default) or normalized geometric mean (mean of logits)")
    add_data(d)
    add_model(d, [800, 800])
    add_training(d)
    g = d.add_argument_group("distillation")
    g.add_argument("--temperature", "-T", type=float, default=20.0,
                   help="softmax temperature for teacher and student (default: %(default)s)")
    g.add_argument("--soft-weight", type=float, default=1.0,
                   help="weight of the T^2-scaled soft term (>= 0)")
    g.add_argument("--hard-weight", type=float, default=0.1,
                   help="weight of the hard-label cross-entropy at T = 1 (>= 0; 0 drops it)")
    g.add_argument("--loss", choices=["kd", "logit_matching"], default="kd",
                   help="kd: soft targets at T; logit_matching: squared error of zero-meaned "
                        "logits (the high-T limit)")
    g.add_argument("--cache-dir", default=None,
                   help="teacher-logit cache folder (default: <out>/teacher-cache); unused with "
                        "--jitter, where the teacher runs online on the jittered batch")
    return d


def run(a: argparse.Namespace) -> int:
    from ..distill.cache import cached_teacher_logits
    from ..distill.data import load_dataset
    from ..distill.teachers import fingerprint_module
    from ..distill.trainer import resolve_device, train

    cfg = train_config(a, temperature=a.temperature, soft_weight=a.soft_weight,
                       hard_weight=a.hard_weight, loss=a.loss)
    teacher, n_teacher = load_teacher(a.teacher, a.combine, a.temperature)
    device = resolve_device(a.device)
    teacher = teacher.to(device)
    splits = load_dataset(a.dataset, a.data_dir, a.download)
    spec = model_spec(a, splits.train)
    if n_teacher is not None and n_teacher != splits.train.num_classes:
        raise ValueError(f"teacher/student class-count mismatch: the teacher has {n_teacher} "
                         f"classes, {a.dataset} has {splits.train.num_classes}")
    student = build(spec, a.seed)
    out = Path(a.out)
    kwargs = {}
    if a.jitter > 0:
        kwargs["teacher"] = teacher  # online: the teacher sees the same jittered batch
    else:
        cache = cached_teacher_logits(teacher, splits.train.x,
                                      a.cache_dir or out / "teacher-cache",
                                      transform="identity", device=device,
                                      progress=not a.no_progress)
        print(f"teacher logits {'computed' if cache.rebuilt else 'reused'} ({cache.reason}): "
              f"{cache.path}")
        kwargs["teacher_logits"] = cache.logits
    result = train(student, splits.train, cfg, eval_data=splits.test, out_dir=out,
                   resume=not a.no_resume, model_spec=spec,
                   extra={"teacher": fingerprint_module(teacher)}, **kwargs)
    finish(result, out, spec, splits.test)
    return 0
