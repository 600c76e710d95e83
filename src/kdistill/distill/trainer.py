"""The trainer: one loop for every method, teacher and student.

Read top to bottom: `TrainConfig` says how to optimize; `train` validates, builds the method
(`kdistill.methods`), attaches feature hooks for the layers it names, probes one batch
(shapes, the method's trainable parts), resumes from the last checkpoint if there is one, and
runs epochs. Each step: augment the batch, run the student (and the teacher online, or take its
cached logits, or its cached outputs on a replayed view: view_cache.py), ask the method for
named loss terms, sum them, step. Each epoch ends with an evaluation, callbacks and an atomic
checkpoint (student, method, optimizer, scheduler, every rank's RNG state, history).

Rank-aware: under `torchrun` the student is wrapped in DDP (gloo on CPU, NCCL on GPU); every
rank draws the same per-epoch permutation and augmentation and takes its share of each global
batch; only rank 0 evaluates and writes. A term's per-example values are summed and divided by
the global batch size (times the world size, since DDP averages gradients), so N ranks take
exactly the step one process takes. The teacher is never wrapped: it is frozen.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..files import sha256_file
from . import methods as methods_lib
from .adapters import LogitsKey, call_model, logits_of
from .augment import Augment, describe_augment
from .batches import array_batches, loader_batches, probe_batch
from .cache import fingerprint_training_data
from .callbacks import Callback
from .checkpoint import atomic_torch_save, load_checkpoint
from .data import ArrayDataset
from .evaluation import evaluate, predict_logits
from .guards import (
    check_inputs,
    check_resumable,
    freeze,
    initialize_from,
    probe,
    unfreeze,
)
from .hooks import FeatureHooks
from .loop import TrainingDiverged, check_weights_finite, train_epoch
from .methods import Method, Outputs
from .optim import lr_factor, make_optimizer
from .runtime import dist_info, gather_rng_states, resolve_device, restore_rng_states, unwrap
from .teachers import Teacher
from .view_cache import ViewCache, check_teacher_views

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "train", "evaluate",
           "predict_logits", "resolve_device", "dist_info"]

logger = logging.getLogger("kdistill.train")
CHECKPOINT_FORMAT = 2
_RESUME_IGNORED = {"progress", "device", "eval_batch_size", "check_every"}


@dataclass
class TrainConfig:
    """How to optimize. What to learn from (the method, its temperature and weights) is the
    `method` argument of `train`; augmentation is its `augment` argument."""

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
    grad_clip: float | None = None  # max global gradient norm
    amp: bool = False               # bf16 autocast on CUDA for the forward passes
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 2048
    check_every: int | None = None  # steps between NaN checks: None = 1 on CPU, 8 on CUDA
    progress: bool = True

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)
        for name, top in (("epochs", 10 ** 6), ("batch_size", 2 ** 31 - 1),
                          ("eval_batch_size", 2 ** 31 - 1), ("seed", 2 ** 32 - 1)):
            v, low = getattr(self, name), 0 if name == "seed" else 1
            need(isinstance(v, int) and not isinstance(v, bool) and low <= v <= top,
                 f"{name} must be an integer in [{low}, {top}], got {v!r}")
        need(all(isinstance(m, int) and m >= 1 for m in self.milestones),
             f"milestones must be epochs >= 1, got {list(self.milestones)}")
        need(isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0,
             f"lr must be a finite number > 0, got {self.lr!r}")
        need(self.optimizer in ("sgd", "adam", "adamw"),
             f"optimizer must be sgd, adam or adamw, got {self.optimizer!r}")
        need(self.schedule in ("constant", "cosine", "linear", "step"),
             f"schedule must be constant, cosine, linear or step, got {self.schedule!r}")
        need(0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}")
        need(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        need(self.grad_clip is None or (math.isfinite(self.grad_clip) and self.grad_clip > 0),
             f"grad_clip must be > 0, got {self.grad_clip}")
        need(math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0,
             f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        need(math.isfinite(self.gamma) and self.gamma > 0, f"gamma must be > 0, got {self.gamma}")
        need(self.check_every is None or (isinstance(self.check_every, int)
                                          and self.check_every >= 1),
             f"check_every must be an integer >= 1, got {self.check_every!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    seconds: float = 0.0
    resumed_from_epoch: int = 0
    method: Method | None = None


def train(
    model: nn.Module,
    train_data: ArrayDataset | Iterable,
    config: TrainConfig | None = None,
    *,
    method: str | Method | None = None,
    teacher: Teacher | None = None,
    teacher_logits: torch.Tensor | None = None,
    teacher_views: ViewCache | None = None,
    augment: Augment | None = None,
    val_data: ArrayDataset | Iterable | None = None,
    eval_sets: dict[str, ArrayDataset | Iterable] | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    model_spec: dict | None = None,
    extra: dict | None = None,
    logits_key: LogitsKey = None,
    teacher_logits_key: LogitsKey = None,
    callbacks: Sequence[Callback] = (),
    init_from: str | os.PathLike | None = None,
    data_key: str | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train `model` with `method` (a registry name, a Method, or None: "kd" with a teacher,
    "ce" without) and return the trained model and its history.

    train_data: an ArrayDataset (batches are index slices; fast path) or any iterable of tensor,
        tuple or dict batches such as a DataLoader (its sampler shards under DDP).
    teacher: run online on every (augmented) batch, in eval mode, without gradients; its mode
        and device are restored afterwards. teacher_logits: precomputed logits aligned with
        `train_data` (kdistill.cached_teacher_logits); with a DataLoader its batches must carry
        each example's `index`. Not with `augment`: cached logits cannot follow new inputs.
    teacher_views: the teacher's logits and features on K augmented views of every example
        (kdistill.distill.view_cache.cached_teacher_views); each epoch every example is seen
        in one view, the student's input is that view's replayed augmentation, and feature
        methods read the cached layers. Needs an ArrayDataset; no `augment` (the cache's own).
    augment: `augment(inputs, generator) -> inputs`, e.g. kdistill.distill.augment.Jitter(2).
    val_data: evaluated after every epoch as `val_*` (for choosing settings); eval_sets:
        more sets, each as `<name>_*` (e.g. {"test": ...}: reported, never used to choose).
    out_dir: `checkpoint.pt` after every epoch (rank 0); a matching one is resumed.
    extra: whatever else defines the run (e.g. the teacher's fingerprint); part of its identity.
    logits_key / teacher_logits_key: where the logits are in a dict / ModelOutput output.
    init_from: a checkpoint whose weights (and method state) start a *new* run -- e.g. the
        last good checkpoint of a diverged run, continued with a lower lr; its SHA-256 is part
        of the new run's identity.
    data_key: names the training data in the run's identity instead of a hash of its bytes
        (hashing a DataLoader costs one pass over it).
    """
    cfg = config or TrainConfig()
    cfg.validate()
    log = log or logger.info
    rank, world = dist_info()
    device = resolve_device(cfg.device)
    in_memory = isinstance(train_data, ArrayDataset)
    if teacher is not None and teacher_logits is not None:
        raise ValueError("pass either an online teacher or cached teacher_logits, not both")
    distilling = teacher is not None or teacher_logits is not None or teacher_views is not None
    method = methods_lib.build(method, distilling)
    if teacher_views is not None:
        check_teacher_views(teacher_views, method, train_data, teacher, teacher_logits, augment)
    check_inputs(method, train_data, teacher, teacher_logits, augment, distilling, in_memory)
    if teacher_logits is not None:
        teacher_logits = torch.as_tensor(teacher_logits)

    teacher_state = freeze(teacher, device)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                ExitStack() as hooks:
            return _run(model, train_data, cfg, method, teacher, teacher_logits, augment,
                        val_data, eval_sets or {}, out_dir, resume, model_spec, extra or {},
                        logits_key, teacher_logits_key, callbacks, log, device, rank, world,
                        in_memory, hooks, init_from, data_key, teacher_views)
    finally:
        unfreeze(teacher, teacher_state)


def _run(model, train_data, cfg, method, teacher, teacher_logits, augment, val_data, eval_sets,
         out_dir, resume, model_spec, extra, logits_key, teacher_logits_key, callbacks, log,
         device, rank, world, in_memory, hooks: ExitStack, init_from=None, data_key=None,
         views: ViewCache | None = None) -> TrainResult:
    torch.manual_seed(cfg.seed)
    model = model.to(device)
    s_hooks = hooks.enter_context(FeatureHooks(model, method.student_layers(), "student"))
    t_layers = method.teacher_layers()
    if t_layers and teacher is None and views is None:
        raise ValueError(f"{method.name} reads teacher layers {t_layers}, which cached logits "
                         "do not hold: pass the teacher itself (teacher=...)")
    t_hooks = (hooks.enter_context(FeatureHooks(teacher, t_layers, "teacher"))
               if teacher is not None else None)

    def student_out(inputs) -> Outputs:
        return Outputs(logits_of(call_model(model, inputs), logits_key), s_hooks.take())

    def teacher_out(inputs, cached) -> Outputs | None:
        if isinstance(cached, Outputs):  # from the view cache
            return cached
        if teacher is None:
            return None if cached is None else Outputs(cached)
        with torch.no_grad():
            out = call_model(teacher, inputs)
        return Outputs(logits_of(out, teacher_logits_key), t_hooks.take())

    first = (probe_batch(train_data, teacher_logits, device) if views is None
             else views.probe_batch(train_data, device))
    probe(model, method, first, student_out, teacher_out, train_data if in_memory else None)
    method.to(device)
    # Rank-dependent dropout and other model randomness; weights come from rank 0 via DDP.
    torch.manual_seed(cfg.seed + 7919 * rank)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    raw_model = unwrap(model)
    params = list(raw_model.parameters()) + list(method.parameters())
    optimizer = make_optimizer(params, cfg)
    steps_per_epoch = (math.ceil(len(train_data) / cfg.batch_size) if in_memory
                       else max(len(train_data), 1))  # type: ignore[arg-type]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch))
    identity = {"config": {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_IGNORED},
                "model_spec": model_spec, "method": method.describe(),
                "augment": describe_augment(augment),
                "data": data_key or fingerprint_training_data(train_data),
                "init_from": None if init_from is None else sha256_file(init_from),
                "teacher_views": None if views is None else views.fingerprint,
                **{f"extra.{k}": v for k, v in extra.items()}}

    ckpt_path = Path(out_dir) / "checkpoint.pt" if out_dir else None
    history: list[dict] = []
    start_epoch = 0
    if ckpt_path is not None and resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        check_resumable(ckpt, identity, ckpt_path)
        raw_model.load_state_dict(ckpt["model_state"])
        method.load_state_dict(ckpt.get("method_state", {}))
        optimizer.load_state_dict(ckpt["optimizer_state"])
        scheduler.load_state_dict(ckpt["scheduler_state"])
        restore_rng_states(ckpt["rng_state"], ckpt.get("world_size"), rank, world, ckpt_path)
        history = list(ckpt["history"])
        start_epoch = int(ckpt["epoch"])
        if rank == 0:
            log(f"resumed from {ckpt_path} at epoch {start_epoch}/{cfg.epochs}")
    elif init_from is not None:
        initialize_from(init_from, raw_model, method, device)
        if rank == 0:
            log(f"initialized from {init_from} (a new run: epochs count from 1)")

    arrays = None
    if in_memory:
        arrays = (train_data.x.to(device),
                  None if train_data.y is None else train_data.y.to(device).long(),
                  None if teacher_logits is None else teacher_logits.to(device))
    check_every = cfg.check_every or (8 if device.type == "cuda" else 1)
    t0 = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        method.train()
        if views is not None:
            batches = views.batches(*arrays[:2], cfg.batch_size, cfg.seed, epoch, rank, world)
        elif in_memory:
            batches = array_batches(*arrays, cfg.batch_size, augment, cfg.seed, epoch, rank,
                                    world)
        else:
            sampler = getattr(train_data, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            batches = loader_batches(train_data, teacher_logits, device, augment, cfg.seed,
                                     epoch, world)
        t_epoch = time.perf_counter()
        stats = train_epoch(model, method, batches, student_out, teacher_out, optimizer,
                             scheduler, params, cfg, epoch, steps_per_epoch, ckpt_path, rank,
                             world, check_every)
        check_weights_finite(params, epoch, ckpt_path)
        row = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], **stats,
               "seconds": round(time.perf_counter() - t_epoch, 3)}
        if rank == 0:
            sets = ({"val": val_data} if val_data is not None else {}) | eval_sets
            for set_name, data in sets.items():
                row.update({f"{set_name}_{k}": v for k, v in evaluate(
                    raw_model, data, cfg.eval_batch_size, device, logits_key).items()})
        history.append(row)
        rng_states = gather_rng_states(world, device) if ckpt_path is not None else None
        if rank == 0:
            log(_format_row(row, cfg.epochs))
            if ckpt_path is not None:
                atomic_torch_save({
                    "format": CHECKPOINT_FORMAT, "identity": identity,
                    "model_spec": model_spec, "model_state": raw_model.state_dict(),
                    "method": method.describe(), "method_state": method.state_dict(),
                    "optimizer_state": optimizer.state_dict(),
                    "scheduler_state": scheduler.state_dict(),
                    "rng_state": rng_states, "world_size": world,  # one state per rank
                    "epoch": epoch + 1, "config": cfg.to_dict(), "history": history,
                    "extra": extra,
                }, ckpt_path)
            for cb in callbacks:
                cb.on_epoch_end(row, raw_model)
        if world > 1:
            dist.barrier()
    if rank == 0:
        for cb in callbacks:
            cb.on_train_end(history, raw_model)
    final = history[-1] if history else {}
    return TrainResult(raw_model, history, final, ckpt_path, time.perf_counter() - t0,
                       start_epoch, method)


def _format_row(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}"]
    terms = [k for k in row if k.startswith("train_") and k != "train_loss"]
    if len(terms) > 1:
        parts.append(" ".join(f"{k[6:]} {row[k]:.4f}" for k in terms))
    for prefix in ("val", "test"):
        if f"{prefix}_errors" in row:
            parts += [f"{prefix} errors {row[prefix + '_errors']}",
                      f"acc {row[prefix + '_accuracy']:.4f}"]
    parts.append(f"lr {row['lr']:.3g}")
    return " | ".join(parts)
