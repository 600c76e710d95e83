"""What the trainer refuses and restores: the checks that need no forward pass, the probe
batch that checks shapes and builds a method's trainable parts, the resume identity check,
starting a new run from another checkpoint, and the teacher's mode and device put back."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .adapters import Batch
from .checkpoint import load_checkpoint
from .methods import Method

__all__ = ["check_inputs", "probe", "check_resumable", "initialize_from", "freeze", "unfreeze"]


def initialize_from(path, model: nn.Module, method: Method, device) -> None:
    ckpt = load_checkpoint(path, map_location=device)
    try:
        model.load_state_dict(ckpt["model_state"])
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{path}: its weights do not fit this model "
                         f"({str(exc).splitlines()[0][:160]})") from None
    state = ckpt.get("method_state")
    if state and (ckpt.get("method") or {}).get("name") == method.name:
        method.load_state_dict(state)


def check_inputs(method, train_data, teacher, teacher_logits, augment, distilling,
                  in_memory) -> None:
    """Every refusal that needs no forward pass, before any work."""
    if method.needs_teacher and not distilling:
        raise ValueError(f"method {method.name!r} needs a teacher (teacher= or teacher_logits=)")
    if not method.needs_teacher and distilling:
        raise ValueError(f"method {method.name!r} trains on labels alone: it would ignore the "
                         "teacher (use kd, dkd, ... or drop the teacher)")
    if teacher_logits is not None and augment is not None:
        raise ValueError("cached teacher logits cannot follow augmented inputs: pass the "
                         "teacher itself so it sees the student's augmented batch")
    if augment is not None and not callable(augment):
        raise ValueError(f"augment must be a function (inputs, generator) -> inputs, got "
                         f"{type(augment).__name__}")
    if teacher is not None and not callable(teacher):
        raise ValueError(f"the teacher must be a module or a callable, got "
                         f"{type(teacher).__name__}")
    if in_memory:
        if len(train_data) == 0:
            raise ValueError(f"{train_data.name} is empty")
        if teacher_logits is not None and len(teacher_logits) != len(train_data):
            raise ValueError(f"teacher_logits has {len(teacher_logits)} rows but the training "
                             f"set has {len(train_data)} examples")
        if train_data.n_labelled == 0 and (method.needs_labels or not distilling):
            what = ("has no labels" if train_data.y is None
                    else "has no labelled example (every label is -1)")
            raise ValueError(f"{train_data.name} {what} and method {method.name!r} "
                             "needs them")
    if teacher_logits is not None and not torch.isfinite(torch.as_tensor(teacher_logits)).all():
        raise ValueError("teacher logits contain NaN or infinite values")


def freeze(teacher, device):
    """Eval mode on `device` for the run; returns what to restore."""
    if not isinstance(teacher, nn.Module):
        return None
    first = next(teacher.parameters(), None)
    state = (teacher.training, None if first is None else first.device)
    teacher.to(device).eval()
    return state


def unfreeze(teacher, state) -> None:
    if state is None:
        return
    training, dev = state
    if dev is not None:
        teacher.to(dev)
    teacher.train(training)


def probe(model, method, probe: Batch, student_out, teacher_out, data) -> None:
    """One forward pass in eval mode before the first step: class counts agree, hooked layers
    run, and the method builds its trainable parts."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            s = student_out(probe.inputs)
            t = teacher_out(probe.inputs, probe.cached)
    finally:
        model.train(was)
    n_student = s.logits.shape[-1]
    if data is not None and n_student != data.num_classes:
        raise ValueError(f"the student outputs {n_student} classes but {data.name} has "
                         f"{data.num_classes}")
    if t is not None and t.logits.shape[-1] != n_student:
        raise ValueError(f"teacher/student class-count mismatch: teacher {t.logits.shape[-1]}, "
                         f"student {n_student}")
    method.setup(s, t)


def check_resumable(ckpt: dict, identity: dict, path: Path) -> None:
    """A checkpoint continues only the same run: config, model, method, augmentation, extra."""
    have = ckpt.get("identity")
    if have is None:
        raise ValueError(f"{path} is from an older kdistill (no run identity); use another "
                         "output folder or no resume")
    keys = set(have) | set(identity)
    if identity.get("model_spec") is None:
        keys.discard("model_spec")
    diff = sorted(k for k in keys if have.get(k) != identity.get(k))
    if diff:
        k = diff[0]
        h, w = have.get(k), identity.get(k)
        if isinstance(h, dict) and isinstance(w, dict):
            sub = sorted(s for s in set(h) | set(w) if h.get(s) != w.get(s))[0]
            k, h, w = f"{k}.{sub}", h.get(sub), w.get(sub)
        more = f"; also differs: {', '.join(diff[1:])}" if len(diff) > 1 else ""
        raise ValueError(f"{path} belongs to a different run ({k}: {h!r} there, {w!r} now"
                         f"{more}); use another output folder or no resume")
