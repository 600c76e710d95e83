"""Augmentation: a function of a batch and a torch.Generator that returns the batch changed.

The trainer calls `augment(batch, generator)` on every training batch, with a generator seeded
by (seed, epoch), so the draws are the same on every rank and after a resume; the online
teacher sees the augmented batch, the student's exact input. `Jitter` is the paper's pixel
shift as one such function; any callable with the same signature works.

Replayable augmentation (what a view cache, kdistill.distill.view_cache, needs): besides
`__call__`, `draw(n, generator) -> params` gives one row of parameters per example and
`apply(batch, params) -> batch` applies exactly those, example by example, so an example's
augmented input can be recomputed from its stored row alone, in any batch. `Jitter` is
replayable (its row is the (dy, dx) shift); `PerExample(augment)` makes any per-example
augmentation replayable by giving each example its own generator seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Augment", "Jitter", "PerExample", "jitter", "is_replayable"]

Augment = Callable[[Any, torch.Generator], Any]


@dataclass(frozen=True)
class Jitter:
    """Shift each image of `batch["x"]` (or of a tensor batch) by up to `max_shift` pixels."""

    max_shift: int = 1
    key: str = "x"

    def __post_init__(self) -> None:
        if int(self.max_shift) != self.max_shift or self.max_shift < 0:
            raise ValueError(f"jitter max_shift must be an integer >= 0, got {self.max_shift!r}")

    def __call__(self, batch: Any, generator: torch.Generator) -> Any:
        if isinstance(batch, torch.Tensor):
            return jitter(batch, self.max_shift, generator)
        return {**batch, self.key: jitter(batch[self.key], self.max_shift, generator)}

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, 2) shifts (rows, columns): the same draw `__call__` makes for a batch of n."""
        s = int(self.max_shift)
        return torch.randint(-s, s + 1, (2, n), generator=generator).T.contiguous()

    def apply(self, batch: Any, params: torch.Tensor) -> Any:
        shifts = torch.as_tensor(params).T
        if isinstance(batch, torch.Tensor):
            return jitter(batch, self.max_shift, shifts=shifts)
        return {**batch, self.key: jitter(batch[self.key], self.max_shift, shifts=shifts)}

    def describe(self) -> str:
        return f"jitter({self.max_shift})"


@dataclass(frozen=True)
class PerExample:
    """Any augmentation of a tensor batch, made replayable one example at a time: `draw` gives
    each example a seed, `apply` runs `augment` on each example alone with a generator seeded
    by it. Exact for an augmentation that treats examples independently (not for a batch-level
    one such as mixup); one call per example, so slower than a parametric `draw`/`apply`."""

    augment: Augment

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(batch, self.draw(len(batch), generator))

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, 2 ** 62, (n, 1), generator=generator)

    def apply(self, batch: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if not isinstance(batch, torch.Tensor):
            raise ValueError(f"PerExample augments tensor batches, got {type(batch).__name__}")
        if len(batch) == 0:
            return batch
        return torch.cat([self.augment(batch[i:i + 1], torch.Generator().manual_seed(int(s)))
                          for i, s in enumerate(torch.as_tensor(params)[:, 0].tolist())])

    def describe(self) -> str:
        return f"per_example({describe_augment(self.augment)})"


def is_replayable(augment: Any) -> bool:
    return callable(getattr(augment, "draw", None)) and callable(getattr(augment, "apply", None))


def jitter(
    x: torch.Tensor,
    max_shift: int,
    generator: torch.Generator | None = None,
    shifts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Translate each image by its own random integer (dx, dy) in [-max_shift, max_shift],
    filling with zeros; one gather for the whole batch. `shifts` (2, N) fixes the offsets
    (rows first), so that ranks of a distributed run can share one draw."""
    if max_shift <= 0:
        return x
    if x.dim() != 4:
        raise ValueError(f"jitter needs images (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    s = int(max_shift)
    if shifts is None:
        shifts = torch.randint(-s, s + 1, (2, n), generator=generator)
    shifts = shifts.to(x.device)
    padded = torch.nn.functional.pad(x, (s, s, s, s))
    rows = torch.arange(h, device=x.device)[None, :] + s - shifts[0][:, None]   # (n, h)
    cols = torch.arange(w, device=x.device)[None, :] + s - shifts[1][:, None]   # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


def describe_augment(augment: Augment | None) -> str | None:
    """A stable name for the run's identity: `describe()` if the augmentation has one, else its
    qualified name (a lambda cannot be told apart from another: give it a describe())."""
    if augment is None:
        return None
    describe = getattr(augment, "describe", None)
    if callable(describe):
        return str(describe())
    fn = getattr(augment, "func", augment)  # functools.partial
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
    if fn is not augment:
        name += f"{getattr(augment, 'args', ())}{getattr(augment, 'keywords', {})}"
    return name
