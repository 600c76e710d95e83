"""`kdistill` command line: parses flags and calls the library. Nothing else lives here.

Each command is a module with `add_parser(subparsers)` and `run(args) -> int`, listed once in
COMMANDS. Bad input ends with one line on stderr and exit code 2, before anything is written; a
run that diverges ends with exit code 1 and keeps its last good checkpoint. Nothing heavy is
imported until a command runs, so `kdistill --help` needs neither torch nor matplotlib.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys

from ..reporting import set_invocation
from .common import LazyParser, Parser, UsageError
from .common import load_model as _load_model  # noqa: F401  (tests and old callers)

__all__ = ["main", "build_parser", "COMMANDS"]

# The commands, in the order --help lists them: module names under kdistill.cli.
COMMANDS: tuple[str, ...] = ("train", "distill", "fix_bias", "evaluate", "export", "reproduce",
                             "compress", "predict", "demo")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser, and command name -> its module."""
    p = Parser(prog="kdistill", description="Knowledge distillation for PyTorch models "
               "(Hinton, Vinyals & Dean 2015).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=LazyParser)
    modules = {}
    for name in COMMANDS:
        module = importlib.import_module(f".{name}", __name__)
        module.add_parser(sub)
        modules[module.NAME if hasattr(module, "NAME") else name.replace("_", "-")] = module
    return p, modules


class _Stdout(logging.StreamHandler):
    """Writes to whatever sys.stdout is when a record comes (tests swap it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _install_logging() -> tuple[logging.Handler, int]:
    """Progress from kdistill's loggers to stdout, one plain line each, as long as main runs."""
    logger = logging.getLogger("kdistill")
    handler = _Stdout()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler, level


def _is(exc: BaseException, module: str, name: str) -> bool:
    """isinstance(exc, kdistill.<module>.<name>) without importing that module: an exception of
    a class never imported cannot have been raised."""
    cls = getattr(sys.modules.get(f"kdistill.{module}"), name, None)
    return cls is not None and isinstance(exc, cls)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures without a display; no import needed
    handler, level = _install_logging()
    set_invocation(list(sys.argv[1:] if argv is None else argv))
    try:
        parser, modules = build_parser()
        args = parser.parse_args(argv)
        return modules[args.command].run(args)
    except UsageError as exc:
        print(f"{exc} (see kdistill --help)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kdistill: interrupted; rerun the same command to resume from the last "
              "checkpoint", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, ValueError) or _is(exc, "distill.checkpoint", "CheckpointError"):
            print(f"kdistill: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):  # a missing file, a read-only folder, a full disk
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO)
            print(f"kdistill: error: {_os_line(exc)}"
                  + ("; files written before are intact (checkpoints are replaced "
                     "atomically)" if full else ""), file=sys.stderr)
            return 1 if full else 2
        if _is(exc, "distill.trainer", "TrainingDiverged"):
            print(f"kdistill: training diverged: {_one_line(exc)}", file=sys.stderr)
            return 1
        raise
    finally:
        set_invocation(None)
        logger = logging.getLogger("kdistill")
        logger.removeHandler(handler)
        logger.setLevel(level)


def _os_line(exc: OSError) -> str:
    """'No space left on device: PATH' rather than '[Errno 28] ...'."""
    if exc.strerror and exc.filename is not None:
        return _one_line(OSError(f"{exc.strerror}: {exc.filename}"))
    return _one_line(exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
