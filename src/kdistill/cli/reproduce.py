"""`kdistill reproduce NAME`: every experiment in :data:`kdistill.experiments.EXPERIMENTS`, its
flags generated from the fields of its config dataclass.

A field `name: T = setting(default, "help", ...)` becomes `--name` (underscores as dashes):
int, float and str take one value, bool is `--name/--no-name`, a tuple takes one or more
values (`nargs` in the field's metadata may allow none). Flags left out are not passed at all,
so the experiment's per-data-set defaults apply, and a flag's value reaches the config as
given. An experiment's flags are built, and its module imported (torch with it), only when that
experiment is named: `kdistill reproduce --help` lists them without importing any.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from typing import Any

from ..experiments import COMMON_HELP, EXPERIMENTS
from . import checks, compress
from .common import LazyParser, dataset_name

NAME = "reproduce"

# Experiments whose settings are not one config dataclass over a data set: their own flags.
CUSTOM = {"model-compression": (compress.populate_reproduce, compress.run_reproduce)}


def add_parser(subparsers) -> argparse.ArgumentParser:
    r = subparsers.add_parser(NAME, help="reproduce one of the papers' experiments",
                              description="Run a whole experiment and write JSON, Markdown and "
                                          "a plot. Every run checkpoints under --out; rerun the "
                                          "same command to resume.")
    exps = r.add_subparsers(dest="experiment", required=True, parser_class=LazyParser,
                            metavar="EXPERIMENT")
    for name, exp in EXPERIMENTS.items():
        populate = CUSTOM[name][0] if name in CUSTOM else functools.partial(_add_config_flags,
                                                                             name)
        exps.add_parser(name, help=exp.help, description=exp.description or None,
                        populate=populate)
    return r


def _config_class(name: str) -> type:
    exp = EXPERIMENTS[name]
    return getattr(exp.load(), exp.config)


def _unwrap_optional(hint: Any) -> Any:
    """`int | None` -> int; anything else unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def field_argument(f: dataclasses.Field, hint: Any) -> tuple[list[str], dict[str, Any]]:
    """The add_argument(*names, **kwargs) of one config field; TypeError for a type the command
    line cannot express (give the field `type=` in its metadata)."""
    meta = f.metadata
    names = ["--" + f.name.replace("_", "-"), *meta.get("flags", ())]
    text = meta.get("help") or COMMON_HELP.get(f.name) or f.name.replace("_", " ")
    kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
    kind = _unwrap_optional(hint)
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is tuple:
        item = meta.get("type") or typing.get_args(kind)[0]
        if item not in (int, float, str) and "type" not in meta:
            raise TypeError(f"{f.name}: no command-line form for {hint!r}")
        kwargs.update(type=item, nargs=meta.get("nargs", "+"))
    elif kind in (int, float, str) or "type" in meta:
        kwargs["type"] = meta.get("type") or kind
    else:
        raise TypeError(f"{f.name}: no command-line form for {hint!r}")
    if "choices" in meta:
        kwargs["choices"] = tuple(meta["choices"])
    default = f.default if f.default is not dataclasses.MISSING else None
    if isinstance(default, tuple):
        default = " ".join(map(str, default)) or "none"
    kwargs["help"] = f"{text} (default: {default})".replace("%", "%%")
    return names, kwargs


def _add_config_flags(name: str, p: argparse.ArgumentParser) -> None:
    cls = _config_class(name)
    hints = typing.get_type_hints(cls)
    g = p.add_argument_group("settings (unset: the experiment's defaults for the data set)")
    for f in dataclasses.fields(cls):
        names, kwargs = field_argument(f, hints[f.name])
        g.add_argument(*names, **kwargs)


def given_settings(cls: type, a: argparse.Namespace) -> dict[str, Any]:
    """The config fields set on the command line, as the config wants them (tuples; a field's
    `none_if` value as None)."""
    given = {}
    for f in dataclasses.fields(cls):
        if hasattr(a, f.name):
            value = getattr(a, f.name)
            if isinstance(value, list):
                value = tuple(value)
            if "none_if" in f.metadata and value == f.metadata["none_if"]:
                value = None
            given[f.name] = value
    return given


# Classes of the built-in data sets, so that settings naming classes are checked up front.
_KNOWN_CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10, "kmnist": 10, "letter": 26}


def _check_before_work(cfg: Any, given: dict[str, Any]) -> None:
    """What every experiment would otherwise find out only once it has trained something:
    its settings (its own checks first, for their messages), the device, the data set's
    name and the folders it writes."""
    import inspect

    from ..distill.data import DATASETS
    from ..distill.trainer import TrainConfig

    if "num_classes" in inspect.signature(cfg.validate).parameters:
        cfg.validate(num_classes=_KNOWN_CLASSES.get(cfg.dataset))
    else:
        cfg.validate()
    if hasattr(cfg, "check_packages"):  # optional extras an experiment needs
        cfg.check_packages()
    checks.finite_settings(given)
    checks.widths_fit(given)
    checks.device(cfg.device)
    own = getattr(type(cfg), "DATASETS", None)  # an experiment with data sets of its own
    if own is not None:
        if cfg.dataset not in own:
            raise ValueError(f"unknown dataset {cfg.dataset!r}; known: {', '.join(own)}")
    elif cfg.dataset not in DATASETS and not str(cfg.dataset).endswith(".npz"):
        raise ValueError(f"unknown dataset {cfg.dataset!r}; known: {sorted(DATASETS)} or a "
                         ".npz file")
    shared = {k: getattr(cfg, k) for k in ("batch_size", "lr", "optimizer", "seed")
              if hasattr(cfg, k)}
    TrainConfig(**shared).validate()
    checks.out_dir(cfg.out)
    if getattr(cfg, "report_dir", None) is not None:
        checks.out_dir(cfg.report_dir, "--report-dir")


def run(a: argparse.Namespace) -> int:
    if a.experiment in CUSTOM:
        return CUSTOM[a.experiment][1](a)
    exp = EXPERIMENTS[a.experiment]
    module = exp.load()
    cls = getattr(module, exp.config)
    given = given_settings(cls, a)
    dataset = given.pop("dataset", next(f.default for f in dataclasses.fields(cls)
                                        if f.name == "dataset"))
    given.setdefault("out", f"runs/{a.experiment}/{dataset_name(dataset)}")
    cfg = module.config_from(dataset, **given)
    _check_before_work(cfg, given)
    results = module.run(cfg)
    print("\n".join(module.summary(results, cfg)))
    return 0
