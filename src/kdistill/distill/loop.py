"""One epoch of steps: augment, forward the student (and the teacher), ask the method for
its loss terms, sum them, step; plus the divergence checks that keep a NaN out of every
checkpoint. The trainer (trainer.py) owns everything around it."""

from __future__ import annotations

import functools
import math
import operator

import torch
import torch.distributed as dist
from torch import nn

from .models import apply_constraints

__all__ = ["TrainingDiverged", "train_epoch", "check_weights_finite"]


class TrainingDiverged(RuntimeError):
    """A loss term or the weights became NaN or infinite; the last good checkpoint is kept."""


def train_epoch(model, method, batches, student_out, teacher_out, optimizer, scheduler,
                 params, cfg, epoch: int, steps_per_epoch: int, ckpt_path,
                 rank: int, world: int, check_every: int) -> dict:
    use_amp = cfg.amp and params[0].is_cuda
    progress = None
    if cfg.progress and rank == 0:
        from tqdm import tqdm
        progress = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                        unit="step", leave=False, dynamic_ncols=True)
    sums: dict[str, torch.Tensor] = {}
    loss_sum = None
    seen = 0
    try:
        for step, b in enumerate(batches):
            with torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
                t = teacher_out(b.inputs, b.cached)
                s = student_out(b.inputs)
            terms = method(s, t, b)
            n_local = len(b)
            scaled = {k: _local_sum(v, n_local) for k, v in terms.items()}
            loss = functools.reduce(operator.add, scaled.values()) * (world / b.n_global)
            with torch.no_grad():
                logged = {k: v.detach().double() for k, v in scaled.items()}
                total = sum(logged.values())
            # float32 terms cannot overflow in a float64 sum: it is finite iff every term is.
            if ((step + 1) % check_every == 0 or check_every == 1) \
                    and not math.isfinite(float(total)):
                _check_finite(scaled, terms, s, t, epoch, step, ckpt_path)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1:
                _average_method_grads(method, world)
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            apply_constraints(model)
            scheduler.step()
            with torch.no_grad():
                for k, v in logged.items():
                    sums[k] = sums.get(k, 0) + v
                loss_sum = total if loss_sum is None else loss_sum + total
            seen += n_local
            if progress is not None:
                progress.update(1)
                if step % 20 == 0:
                    progress.set_postfix(loss=f"{float(total) / max(n_local, 1):.4f}")
    finally:
        if progress is not None:
            progress.close()
    if loss_sum is not None and not math.isfinite(float(loss_sum)):
        _check_finite(sums, sums, None, None, epoch, steps_per_epoch - 1, ckpt_path)
    # This rank's means over its own examples; rank 0's are what the log shows.
    denom = max(seen, 1)
    out = {"train_loss": (float(loss_sum) / denom) if loss_sum is not None else float("nan")}
    out.update({f"train_{k}": float(v) / denom for k, v in sums.items()})
    return out


def _local_sum(term: torch.Tensor, n_local: int) -> torch.Tensor:
    """A per-example vector sums; a scalar is a mean over the local batch, so it counts n."""
    if term.dim() == 0:
        return term.float() * n_local
    if term.dim() != 1 or term.shape[0] != n_local:
        raise ValueError(f"a loss term must be a scalar or one value per example ({n_local}), "
                         f"got shape {tuple(term.shape)}")
    return term.float().sum()


def _check_finite(scaled, terms, s, t, epoch, step, ckpt_path) -> None:
    bad = [k for k, v in scaled.items() if not torch.isfinite(v).all()]
    if not bad:
        return
    cause = ""
    if t is not None and not torch.isfinite(t.logits).all():
        cause = " (the teacher's logits are NaN/inf)"
    elif s is not None and not torch.isfinite(s.logits.detach()).all():
        cause = " (the student's logits are NaN/inf: lower the lr or clip gradients)"
    raise TrainingDiverged(f"loss term {bad[0]!r} became {float(scaled[bad[0]].detach())} by epoch "
                           f"{epoch + 1}, step {step + 1}{cause}; stopped, {_kept(ckpt_path)}")


def check_weights_finite(params, epoch: int, ckpt_path) -> None:
    """Never checkpoint weights that the epoch's last steps spoiled."""
    for p in params:
        if not torch.isfinite(p.detach()).all():
            raise TrainingDiverged(f"the weights became NaN/inf during epoch {epoch + 1} "
                                   f"(lower the lr or clip gradients); {_kept(ckpt_path)}")


def _kept(ckpt_path) -> str:
    return (f"the last good checkpoint is {ckpt_path}" if ckpt_path and ckpt_path.exists()
            else "no checkpoint was written yet")


def _average_method_grads(method: nn.Module, world: int) -> None:
    """The method's own parameters (a FitNets regressor) are outside DDP: average by hand."""
    for p in method.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world
