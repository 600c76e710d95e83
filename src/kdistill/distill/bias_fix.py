"""The bias fix applied to a model: prior-matching offsets added to its output layer's bias.

A separate module rather than a function in `bias.py`, because `bias.py` is pure numpy and
promises to import nothing else from kdistill (the tabular half and its tests use it without
torch); this one needs torch, the teacher runner and the output-layer lookup.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .bias import ClassesLike, match_prior
from .heads import output_layer
from .teachers import run_teacher

__all__ = ["fix_output_bias"]

_CHECK_ROWS = 64  # inputs rerun after the shift to confirm the logits moved by the offsets


def fix_output_bias(model: nn.Module, inputs: torch.Tensor, prior: np.ndarray,
                    classes: ClassesLike | None = None, head: str | None = None,
                    device: str | torch.device = "cpu") -> np.ndarray:
    """Shift the output biases in place so that the model's mean prediction on `inputs`
    (unlabelled) equals `prior` (SPEC §2.4); returns the offsets added (`match_prior`'s).

    `classes`: only these classes' biases move. `head`: the module whose bias is shifted, by
    name ("head", "net.4"); default: the model's last nn.Linear. Its outputs must be the
    logits: the shift is checked on a few inputs and undone, with an error, when the logits
    did not move by the offsets. The model is moved to `device`.
    """
    name, layer = output_layer(model, head)
    bias = getattr(layer, "bias", None)
    if not isinstance(bias, torch.Tensor):
        raise ValueError(f"the output layer {name!r} ({type(layer).__name__}) has no bias to "
                         f"shift")
    model.to(device)
    logits = run_teacher(model, inputs, device=device)
    if bias.numel() != logits.shape[1]:
        raise ValueError(f"the bias of {name!r} has {bias.numel()} entries but the model "
                         f"outputs {logits.shape[1]} logits: name the output layer with head=")
    offsets = match_prior(logits.numpy(), prior, classes=classes)
    shift = torch.as_tensor(offsets, dtype=bias.dtype, device=bias.device).reshape(bias.shape)
    original = bias.detach().clone()
    with torch.no_grad():
        bias += shift
    after = run_teacher(model, inputs[:_CHECK_ROWS], device=device)
    expected = logits[:_CHECK_ROWS] + torch.as_tensor(offsets, dtype=torch.float32)
    if not torch.allclose(after, expected, rtol=1e-4, atol=1e-3):
        with torch.no_grad():
            bias.copy_(original)
        raise ValueError(f"shifting the bias of {name!r} did not shift the logits by the "
                         f"offsets: it is not the output layer (name it with head=)")
    return offsets
