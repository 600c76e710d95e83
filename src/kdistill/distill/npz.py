"""Your own data as one .npz file: x_train, y_train, x_test, y_test, each checked at load so
that a broken file is one line naming the array, never a traceback from deep in training."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .data import ArrayDataset, DataSplits

__all__ = ["load_npz"]

_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read(path: Path) -> dict[str, np.ndarray]:
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an .npz file")
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise ValueError(f"{path}: missing array {missing[0]!r} (need "
                                 f"{', '.join(_KEYS)}; it holds {', '.join(z.files) or 'none'})")
            return {k: z[k] for k in _KEYS}
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None
    except AttributeError:  # np.load of a text file returns no NpzFile
        raise ValueError(f"{path}: not a readable .npz file") from None


def _check_part(path: Path, arrays: dict[str, np.ndarray], part: str) -> None:
    x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{path}: x_{part} must hold numbers, got dtype {x.dtype}")
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"{path}: x_{part} must be (N, D), (N, H, W) or (N, C, H, W), got "
                         f"shape {x.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"{path}: y_{part} must hold integer labels, got {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{path}: y_{part} must be one label per example, got shape {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{path}: x_{part} has {len(x)} examples but y_{part} {len(y)} labels")
    if len(x) == 0:
        raise ValueError(f"{path}: the {part} split is empty")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"{path}: x_{part} contains NaN or infinite values")


def load_npz(path: str | os.PathLike) -> DataSplits:
    """Your own data: an .npz with x_train, y_train, x_test, y_test (images (N, H, W),
    (N, C, H, W) or feature rows (N, D); labels integers 0..K-1)."""
    path = Path(path)
    arrays = _read(path)
    for part in ("train", "test"):
        _check_part(path, arrays, part)
    num_classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    if num_classes < 2 and min(arrays["y_train"].min(), arrays["y_test"].min()) >= 0:
        raise ValueError(f"{path}: the labels hold a single class (0); need at least 2")
    names = [str(i) for i in range(num_classes)]
    parts = []
    for part in ("train", "test"):
        x = arrays[f"x_{part}"].astype(np.float32)
        if x.ndim == 3:
            x = x[:, None]
        parts.append(ArrayDataset(torch.from_numpy(x),
                                  torch.from_numpy(arrays[f"y_{part}"].astype(np.int64)),
                                  num_classes, names, f"{path.stem}-{part}"))
    return DataSplits(parts[0], parts[1], path.stem, str(path))
