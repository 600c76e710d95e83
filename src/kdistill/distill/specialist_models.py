"""Specialists built from a trained generalist (Hinton, Vinyals & Dean 2015 sec. 5; torch).

The numpy side of the specialists lives in `specialists.py` (subsets, sampling, labels) and
`specialist_combine.py` (combination); this module holds the one step that edits a model, so
those stay torch-free. Any architecture works: the output layer is named (default: the last
nn.Linear) and the features feeding it are read by a forward hook, not by assuming
`MLP.net[-1]`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .heads import layer_inputs, output_layer, replace_module

__all__ = ["specialist_from_generalist"]


@torch.no_grad()
def specialist_from_generalist(generalist: nn.Module, subset: Sequence[int] | np.ndarray,
                               inputs: torch.Tensor | None = None,
                               head: str | None = None) -> nn.Module:
    """A specialist that starts as the generalist seen through its label space.

    A deep copy of the generalist (every layer, dropout, max-norm) with a new output layer of
    len(subset) + 1 units: row i is the generalist's output row for class subset[i] (weights
    and bias), the last row is the dustbin. Ideally the dustbin logit is the log-sum-exp of the
    generalist's logits of the classes outside the subset: then the specialist's softmax is
    exactly the generalist's distribution with the outside mass pooled (SPEC §4.4's pi_m).
    Log-sum-exp is not linear in the features feeding the output layer, so:

    - with `inputs` (training inputs, no labels): the dustbin row is the least-squares fit of
      log-sum-exp(outside logits) on those features (exact when one class is outside, or
      whenever the log-sum-exp is affine in the features);
    - without: the mean of the outside rows, bias + log(number outside), i.e. mean(z_out) +
      log K, Jensen's lower bound on log-sum-exp (exact when the outside logits are equal).

    `head` names the output layer (e.g. "head", "classifier.5"); default: the last nn.Linear.
    It must be an nn.Linear with a bias whose outputs are the model's logits.
    """
    name, layer = output_layer(generalist, head)
    if not isinstance(layer, nn.Linear):
        raise ValueError(f"the output layer {name!r} must be an nn.Linear, got "
                         f"{type(layer).__name__}")
    if layer.bias is None:
        raise ValueError(f"the output layer {name!r} has no bias: the dustbin row needs one")
    num_classes = layer.out_features
    s = torch.as_tensor(np.asarray(subset), dtype=torch.long)
    if s.ndim != 1 or s.numel() == 0 or len(set(s.tolist())) != s.numel():
        raise ValueError(f"subset must be a non-empty list of distinct classes, got {s.tolist()}")
    if int(s.min()) < 0 or int(s.max()) >= num_classes:
        raise ValueError(f"subset {s.tolist()} has classes outside 0..{num_classes - 1}")
    outside = torch.ones(num_classes, dtype=torch.bool)
    outside[s] = False
    if not outside.any():
        raise ValueError("subset covers every class: the dustbin would be empty")
    w_out, b_out = layer.weight[outside].double(), layer.bias[outside].double()
    if inputs is None:
        dust_w = w_out.mean(dim=0)
        dust_b = b_out.mean() + math.log(int(outside.sum()))
    else:
        feats = layer_inputs(generalist, layer, inputs).double()
        target = torch.logsumexp(feats @ w_out.T + b_out, dim=1)
        design = torch.cat([feats, torch.ones(len(feats), 1, dtype=torch.float64)], dim=1)
        sol = torch.linalg.lstsq(design, target[:, None], driver="gelsd").solution[:, 0]
        dust_w, dust_b = sol[:-1], sol[-1]
    new_layer = nn.Linear(layer.in_features, s.numel() + 1).to(layer.weight.device,
                                                                layer.weight.dtype)
    new_layer.weight.copy_(torch.cat([layer.weight[s], dust_w[None].to(layer.weight.dtype)]))
    new_layer.bias.copy_(torch.cat([layer.bias[s], dust_b.reshape(1).to(layer.bias.dtype)]))
    specialist = copy.deepcopy(generalist)
    replace_module(specialist, specialist.get_submodule(name), new_layer)
    return specialist
