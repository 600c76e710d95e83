"""Progress lines for the long steps of the tabular pipeline ("model 12 of 290, 41 s").

Lines go to a ``log`` callable (the pipeline's, by default a :mod:`logging` logger at INFO:
``kdistill compress`` shows them, a library caller sees them only if it configures logging).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Progress"]


class Progress:
    """``what i of n[, detail], elapsed s``: at the first and last step and at most once every
    ``every`` seconds in between, so a 290-model library gives a few dozen lines, not 290."""

    def __init__(self, log: Callable[[str], None], what: str, total: int,
                 every: float = 10.0) -> None:
        self.log = log
        self.what = what
        self.total = total
        self.every = every
        self.start = time.perf_counter()
        self.last = -float("inf")

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, i: int, detail: str = "") -> None:
        """Step ``i`` (1-based) is done."""
        now = time.perf_counter()
        if i in (1, self.total) or now - self.last >= self.every:
            self.last = now
            extra = f" ({detail})" if detail else ""
            self.log(f"  {self.what} {i} of {self.total}{extra}, {now - self.start:.0f} s")
