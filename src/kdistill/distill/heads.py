"""Finding a model's output layer and the features that feed it, for any architecture.

The bias fix and the specialists both edit the output layer of a trained model. Rather than
assume a layout (`MLP.net[-1]`), they name the layer (`"head"`, `"classifier.5"`) or take the
model's last nn.Linear, and read its input through a forward pre-hook, so any registered model
whose logits come out of one layer works.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["output_layer", "layer_inputs", "replace_module"]


def output_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """(name, module) of the layer called `name`, or of the model's last nn.Linear by default."""
    modules = dict(model.named_modules())
    if name is not None:
        every_path = dict(model.named_modules(remove_duplicate=False))  # `net.3` as well as `head`
        if not isinstance(name, str) or not name or name not in every_path:
            linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
            raise ValueError(f"the model has no module named {name!r} (its nn.Linear layers: "
                             f"{', '.join(linears) or 'none'})")
        return name, every_path[name]
    linears = [(n, m) for n, m in modules.items() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer: name its output "
                         f"layer with head=")
    return linears[-1]


@torch.no_grad()
def layer_inputs(model: nn.Module, layer: nn.Module, x: torch.Tensor,
                 batch_size: int = 4096) -> torch.Tensor:
    """What `layer` receives when the model runs on `x` (eval mode, batches, float32 on CPU).

    A forward pre-hook records the layer's first positional input; the model's train/eval mode
    is restored afterwards and the hook removed even when the forward pass fails."""
    seen: list[torch.Tensor] = []

    def record(_module: nn.Module, args: tuple) -> None:
        seen.append(args[0].detach().float().cpu())

    was_training = model.training
    model.eval()
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    handle = layer.register_forward_pre_hook(record)
    chunks = []
    try:
        for i in range(0, len(x), batch_size):
            seen.clear()
            model(x[i:i + batch_size].to(device))
            if len(seen) != 1:
                raise ValueError(f"the output layer ran {len(seen)} times in one forward pass "
                                 f"(expected once): cannot tell which input feeds the logits")
            chunks.append(seen[0])
    finally:
        handle.remove()
        model.train(was_training)
    if not chunks:
        raise ValueError("cannot read layer inputs of an empty data set")
    return torch.cat(chunks)


def replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> int:
    """Put `new` wherever `old` sits in `model` (every path: MLP holds its head twice, as
    `head` and `net[-1]`); returns how many places were changed."""
    places = [name for name, m in model.named_modules(remove_duplicate=False)
              if m is old and name]
    for name in places:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, new)
    return len(places)
