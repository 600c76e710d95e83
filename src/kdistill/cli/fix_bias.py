"""`kdistill fix-bias`: prior matching on a student's output biases (SPEC 2.4)."""

from __future__ import annotations

import argparse
import json

from . import checks
from .common import add_data
from .common import load_model as _load_model
from .common import load_teacher as _load_teacher

NAME = "fix-bias"


def add_parser(subparsers) -> argparse.ArgumentParser:
    f = subparsers.add_parser(
        NAME, help="shift a student's output biases so that its mean prediction matches a "
                   "prior (classes missing from its transfer set)",
        description="Prior matching (SPEC 2.4): offsets on the output biases so that the "
                    "student's mean prediction on the data set's training inputs (labels "
                    "unused unless --prior labels) matches the teacher's mean prediction or "
                    "the label frequencies. Writes a new checkpoint; the old one is kept.")
    f.add_argument("student", help="student checkpoint.pt")
    f.add_argument("--teacher", nargs="+", default=None,
                   help="teacher checkpoint(s): the target prior is their mean prediction")
    f.add_argument("--prior", choices=["teacher", "labels"], default="teacher",
                   help="teacher: the teacher's mean prediction (no labels); labels: the "
                        "training label frequencies")
    f.add_argument("--classes", type=int, nargs="+", default=None,
                   help="only these classes' biases move (default: all)")
    f.add_argument("--out", required=True, help="where to write the fixed checkpoint")
    add_data(f)
    f.add_argument("--device", default="auto")
    return f


def cmd_fix_bias(a) -> int:

    from ..distill.bias import label_prior, teacher_prior
    from ..distill.bias_fix import fix_output_bias
    from ..distill.checkpoint import atomic_torch_save, load_checkpoint
    from ..distill.data import load_dataset
    from ..distill.teachers import run_teacher
    from ..distill.trainer import evaluate

    if a.prior == "teacher" and not a.teacher:
        raise ValueError("--prior teacher needs --teacher checkpoint(s)")
    checks.out_file(a.out)
    device = checks.device(a.device)
    student, spec = _load_model(a.student)
    splits = load_dataset(a.dataset, a.data_dir, a.download)
    k = splits.train.num_classes
    checks.spec_fits(spec, splits.train, f"the student {a.student}")
    if a.classes is not None and any(not 0 <= c < k for c in a.classes):
        raise ValueError(f"--classes names a class that does not exist: {a.classes} "
                         f"(classes are 0..{k - 1})")
    if a.prior == "teacher":
        teacher, _ = _load_teacher(a.teacher, "arith_prob", 1.0, splits.train)
        prior = teacher_prior(run_teacher(teacher.to(device), splits.train.x,
                                          device=device).numpy(), from_logits=True)
    else:
        prior = label_prior(splits.train.y.numpy(), k)
    before = evaluate(student.to(device), splits.test, device=device)
    offsets = fix_output_bias(student, splits.train.x, prior, classes=a.classes, device=device)
    after = evaluate(student, splits.test, device=device)
    ckpt = load_checkpoint(a.student)
    ckpt["model_state"] = {n: v.detach().cpu() for n, v in student.state_dict().items()}
    ckpt["bias_fix"] = {"offsets": offsets.tolist(), "prior": prior.tolist(),
                        "prior_source": a.prior, "classes": a.classes, "from": str(a.student)}
    atomic_torch_save(ckpt, a.out)
    print(json.dumps({"offsets": [round(float(v), 4) for v in offsets],
                      "test_errors_before": before["errors"],
                      "test_errors_after": after["errors"], "checkpoint": a.out}))
    return 0


run = cmd_fix_bias
