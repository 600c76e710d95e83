"""A fitted mimic as files other runtimes read: ONNX (onnxruntime) or safetensors + JSON.

Both formats carry the network only; the input encoding (standardization, one-hot categories,
missing-value fills), the class names and the target column travel in a JSON file beside it,
``<file>.json``, so nothing is unpickled and a consumer can rebuild the inputs:
``TabularEncoder.from_dict(spec["encoder"]).transform(frame)`` gives the float32 matrix the
network takes, in the order of ``spec["encoder"]["columns"]``.

ONNX: the graph maps encoded rows (input ``"input"``, float32, a dynamic batch axis) to class
probabilities (output ``"probabilities"``, softmax included), written only when onnxruntime
reproduces torch's probabilities within ``atol`` (:func:`kdistill.distill.export.export_onnx`).
safetensors: :func:`kdistill.distill.export.export_safetensors` (SHA-256 and tensor layout in
the spec), with the mimic's parts under ``"mimic"``; :func:`load_safetensors_parts` reads it
back for :func:`kdistill.tabular.mimic.load_mimic`.

This module works on the parts of a mimic (its network and a dict), not on the classifier, so
that :mod:`kdistill.tabular.mimic` imports it and not the other way round.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..distill import export
from ..distill.checkpoint import CheckpointError
from ..files import atomic_write_json, sha256_file

__all__ = ["export_onnx", "export_safetensors", "load_safetensors_parts", "ONNX_FORMAT",
           "ONNX_OUTPUT"]

ONNX_FORMAT = "kdistill-mimic-onnx/1"
ONNX_OUTPUT = "probabilities"


def export_onnx(model: nn.Module, parts: dict, path: str | os.PathLike,
                example: torch.Tensor | None = None, atol: float = 1e-5) -> Path:
    """The network with its softmax as ONNX, checked on ``example`` (encoded rows; default
    1,000 standard-normal rows), plus ``<path>.json`` with the encoding and classes."""
    path = Path(path)
    if example is None:
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(1000, int(parts["model_spec"]["in_features"]), generator=generator)
    net = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    result = export.export_onnx(net, example, path, atol=atol, output_name=ONNX_OUTPUT)
    atomic_write_json(export.spec_path(path), {
        **{k: v for k, v in parts.items() if k != "format"},
        "format": ONNX_FORMAT, "mimic_format": parts["format"], "onnx": path.name,
        "sha256": sha256_file(path), "input": "input", "output": ONNX_OUTPUT,
        "opset": result.opset, "max_abs_diff": result.max_abs_diff,
        "usage": "inputs: TabularEncoder.from_dict(spec['encoder']).transform(frame) "
                 "(kdistill.tabular.encoding); output columns: spec['classes']"})
    return path


def export_safetensors(model: nn.Module, parts: dict, path: str | os.PathLike) -> Path:
    """Weights as safetensors, ``<path>.json`` with the spec, hash and the mimic's parts."""
    export.export_safetensors(model, parts["model_spec"], path, extra={"mimic": parts})
    return Path(path)


def load_safetensors_parts(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(network, parts) from :func:`export_safetensors`'s files; the hash is checked first."""
    model, _ = export.load_safetensors(path)
    meta = json.loads(export.spec_path(path).read_text(encoding="utf-8"))
    parts = meta.get("mimic")
    if not isinstance(parts, dict):
        raise CheckpointError(f"{path} holds a network without a tabular mimic's encoding "
                              f"(its spec has no 'mimic' entry): not a mimic export")
    return model, parts
