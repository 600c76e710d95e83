"""Distillation methods, one file each, behind one registry.

    kdistill.methods.available()                 -> ["ce", "dkd", "fitnets", "kd", ...]
    kdistill.methods.get("dkd", beta=4.0)         -> a DKD instance (parameters validated)
    @kdistill.methods.register("my-method")       -> adds a Method subclass

A new method is a new file here with a Method subclass, plus one line in `_BUILTIN`.
"""

from __future__ import annotations

import inspect

from .at import AT
from .base import Method, Outputs
from .ce import CrossEntropy
from .crd import CRD
from .dist import DIST
from .dkd import DKD
from .embed import Embed
from .fitnets import FitNets
from .kd import KD
from .logit_matching import LogitMatching
from .ls import DKDLS, KDLS
from .pkt import PKT
from .rkd import RKD
from .sp import SP

__all__ = ["Method", "Outputs", "available", "get", "parameters", "register", "build"]

_BUILTIN: dict[str, type[Method]] = {
    "ce": CrossEntropy,
    "kd": KD,
    "logit_matching": LogitMatching,
    "dkd": DKD,
    "fitnets": FitNets,
    "kd_ls": KDLS,
    "dkd_ls": DKDLS,
    "dist": DIST,
    "at": AT,
    "pkt": PKT,
    "sp": SP,
    "rkd": RKD,
    "crd": CRD,
    "embed": Embed,
}
_REGISTRY: dict[str, type[Method]] = dict(_BUILTIN)


def available() -> list[str]:
    return sorted(_REGISTRY)


def parameters(name: str) -> dict[str, object]:
    """The parameters `get(name, ...)` accepts, with their defaults (`inspect.Parameter.empty`
    for the required ones)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available())}")
    sig = inspect.signature(_REGISTRY[name].__init__)
    return {p: v.default for p, v in sig.parameters.items() if p != "self"}


def register(name: str):
    """Class decorator: make a Method subclass available under `name`."""
    def add(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise ValueError(f"register({name!r}) needs a Method subclass, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a method named {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return add


def get(name: str, **params) -> Method:
    """Build the method registered as `name`; unknown or missing parameters are one error."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available())}")
    cls = _REGISTRY[name]
    sig = inspect.signature(cls.__init__)
    accepted = [p for p in sig.parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"method {name!r} has no parameter {unknown[0]!r}; its parameters: "
                         f"{', '.join(accepted) or 'none'}")
    missing = [p for p, v in sig.parameters.items()
               if p != "self" and v.default is inspect.Parameter.empty and p not in params]
    if missing:
        raise ValueError(f"method {name!r} needs {', '.join(missing)} (e.g. "
                         f"--method-arg {missing[0]}=...)")
    return cls(**params)


def build(method: str | Method | None, has_teacher: bool) -> Method:
    """What `train(method=...)` accepts: a name, an instance, or None (KD with a teacher,
    cross-entropy without)."""
    if method is None:
        return get("kd" if has_teacher else "ce")
    if isinstance(method, str):
        return get(method)
    if isinstance(method, Method):
        return method
    raise ValueError(f"method must be a registry name or a Method, got {type(method).__name__}")
