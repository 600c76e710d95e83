"""Checks every command runs on its input before any work, so that bad input is one line on
stderr (exit code 2) and nothing is written: output paths, the device, a checkpoint's model
against the data, and the generic sanity of reproduce's settings.

Nothing here imports torch at module level (`kdistill --help` stays fast).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["out_dir", "out_file", "device", "spec_fits", "finite_settings", "widths_fit"]

# Integers beyond this are refused wherever they reach torch or numpy (a C long long).
MAX_INT = 2 ** 31 - 1


def _first_existing(path: Path) -> Path:
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _probe_writable(folder: Path, flag: str, path: Path) -> None:
    """Create and remove a temporary file in `folder`: the only test of writability that
    holds for read-only mounts, ACLs and full quotas alike (os.access does not)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".kdistill-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ValueError(f"cannot write {flag} {path}: {folder} is not a writable folder "
                         f"({exc.strerror or exc})") from None


def out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A folder the command will write into: a folder or not there yet (its missing parents
    are created later, so the first existing ancestor must be a writable folder). Creates
    nothing."""
    path = Path(path)
    if not str(path).strip():
        raise ValueError(f"{flag} is empty: give a folder")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder")
    folder = _first_existing(path)
    if not folder.is_dir():
        raise ValueError(f"cannot write {flag} {path}: {folder} is not a writable folder "
                         "(it is a file)")
    _probe_writable(folder, flag, path)
    return path


def out_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A file the command will write (atomically, beside itself): not a folder, and its
    folder creatable and writable."""
    path = Path(path)
    if not str(path).strip():
        raise ValueError(f"{flag} is empty: give a file name")
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    folder = _first_existing(path.parent)
    if not folder.is_dir():
        raise ValueError(f"cannot write {flag} {path}: {folder} is not a writable folder "
                         "(it is a file)")
    _probe_writable(folder, flag, path)
    return path


def device(name: str):
    """The torch device of --device, refused (one line) when it does not exist here."""
    from ..distill.runtime import resolve_device

    return resolve_device(name)


def spec_fits(spec: dict, data, what: str) -> None:
    """A checkpoint's model takes `data`'s inputs and predicts its classes: the input size is
    compared before any forward pass (else a `mat1 and mat2` traceback)."""
    import numpy as np

    shape = tuple(data.input_shape)
    name = spec.get("name")
    if name == "mlp" and "in_features" in spec:
        have = int(np.prod(shape))
        if spec["in_features"] != have:
            raise ValueError(f"{what} takes {spec['in_features']} input features, {data.name} "
                             f"has {have} (input shape {list(shape)})")
    elif name == "cnn":
        size = spec.get("image_size", 28)
        want = (spec.get("in_channels", 1), size, size)
        if shape != want:
            raise ValueError(f"{what} takes inputs of shape {list(want)}, {data.name} has "
                             f"{list(shape)}")
    n = spec.get("num_classes")
    if n is not None and n != data.num_classes:
        raise ValueError(f"class-count mismatch: {what} predicts {n} classes, {data.name} has "
                         f"{data.num_classes}")


def finite_settings(given: dict[str, Any]) -> None:
    """Generic limits on settings given on the command line: numbers finite, integers in
    [0, MAX_INT] (no setting of ours means anything below 0)."""
    for key, value in given.items():
        flag = "--" + key.replace("_", "-")
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, bool):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{flag} must be a finite number, got {v}")
            if isinstance(v, int) and not 0 <= v <= MAX_INT:
                raise ValueError(f"{flag} must be an integer in [0, {MAX_INT}], got {v}")


def widths_fit(given: dict[str, Any]) -> None:
    """Hidden widths whose weights alone would not fit in memory, refused with the estimate
    before anything trains. An integer width is an experiment's two hidden layers."""
    from ..distill.models import check_model_size

    for key, value in given.items():
        if "hidden" not in key or value is None:
            continue
        hidden = list(value) if isinstance(value, tuple) else [value, value]
        if all(isinstance(h, int) for h in hidden):
            check_model_size({"name": "mlp", "in_features": 1, "num_classes": 2,
                              "hidden": hidden}, what=f"--{key.replace('_', '-')}")
