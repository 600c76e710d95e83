"""The trainer: one loop for plain, distilled and logit-matched students.

Read top to bottom: `TrainConfig` says what to do; `train` validates, resumes from the last
checkpoint if there is one, and runs epochs of `_train_epoch`; each epoch ends with an
evaluation and an atomic checkpoint (model, optimizer, scheduler, RNG states, history).

Rank-aware: under `torchrun` the student is wrapped in DDP (gloo on CPU, NCCL on GPU), every
rank draws the same per-epoch permutation and takes its share of each global batch, and only
rank 0 evaluates and writes. The loss on a rank is its examples' sum divided by the global
batch size (times the world size, since DDP averages gradients), so N ranks take exactly the
step one process takes on the same global batch. The teacher is never wrapped: it is frozen.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .augment import jitter
from .checkpoint import atomic_torch_save, load_checkpoint
from .data import ArrayDataset
from .losses import check_temperature, check_weights, distillation_loss, logit_matching_loss
from .metrics import classification_metrics
from .models import apply_constraints
from .teachers import Teacher, run_teacher

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "train", "evaluate", "predict_logits",
           "resolve_device", "dist_info"]

CHECKPOINT_FORMAT = 1
_RESUME_IGNORED = {"progress", "device", "eval_batch_size"}


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"          # sgd | adam | adamw
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "cosine"        # constant | cosine | linear | step
    warmup_epochs: float = 0.0
    milestones: tuple[int, ...] = ()  # epochs at which `step` multiplies the lr by gamma
    gamma: float = 0.1
    loss: str = "kd"                # kd (soft + hard terms) | logit_matching
    temperature: float = 1.0
    soft_weight: float = 1.0
    hard_weight: float = 1.0
    jitter: int = 0                 # random shift of up to this many pixels, per example
    grad_clip: float | None = None  # max global gradient norm
    amp: bool = False               # bf16 autocast on CUDA for the forward passes
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 2048
    progress: bool = True

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"optimizer must be sgd, adam or adamw, got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine", "linear", "step"):
            raise ValueError(f"schedule must be constant, cosine, linear or step, "
                             f"got {self.schedule!r}")
        if self.loss not in ("kd", "logit_matching"):
            raise ValueError(f"loss must be kd or logit_matching, got {self.loss!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0 pixels, got {self.jitter}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        check_temperature(self.temperature)
        check_weights(self.soft_weight, self.hard_weight)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    seconds: float = 0.0
    resumed_from_epoch: int = 0


# ----------------------------------------------------------------------------- helpers

def dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            rank_local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", rank_local % torch.cuda.device_count())
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but CUDA is not available")
    return dev


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2048,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    return run_teacher(model, x, batch_size=batch_size, device=device)


def evaluate(model: nn.Module, data: ArrayDataset, batch_size: int = 2048,
             device: torch.device | str = "cpu") -> dict:
    """Test errors, accuracy, NLL and ECE of `model` (in eval mode) on a labelled data set."""
    if data.y is None:
        raise ValueError(f"{data.name} has no labels to evaluate against")
    logits = predict_logits(model, data.x, batch_size, device)
    if logits.shape[1] != data.num_classes:
        raise ValueError(f"model outputs {logits.shape[1]} classes but {data.name} has "
                         f"{data.num_classes}")
    return classification_metrics(logits, data.y.cpu())


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = cfg.epochs * steps_per_epoch
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(total - warm, 1)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if cfg.schedule == "linear":
            return max(1.0 - progress, 0.0)
        if cfg.schedule == "step":
            epoch = step // steps_per_epoch
            return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        return 1.0

    return factor


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Shuffling and jitter draw from a generator seeded by (seed, epoch): identical on every
    rank, and the same after a resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------- the loop

def train(
    model: nn.Module,
    train_data: ArrayDataset | Iterable,
    config: TrainConfig | None = None,
    *,
    teacher: Teacher | None = None,
    teacher_logits: torch.Tensor | None = None,
    eval_data: ArrayDataset | None = None,
    eval_extra: dict[str, ArrayDataset] | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    model_spec: dict | None = None,
    extra: dict | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train `model` on hard labels, a teacher's soft targets, or both.

    train_data: an ArrayDataset (batches are index slices; fast path) or any iterable of
        `(x, y)` / `(x, y, index)` batches such as a DataLoader (its sampler shards under DDP).
    teacher: run online on every batch (needed with augmentation), frozen, eval mode, no grad.
    teacher_logits: precomputed logits aligned with `train_data` (see teachers.cached_teacher_
        logits); mutually exclusive with `teacher`, and not allowed with jitter.
    eval_data: evaluated after every epoch; its metrics go into the history as `test_*`.
    eval_extra: more sets evaluated after every epoch, as `<name>_*` (e.g. {"train": ...}).
    out_dir: where `checkpoint.pt` is written after every epoch (rank 0); an existing one with
        the same config is resumed when `resume` is true.
    """
    cfg = config or TrainConfig()
    cfg.validate()
    rank, world = dist_info()
    device = resolve_device(cfg.device)
    in_memory = isinstance(train_data, ArrayDataset)

    if teacher is not None and teacher_logits is not None:
        raise ValueError("pass either an online teacher or cached teacher_logits, not both")
    if teacher_logits is not None and cfg.jitter > 0:
        raise ValueError("cached teacher logits cannot follow jittered inputs: "
                         "use an online teacher with augmentation")
    if teacher_logits is not None and in_memory and len(teacher_logits) != len(train_data):
        raise ValueError(f"teacher_logits has {len(teacher_logits)} rows but the training set has "
                         f"{len(train_data)} examples")
    if teacher_logits is not None and not torch.isfinite(teacher_logits).all():
        raise ValueError("teacher logits contain NaN or infinite values")
    distilling = teacher is not None or teacher_logits is not None
    if not distilling and cfg.loss == "logit_matching":
        raise ValueError("logit_matching needs a teacher")
    if in_memory and train_data.y is None and (not distilling or cfg.soft_weight == 0):
        raise ValueError(f"{train_data.name} has no labels and there is no teacher to learn from")

    model = model.to(device)
    if isinstance(teacher, nn.Module):
        teacher = teacher.to(device).eval().requires_grad_(False)
    if in_memory:
        _check_shapes(model, teacher, teacher_logits, train_data, device)

    torch.manual_seed(cfg.seed)
    if world > 1:
        # Every rank starts from rank 0's weights (DDP broadcasts them).
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    raw_model = _unwrap(model)
    optimizer = _make_optimizer(raw_model, cfg)
    steps_per_epoch = (math.ceil(len(train_data) / cfg.batch_size) if in_memory
                       else max(len(train_data), 1))  # type: ignore[arg-type]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg, steps_per_epoch))

    ckpt_path = Path(out_dir) / "checkpoint.pt" if out_dir else None
    history: list[dict] = []
    start_epoch = 0
    if ckpt_path is not None and resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        _check_resumable(ckpt, cfg, ckpt_path, model_spec, extra or {})
        raw_model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        scheduler.load_state_dict(ckpt["scheduler_state"])
        _set_rng_state(ckpt["rng_state"])
        history = list(ckpt["history"])
        start_epoch = int(ckpt["epoch"])
        if rank == 0:
            log(f"resumed from {ckpt_path} at epoch {start_epoch}/{cfg.epochs}")

    x_dev = y_dev = t_dev = None
    if in_memory:
        x_dev = train_data.x.to(device)
        y_dev = None if train_data.y is None else train_data.y.to(device)
        t_dev = None if teacher_logits is None else torch.as_tensor(teacher_logits).to(device)

    t0 = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        if in_memory:
            batches = _array_batches(x_dev, y_dev, t_dev, cfg, epoch, rank, world)
        else:
            sampler = getattr(train_data, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            batches = _loader_batches(train_data, teacher_logits, device, cfg, epoch, world)
        t_epoch = time.perf_counter()
        stats = _train_epoch(model, teacher, batches, optimizer, scheduler, cfg, epoch,
                             steps_per_epoch, ckpt_path, rank)
        row = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], **stats,
               "seconds": round(time.perf_counter() - t_epoch, 3)}
        if rank == 0 and eval_data is not None:
            row.update({f"test_{k}": v for k, v in
                        evaluate(raw_model, eval_data, cfg.eval_batch_size, device).items()})
        if rank == 0:
            for set_name, data in (eval_extra or {}).items():
                row.update({f"{set_name}_{k}": v for k, v in
                            evaluate(raw_model, data, cfg.eval_batch_size, device).items()})
        history.append(row)
        if rank == 0:
            log(_format_row(row, cfg.epochs))
            if ckpt_path is not None:
                atomic_torch_save({
                    "format": CHECKPOINT_FORMAT,
                    "model_spec": model_spec,
                    "model_state": raw_model.state_dict(),
                    "optimizer_state": optimizer.state_dict(),
                    "scheduler_state": scheduler.state_dict(),
                    "rng_state": _rng_state(),
                    "epoch": epoch + 1,
                    "config": cfg.to_dict(),
                    "history": history,
                    "extra": extra or {},
                }, ckpt_path)
        if world > 1:
            dist.barrier()

    final = history[-1] if history else {}
    return TrainResult(raw_model, history, final, ckpt_path, time.perf_counter() - t0,
                       start_epoch)


def _check_shapes(model, teacher, teacher_logits, data: ArrayDataset, device) -> None:
    """Fail before the first step if student, teacher and data disagree on the class count."""
    probe = data.x[:2].to(device)
    was = model.training
    model.eval()
    with torch.no_grad():
        n_student = model(probe).shape[-1]
        n_teacher = (teacher(probe).shape[-1] if teacher is not None else
                     teacher_logits.shape[-1] if teacher_logits is not None else None)
    model.train(was)
    if n_student != data.num_classes:
        raise ValueError(f"the student outputs {n_student} classes but {data.name} has "
                         f"{data.num_classes}")
    if n_teacher is not None and n_teacher != n_student:
        raise ValueError(f"teacher/student class-count mismatch: teacher {n_teacher}, "
                         f"student {n_student}")


def _check_resumable(ckpt: dict, cfg: TrainConfig, path: Path, model_spec: dict | None,
                     extra: dict) -> None:
    """A checkpoint continues only the same run: same config, same model, same `extra` (where
    callers put what the run learns from, such as the teacher's fingerprint)."""
    have = {k: v for k, v in ckpt.get("config", {}).items() if k not in _RESUME_IGNORED}
    want = {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_IGNORED}
    have.update({"model_spec": ckpt.get("model_spec"), **{f"extra.{k}": v for k, v in
                                                         ckpt.get("extra", {}).items()}})
    want.update({"model_spec": model_spec, **{f"extra.{k}": v for k, v in extra.items()}})
    if model_spec is None:
        del have["model_spec"], want["model_spec"]
    diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if diff:
        k = diff[0]
        raise ValueError(f"{path} belongs to a different run ({k}: {have.get(k)!r} there, "
                         f"{want.get(k)!r} now); use another output folder or no resume")


def _array_batches(x, y, t, cfg: TrainConfig, epoch: int, rank: int, world: int):
    """Yield (x, y, teacher_logits, n_global) for this rank's share of each global batch."""
    gen = _epoch_generator(cfg.seed, epoch)
    n = len(x)
    perm = torch.randperm(n, generator=gen)
    shifts = (torch.randint(-cfg.jitter, cfg.jitter + 1, (2, n), generator=gen)
              if cfg.jitter > 0 else None)
    for start in range(0, n, cfg.batch_size):
        glob = perm[start:start + cfg.batch_size]
        local = torch.tensor_split(torch.arange(len(glob)), world)[rank]
        idx = glob[local].to(x.device)
        xb = x[idx]
        if shifts is not None:
            xb = jitter(xb, cfg.jitter, shifts=shifts[:, start + local].to(x.device))
        yield (xb, None if y is None else y[idx], None if t is None else t[idx], len(glob))


def _loader_batches(loader: Iterable, logits, device, cfg: TrainConfig, epoch: int, world: int):
    """Batches from a user's DataLoader: `x`, `(x, y)` or `(x, y, index)`; the index picks the
    cached teacher logits of each example."""
    gen = _epoch_generator(cfg.seed, epoch)
    for batch in loader:
        if isinstance(batch, torch.Tensor):
            batch = (batch,)
        xb = batch[0].to(device, non_blocking=True)
        yb = batch[1].to(device, non_blocking=True) if len(batch) > 1 else None
        tb = None
        if logits is not None:
            if len(batch) < 3:
                raise ValueError("cached teacher logits with a DataLoader need (x, y, index) "
                                 "batches so each example finds its logits")
            tb = torch.as_tensor(logits)[batch[2].cpu()].to(device, non_blocking=True)
        if cfg.jitter > 0:
            shifts = torch.randint(-cfg.jitter, cfg.jitter + 1, (2, len(xb)), generator=gen)
            xb = jitter(xb, cfg.jitter, shifts=shifts)
        yield xb, yb, tb, len(xb) * world


def _train_epoch(model, teacher, batches, optimizer, scheduler, cfg: TrainConfig, epoch: int,
                 steps_per_epoch: int, ckpt_path, rank: int) -> dict:
    _, world = dist_info()
    use_amp = cfg.amp and next(_unwrap(model).parameters()).is_cuda
    progress = None
    if cfg.progress and rank == 0:
        from tqdm import tqdm
        progress = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                        unit="step", leave=False, dynamic_ncols=True)
    loss_sum = torch.zeros((), dtype=torch.float64)
    seen = 0
    for step, (xb, yb, tb, n_global) in enumerate(batches):
        if teacher is not None:
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
                tb = teacher(xb)
        with torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
            logits = model(xb)
        per_example = _per_example_loss(logits, tb, yb, cfg)
        loss = per_example.sum() * (world / n_global)
        value = float(loss.detach())
        if not math.isfinite(value):
            if progress is not None:
                progress.close()
            cause = ""
            if tb is not None and not torch.isfinite(tb).all():
                cause = " (the teacher's logits are NaN/inf)"
            elif not torch.isfinite(logits.detach()).all():
                cause = " (the student's logits are NaN/inf: lower the lr or clip gradients)"
            kept = (f"the last good checkpoint is {ckpt_path}" if ckpt_path and ckpt_path.exists()
                    else "no checkpoint was written yet")
            raise TrainingDiverged(f"loss became {value} at epoch {epoch + 1}, step {step + 1}"
                                   f"{cause}; stopped, {kept}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        apply_constraints(model)
        scheduler.step()
        loss_sum += value * len(xb)
        seen += len(xb)
        if progress is not None:
            progress.update(1)
            if step % 20 == 0:
                progress.set_postfix(loss=f"{value:.4f}")
    if progress is not None:
        progress.close()
    # This rank's mean over its own examples; rank 0's is what the log shows.
    return {"train_loss": float(loss_sum) / max(seen, 1)}


def _per_example_loss(logits, tb, yb, cfg: TrainConfig) -> torch.Tensor:
    """Plain cross-entropy without a teacher; otherwise the KD (or logit-matching) soft term
    plus the weighted hard term when labels are present."""
    if tb is None:
        return distillation_loss(logits, None, yb, soft_weight=0.0, hard_weight=1.0,
                                 reduction="none")
    if cfg.loss == "logit_matching":
        soft = cfg.soft_weight * logit_matching_loss(logits, tb, reduction="none")
        if yb is None or cfg.hard_weight == 0:
            return soft
        return soft + cfg.hard_weight * distillation_loss(
            logits, None, yb, soft_weight=0.0, hard_weight=1.0, reduction="none")
    return distillation_loss(logits, tb, yb, temperature=cfg.temperature,
                             soft_weight=cfg.soft_weight,
                             hard_weight=cfg.hard_weight if yb is not None else 0.0,
                             reduction="none")


def _format_row(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}"]
    if "test_errors" in row:
        parts += [f"test errors {row['test_errors']}", f"acc {row['test_accuracy']:.4f}",
                  f"nll {row['test_nll']:.4f}", f"ece {row['test_ece']:.4f}"]
    parts.append(f"lr {row['lr']:.3g}")
    return " | ".join(parts)
