"""`kdistill distill`: a student trained on a teacher checkpoint (or several, as an ensemble)
with any registered method: `--method NAME --method-arg key=value ...`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from . import checks
from .common import (
    add_data,
    add_model,
    add_training,
    augment_from,
    build,
    distributed,
    finish,
    load_teacher,
    model_spec,
    train_config,
)

NAME = "distill"
log = logging.getLogger("kdistill.cli")
# The CLI's Hinton defaults for kd (the paper's MNIST setting); other methods keep their own.
KD_DEFAULTS = {"temperature": 20.0, "soft_weight": 1.0, "hard_weight": 0.1}


def add_parser(subparsers) -> argparse.ArgumentParser:
    d = subparsers.add_parser(NAME, help="distill a student from a teacher checkpoint",
                              description="Train a student on a teacher's outputs with a "
                                          "distillation method (default kd: soft targets at "
                                          "temperature T plus the hard labels, weighted).")
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
    g.add_argument("--method", default="kd",
                   help="kd, logit_matching, dkd, fitnets, ... (kdistill.methods.available(); "
                        "default: %(default)s)")
    g.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the method, e.g. beta=8 or student_layer=hidden_layers.1"
                        " (repeatable; values are JSON numbers/booleans or strings)")
    g.add_argument("--temperature", "-T", type=float, default=None,
                   help="the method's temperature (kd default here: 20)")
    g.add_argument("--soft-weight", type=float, default=None,
                   help="weight of the soft term (kd default: 1)")
    g.add_argument("--hard-weight", type=float, default=None,
                   help="weight of the hard-label cross-entropy (kd default here: 0.1)")
    g.add_argument("--cache-dir", default=None,
                   help="teacher-logit cache folder (default: <out>/teacher-cache); unused with "
                        "--jitter or a method that reads teacher layers, where the teacher runs "
                        "online")
    g.add_argument("--auto", action="store_true",
                   help="choose kd's temperature and hard weight automatically: a budgeted "
                        "search over T in {1,2,4,8,20} x hard weight in {0,0.1,0.5} on a "
                        "validation split of the training data (kdistill.distill.auto), then "
                        "the final run with the choice; the choice goes into metrics.json")
    g.add_argument("--auto-budget", type=float, default=3.0,
                   help="with --auto: the search's cost at most this many times one run "
                        "(examples x epochs; the final run comes on top; default %(default)s)")
    g.add_argument("--auto-val-size", type=float, default=0.2,
                   help="with --auto: the validation fraction of the training data "
                        "(default %(default)s)")
    return d


def parse_method_args(pairs: list[str]) -> dict:
    """['beta=8', 'student_layer=hidden_layers.1'] -> {'beta': 8, 'student_layer': '...'}."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--method-arg needs KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip().replace("-", "_")] = value
    return out


def build_method(a: argparse.Namespace):
    """The method from --method, the shorthand flags and --method-arg (which wins)."""
    from ..distill import methods

    if a.method not in methods.available():
        raise ValueError(f"unknown method {a.method!r}; available: "
                         f"{', '.join(methods.available())}")
    if a.method == "ce":
        raise ValueError("--method ce trains on labels alone: use kdistill train")
    accepted = methods.parameters(a.method)
    params = dict(KD_DEFAULTS) if a.method == "kd" else {}
    for flag, key in (("temperature", "temperature"), ("soft_weight", "soft_weight"),
                      ("hard_weight", "hard_weight")):
        value = getattr(a, flag)
        if value is None:
            continue
        if key not in accepted:
            raise ValueError(f"--{flag.replace('_', '-')} does not apply to method "
                             f"{a.method!r} (its parameters: "
                             f"{', '.join(accepted)})")
        params[key] = value
    params.update(parse_method_args(a.method_arg))
    return methods.get(a.method, **params)


def check_auto(a: argparse.Namespace) -> None:
    """--auto chooses kd's temperature and hard weight itself: no flags that set them, one
    process."""
    import os

    given = [f for f, v in (("--temperature", a.temperature), ("--hard-weight", a.hard_weight),
                            ("--soft-weight", a.soft_weight)) if v is not None]
    if a.method != "kd" or given or a.method_arg:
        raise ValueError("--auto chooses kd's temperature and hard weight: drop "
                         + (", ".join(given + ["--method-arg"] * bool(a.method_arg))
                            or f"--method {a.method}"))
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise ValueError("--auto runs in one process, not under torchrun")
    if a.resume_from is not None:
        raise ValueError("--auto trains every candidate from scratch: drop --resume-from")
    if not 0 < a.auto_val_size < 1:
        raise ValueError(f"--auto-val-size must lie in (0, 1), got {a.auto_val_size}")


def run(a: argparse.Namespace) -> int:
    cfg = train_config(a)
    augment = augment_from(a)
    if a.auto:
        check_auto(a)
    method = build_method(a)  # every flag checked before the data or the teacher is loaded

    from ..distill.data import load_dataset
    from ..distill.teachers import fingerprint_module
    from ..distill.trainer import train

    out = checks.out_dir(a.out)
    if a.cache_dir is not None:
        checks.out_dir(a.cache_dir, "--cache-dir")
    device = checks.device(a.device)
    splits = load_dataset(a.dataset, a.data_dir, a.download)
    temperature = getattr(method, "temperature", 1.0)
    teacher, n_teacher = load_teacher(a.teacher, a.combine, temperature, splits.train)
    teacher = teacher.to(device)
    spec = model_spec(a, splits.train)
    student = build(spec, a.seed)
    with distributed(a.device) as rank:  # under torchrun each rank takes its share
        kwargs = {}
        if augment is not None or method.teacher_layers():
            kwargs["teacher"] = teacher  # online: it sees the augmented batch / its layers run
        else:
            # One cache folder per teacher: a refused or different run never overwrites
            # the cache another teacher's run is using.
            cache_dir = Path(a.cache_dir or out / "teacher-cache"
                             / fingerprint_module(teacher)[:16])
            kwargs["teacher_logits"] = _cached_logits(teacher, splits.train.x, cache_dir,
                                                      device, not a.no_progress)
        if a.auto:
            return _run_auto(a, spec, splits, cfg, augment, out, kwargs)
        result = train(student, splits.train, cfg, method=method, augment=augment,
                       eval_sets={"test": splits.test}, out_dir=out, resume=not a.no_resume,
                       init_from=a.resume_from, model_spec=spec,
                       extra={"teacher": fingerprint_module(teacher)},
                       **kwargs)
        if rank == 0:
            finish(result, out, spec, splits.test)
    return 0


def _run_auto(a, spec: dict, splits, cfg, augment, out: Path, teacher_kwargs: dict) -> int:
    """The search under <out>/auto/ (resumable), the final run in <out> itself."""
    from ..distill.auto import auto_distill
    from .common import build

    res = auto_distill(lambda: build(spec, a.seed), splits.train, cfg, augment=augment,
                       val_size=a.auto_val_size, budget=a.auto_budget, seed=a.seed,
                       eval_sets={"test": splits.test}, out_dir=out / "auto",
                       final_dir=out, resume=not a.no_resume, log=log.info,
                       **teacher_kwargs)
    c = res.choice
    print(f"auto: chose temperature {c.temperature:g}, hard weight {c.hard_weight:g}, soft "
          f"weight {c.soft_weight:g} ({res.reason}); search cost "
          f"{res.search_cost / res.one_run_cost:.2f} x one run")
    finish(res.final, out, spec, splits.test, extra={"auto": res.record()})
    return 0


def _cached_logits(teacher, x, cache_dir: Path, device, progress: bool):
    """The teacher's logits on `x` from its cache. Rank 0 builds (or checks) the cache alone;
    then every rank memory-maps the same file, so all get identical logits and no two
    processes ever write one cache."""
    import numpy as np
    import torch

    from ..distill.cache import cached_teacher_logits
    from ..distill.runtime import from_rank_zero

    def make() -> str:
        cache = cached_teacher_logits(teacher, x, cache_dir, transform="identity",
                                      device=device, progress=progress)
        log.info(f"teacher logits {'computed' if cache.rebuilt else 'reused'} ({cache.reason}):"
                 f" {cache.path}")
        return str(cache.path)

    return torch.from_numpy(np.load(from_rank_zero(make), mmap_mode="c"))
