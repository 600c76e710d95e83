"""Checkpoints: atomic torch saves and checked loading.

A checkpoint is written to a temporary file and renamed over the old one (see kdistill.files),
so a crash leaves the last good checkpoint.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import atomic_write
from .models import build_model

__all__ = ["atomic_torch_save", "load_checkpoint", "load_model", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not one of ours."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save through a temporary file. torch's zip writer reports a failed write (a full
    disk) as a RuntimeError; it is raised as the OSError it is, so the CLI prints one line."""
    def save(tmp: str) -> None:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:
            if "write" not in str(exc).lower():
                raise
            raise OSError(errno.EIO, f"writing {path} failed, is the disk full? "
                          f"({' '.join(str(exc).split())[:120]})") from None
    return atomic_write(path, save)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a kdistill checkpoint, turning every way it can be broken into one clear error."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint: name the file in it "
                              "(a run's checkpoint.pt, compress's mimic.pt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({first[:200]})") \
            from None
    if not isinstance(ckpt, dict) or "model_state" not in ckpt or "format" not in ckpt:
        raise CheckpointError(f"{path} is not a kdistill checkpoint (no model_state/format)")
    if not isinstance(ckpt["model_state"], dict):
        raise CheckpointError(f"{path}: model_state is a {type(ckpt['model_state']).__name__}, "
                              "not a dict of tensors: the checkpoint is damaged or not ours")
    return ckpt


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu",
               ) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint holds from its `model_spec` (any registered
    architecture, `register_model` included) and load its weights: (model in eval mode, spec)."""
    ckpt = load_checkpoint(path, map_location=map_location)
    spec = ckpt.get("model_spec")
    if not spec:
        raise CheckpointError(f"{path} has no model_spec: cannot rebuild the model")
    if not isinstance(spec, dict):
        raise CheckpointError(f"{path}: model_spec is a {type(spec).__name__}, not a dict")
    try:
        model = build_model(spec)
    except ValueError as exc:
        raise CheckpointError(f"{path}: cannot rebuild its model ({exc})") from None
    # A diverged run never checkpoints NaN, so NaN weights mean a damaged file: refuse them
    # rather than report NaN metrics (or an ECE of 0.0) as if they were results.
    bad = [k for k, v in ckpt["model_state"].items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise CheckpointError(f"{path}: weights {bad[0]!r} hold NaN or infinite values")
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit its model_spec "
                              f"({' '.join(str(exc).split())[:160]})") from None
    return model.eval(), spec
