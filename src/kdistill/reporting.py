"""What every result file says about itself: command, hardware, versions, wall time; and the
small JSON/Markdown/plot helpers the experiments and the tabular pipeline share.

No torch or matplotlib at import time (the tabular half and the CLI import this): torch is read
only when a provenance record is made, matplotlib only when a figure is saved."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

from .files import atomic_write

__all__ = ["provenance", "set_invocation", "hardware", "markdown_table", "save_figure",
           "command_line", "jsonable"]


_INVOCATION: list[str] | None = None   # set by the CLI for the duration of one command


def set_invocation(argv: list[str] | None) -> None:
    """The CLI's own arguments, so that a record names `kdistill ...` whether the CLI ran as a
    script, under `python -m` or `python -c`, or from `kdistill.cli.main([...])`."""
    global _INVOCATION
    _INVOCATION = None if argv is None else ["kdistill", *argv]


def command_line() -> str:
    argv = list(sys.argv) if _INVOCATION is None else list(_INVOCATION)
    if argv and argv[0].endswith(("kdistill", "__main__.py")):
        argv[0] = "kdistill"
    return " ".join(shlex.quote(a) for a in argv)


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    desc = f"{os.cpu_count()} CPU cores ({cpu}), torch threads {torch.get_num_threads()}"
    if torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(0)}"
    return desc


def provenance(command: str | None = None) -> dict:
    import torch

    return {
        "command": command or command_line(),
        "hardware": hardware(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure atomically as PNG."""
    import matplotlib.pyplot as plt

    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110,
                                                     bbox_inches="tight"))
    plt.close(fig)
    return out


def jsonable(obj):
    """Plain JSON types all the way down (numpy scalars/arrays, tuples, non-str keys; NaN and
    infinities become null, which strict JSON readers accept)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return jsonable(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
