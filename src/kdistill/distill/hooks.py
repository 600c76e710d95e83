"""Features by module name: forward hooks that record what named layers output, attached for a
run and removed after, without touching the model's `forward`.

Names are `model.named_modules()` paths ("blocks.2", "encoder.layer.3"); a DDP wrapper's
`module.` prefix is looked through either way. A wrong name fails at once, with the closest
existing names in the message, so it never surfaces after the first epoch.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["resolve_module", "FeatureHooks"]


def _inner(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def resolve_module(model: nn.Module, name: str, who: str = "model") -> nn.Module:
    """The submodule at path `name` (DDP-transparent), or a ValueError naming close matches."""
    model = _inner(model)
    if name.startswith("module.") and not hasattr(model, "module"):
        name = name[len("module."):]
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
    hint = f"closest: {', '.join(close)}" if close else f"it has: {', '.join(names[:12])}" + (
        ", ..." if len(names) > 12 else "")
    raise ValueError(f"the {who} ({type(model).__name__}) has no module named {name!r}; {hint}")


def _first_tensor(output):
    """A layer's output as one tensor: transformer blocks often return (hidden, extras...)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if hasattr(output, "last_hidden_state"):
        return output.last_hidden_state
    raise ValueError(f"a hooked layer returned {type(output).__name__}, not a tensor")


class FeatureHooks:
    """Context manager: while open, `self.features[name]` is the latest output of each named
    layer (kept in the autograd graph, so losses on student features train the student)."""

    def __init__(self, model: nn.Module, names: Iterable[str], who: str = "model") -> None:
        self.names = list(dict.fromkeys(names))
        self.modules = {n: resolve_module(model, n, who) for n in self.names}
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> FeatureHooks:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._recorder(name)))
        return self

    def _recorder(self, name: str):
        def hook(_module, _inputs, output) -> None:
            self.features[name] = _first_tensor(output)
        return hook

    def take(self) -> dict[str, torch.Tensor]:
        """This forward pass's features; cleared so a stale one is never read twice."""
        out, self.features = self.features, {}
        missing = [n for n in self.names if n not in out]
        if missing:
            raise ValueError(f"layers {missing} did not run in the forward pass (a module "
                             "that forward never calls?)")
        return out

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.features = {}
