"""What the commands share: the parser class, flag groups, and the small steps from flags to a
model and a run. Nothing here imports torch at module level (`kdistill --help` stays fast)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["UsageError", "Parser", "LazyParser", "add_data", "add_model", "add_training",
           "architecture", "train_config", "model_spec", "build", "distributed", "finish",
           "load_model", "load_teacher", "dataset_name"]


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UsageError(f"{self.prog}: {message}")


class LazyParser(Parser):
    """A subcommand parser whose flags are added on first use, by `populate(parser)`: building
    `kdistill --help` then never imports what only one subcommand needs (an experiment's
    config, scikit-learn's presets)."""

    def __init__(self, *args: Any, populate: Callable[[argparse.ArgumentParser], None] | None
                 = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._populate = populate

    def _ensure(self) -> None:
        if self._populate is not None:
            populate, self._populate = self._populate, None
            populate(self)

    def parse_known_args(self, args=None, namespace=None):
        self._ensure()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._ensure()
        return super().format_help()

    def format_usage(self) -> str:
        self._ensure()
        return super().format_usage()


def add_data(p: argparse.ArgumentParser, default: str = "digits") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=default,
                   help="digits (built in), mnist, fashion-mnist, kmnist, or a path to an .npz "
                        "with x_train, y_train, x_test, y_test (default: %(default)s)")
    g.add_argument("--data-dir", default=None,
                   help="folder holding the four IDX files (*-ubyte[.gz]); default: "
                        "$KDISTILL_DATA/<dataset>, then system folders such as "
                        "/usr/share/datasets/fashion-mnist")
    g.add_argument("--download", action="store_true",
                   help="download missing IDX files, each checked against its SHA-256")


def add_model(p: argparse.ArgumentParser, hidden_default: list[int]) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=["mlp", "cnn", "resnet", "wrn"], default="mlp",
                   help="architecture: the paper's MLP, a small CNN, a CIFAR-style ResNet "
                        "(--depth 6n+2, --width base channels) or a wide ResNet (--depth 6n+4, "
                        "--width widen factor)")
    g.add_argument("--depth", type=int, default=None,
                   help="resnet/wrn depth (default: 20 for resnet, 16 for wrn)")
    g.add_argument("--width", type=int, default=None,
                   help="resnet base width (default 16) or wrn widen factor (default 2)")
    g.add_argument("--hidden", type=int, nargs="+", default=hidden_default,
                   help="MLP hidden layer widths (default: %(default)s)")
    g.add_argument("--input-dropout", type=float, default=0.0, help="MLP input dropout rate")
    g.add_argument("--hidden-dropout", type=float, default=0.0,
                   help="dropout rate after each hidden layer (MLP) or dense layer (CNN)")
    g.add_argument("--max-norm", type=float, default=None,
                   help="cap on each MLP hidden unit's incoming weight L2 norm")


def add_training(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=20, help="default: %(default)s")
    g.add_argument("--batch-size", type=int, default=256, help="global batch size")
    g.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--schedule", choices=["constant", "cosine", "linear", "step"],
                   default="cosine", help="learning-rate schedule, stepped every batch")
    g.add_argument("--warmup-epochs", type=float, default=0.0)
    g.add_argument("--milestones", type=int, nargs="*", default=[],
                   help="epochs at which the step schedule multiplies the lr by --gamma")
    g.add_argument("--gamma", type=float, default=0.1)
    g.add_argument("--jitter", type=int, default=0,
                   help="shift each training image by up to this many pixels")
    g.add_argument("--grad-clip", type=float, default=None, help="max gradient norm")
    g.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1")
    g.add_argument("--out", required=True,
                   help="run folder: checkpoint.pt (every epoch, atomic) and metrics.json")
    g.add_argument("--no-resume", action="store_true",
                   help="start over even if --out holds a checkpoint")
    g.add_argument("--resume-from", default=None, metavar="CHECKPOINT",
                   help="start a new run (in a new --out) from this checkpoint's weights, e.g. "
                        "the last good checkpoint of a diverged run, with other settings "
                        "such as a lower --lr")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def architecture(text: str) -> tuple[int, ...]:
    """'256' or '64x64' -> (256,) or (64, 64)."""
    try:
        widths = tuple(int(w) for w in text.lower().split("x"))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"not an architecture: {text!r} (widths >= 1 joined "
                                         f"by x, e.g. 256 or 64x64)")
    return widths


def separator(text: str) -> str:
    """--sep: one character; '\\t' or 'tab' for a tab (what a shell passes for --sep '\\t')."""
    sep = {"\\t": "\t", "tab": "\t"}.get(text.lower(), text)
    if len(sep) != 1:
        raise argparse.ArgumentTypeError(f"--sep must be one character (or '\\t' / tab); "
                                         f"got {text!r}")
    return sep


def dataset_name(dataset: str) -> str:
    return Path(dataset).stem if dataset.endswith(".npz") else dataset


def train_config(a: argparse.Namespace):
    from ..distill.trainer import TrainConfig

    cfg = TrainConfig(
        epochs=a.epochs, batch_size=a.batch_size, optimizer=a.optimizer, lr=a.lr,
        momentum=a.momentum, weight_decay=a.weight_decay, schedule=a.schedule,
        warmup_epochs=a.warmup_epochs, milestones=tuple(a.milestones), gamma=a.gamma,
        grad_clip=a.grad_clip, amp=a.amp, seed=a.seed, device=a.device,
        progress=not a.no_progress)
    cfg.validate()
    return cfg


def augment_from(a: argparse.Namespace):
    """--jitter N as the trainer's augmentation function (None without it)."""
    from ..distill.augment import Jitter

    return Jitter(a.jitter) if a.jitter else None


def model_spec(a: argparse.Namespace, data) -> dict:
    if a.model == "mlp":
        return {"name": "mlp", "in_features": data.in_features, "num_classes": data.num_classes,
                "hidden": list(a.hidden), "input_dropout": a.input_dropout,
                "hidden_dropout": a.hidden_dropout, "max_norm": a.max_norm}
    shape = data.input_shape
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"the {a.model} needs square images (C, H, H), got input shape {shape}")
    base = {"name": a.model, "in_channels": shape[0], "num_classes": data.num_classes,
            "image_size": shape[1]}
    if a.model == "resnet":
        return {**base, "depth": a.depth or 20, "width": a.width or 16}
    if a.model == "wrn":
        return {**base, "depth": a.depth or 16, "widen_factor": a.width or 2,
                "dropout": a.hidden_dropout}
    return {**base, "dropout": a.hidden_dropout}


def build(spec: dict, seed: int):
    import torch

    from ..distill.models import build_model

    torch.manual_seed(seed)
    return build_model(spec)


@contextmanager
def distributed(device: str) -> Iterator[int]:
    """Under torchrun (WORLD_SIZE > 1), join the process group for the block and yield this
    rank; outside it, yield 0 and do nothing. gloo on the CPU, NCCL on CUDA with this rank's
    GPU (LOCAL_RANK). Ranks other than 0 log warnings only, so progress shows once. Enter it
    after every flag and file is checked: a refusal before it is one line on each rank, with
    no rank left waiting for the others."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        yield 0
        return
    import torch
    import torch.distributed as dist

    from ..distill.runtime import resolve_device

    device_ = resolve_device(device)
    if device_.type == "cuda":
        torch.cuda.set_device(device_)
    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if device_.type == "cuda" else "gloo")
    rank = dist.get_rank()
    logger = logging.getLogger("kdistill")
    level = logger.level
    if rank != 0:
        logger.setLevel(logging.WARNING)
    try:
        yield rank
    finally:
        logger.setLevel(level)
        if joined:
            dist.destroy_process_group()


def finish(result, out: Path, spec: dict, test, extra: dict | None = None) -> None:
    """metrics.json (with `extra` on top) and the closing line; call it on rank 0 alone."""
    from ..files import atomic_write_json
    from ..reporting import provenance

    summary = {"final": result.final, "history": result.history, "model_spec": spec,
               "test_size": len(test), "seconds": round(result.seconds, 1), **(extra or {}),
               **provenance()}
    atomic_write_json(out / "metrics.json", summary)
    f = result.final
    print(f"done: test errors {f.get('test_errors')} of {len(test)} "
          f"(accuracy {f.get('test_accuracy', float('nan')):.4f}), "
          f"checkpoint {out / 'checkpoint.pt'}")


def load_model(path: str):
    from ..distill.checkpoint import load_model

    return load_model(path)


def load_teacher(paths: list[str], combine: str, temperature: float, data=None):
    """One checkpoint, or several as an EnsembleTeacher; returns (teacher, class count). With
    `data`, each member must take its inputs and predict its classes."""
    from ..distill.teachers import EnsembleTeacher
    from .checks import spec_fits

    loaded = [load_model(p) for p in paths]
    counts = {p: spec.get("num_classes") for p, (_, spec) in zip(paths, loaded)}
    if len(set(counts.values())) > 1:
        raise ValueError("ensemble members disagree on the number of classes: " + ", ".join(
            f"{p}: {n}" for p, n in counts.items()))
    if data is not None:
        for p, (_, spec) in zip(paths, loaded):
            spec_fits(spec, data, f"the teacher {p}")
    n_classes = next(iter(counts.values()))
    if len(loaded) == 1:
        return loaded[0][0], n_classes
    return EnsembleTeacher([m for m, _ in loaded], combine, temperature), n_classes
