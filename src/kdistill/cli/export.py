"""`kdistill export`: a checkpoint as safetensors (+ JSON spec) or ONNX (checked, timed).

Every check on the user's input (the format's packages, the output path, the checkpoint, the
data set) runs before anything is exported; a problem is a ValueError / CheckpointError, which
`kdistill.cli.main` turns into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json

from . import checks

__all__ = ["add_parser", "run"]

_RANDOM_ROWS = 1000


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export a checkpoint as ONNX or safetensors",
        description="Write a checkpoint's model as safetensors (weights, plus FILE.json with the "
                    "model spec, tensor layout and SHA-256; no pickles) or as ONNX (dynamic "
                    "batch axis), checked against torch with onnxruntime and timed. Needs the "
                    "optional extra: pip install 'kdistill[export]'.")
    p.add_argument("checkpoint", help="checkpoint.pt (from kdistill train / distill), or a "
                                      "tabular mimic.pt (from kdistill compress)")
    p.add_argument("--format", required=True, choices=["onnx", "safetensors"])
    p.add_argument("--out", required=True, help="file to write (e.g. model.onnx)")
    p.add_argument("--dataset", nargs="?", const="digits", default=None,
                   help="ONNX check inputs: this data set's test split (--dataset alone: "
                        "digits); without it, 1,000 random normal inputs of the model's shape")
    p.add_argument("--data-dir", default=None, help="folder holding the data set's files")
    return p


def _input_shape(spec: dict) -> tuple[int, ...]:
    if spec.get("name") == "mlp":
        return (int(spec["in_features"]),)
    if spec.get("name") in ("cnn", "resnet", "wrn"):
        size = int(spec.get("image_size", 28))
        return (int(spec.get("in_channels", 1)), size, size)
    raise ValueError(f"cannot tell the input shape of model {spec.get('name')!r} from its "
                     f"spec: pass --dataset")


def _example_inputs(a, spec: dict):
    """(inputs, description): the named data set's test split, or random normal inputs."""
    import torch

    if a.dataset is None:
        shape = _input_shape(spec)
        x = torch.randn(_RANDOM_ROWS, *shape, generator=torch.Generator().manual_seed(0))
        return x, f"{_RANDOM_ROWS} random normal inputs of shape {list(shape)} (no --dataset)"
    from ..distill.data import load_dataset

    test = load_dataset(a.dataset, a.data_dir).test
    if spec.get("num_classes") not in (None, test.num_classes):
        raise ValueError(f"the model has {spec['num_classes']} classes, {a.dataset} has "
                         f"{test.num_classes}")
    if spec.get("name") == "mlp" and spec.get("in_features") != test.in_features:
        raise ValueError(f"the model takes {spec['in_features']} inputs, {a.dataset} has "
                         f"{test.in_features} ({list(test.input_shape)})")
    if spec.get("name") == "cnn" and tuple(_input_shape(spec)) != test.input_shape:
        raise ValueError(f"the model takes inputs of shape {list(_input_shape(spec))}, "
                         f"{a.dataset} has {list(test.input_shape)}")
    return test.x, f"{a.dataset} test split ({len(test)} examples)"


def _is_mimic(path: str) -> bool:
    """A tabular mimic from kdistill compress (its own format), not a train/distill checkpoint."""
    from ..distill.checkpoint import CheckpointError, load_checkpoint
    from ..tabular.mimic import MIMIC_FORMAT

    try:
        return load_checkpoint(path).get("format") == MIMIC_FORMAT
    except CheckpointError:
        return False  # load_model says what is wrong with it


def _export_mimic(a, out) -> int:
    """The mimic's network (with its softmax, for ONNX), the input encoding in OUT.json."""
    from ..distill.export import spec_path
    from ..tabular.mimic import load_mimic

    if a.dataset is not None:
        raise ValueError("--dataset is for image models: a mimic's ONNX file is checked on "
                         "1,000 random encoded rows")
    load_mimic(a.checkpoint).export(out, format=a.format)
    meta = json.loads(spec_path(out).read_text(encoding="utf-8"))
    parts = meta if a.format == "onnx" else meta["mimic"]
    print(json.dumps({"format": a.format, "out": str(out), "spec": str(spec_path(out)),
                      "model": "tabular mimic", "classes": parts["classes"],
                      "max_abs_diff": meta.get("max_abs_diff")}))
    return 0


def run(a) -> int:
    from ..distill import export
    from ..distill.checkpoint import load_model

    try:
        export.require_extra(*(("onnx", "onnxruntime", "onnxscript") if a.format == "onnx"
                               else ("safetensors",)))
    except ImportError as exc:
        raise ValueError(str(exc)) from None
    out = checks.out_file(a.out)
    if _is_mimic(a.checkpoint):
        return _export_mimic(a, out)
    model, spec = load_model(a.checkpoint)
    if a.format == "safetensors":
        meta_path = export.export_safetensors(model, spec, out)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        print(json.dumps({"format": "safetensors", "out": str(out), "spec": str(meta_path),
                          "model": spec.get("name"), "tensors": len(meta["tensors"]),
                          "sha256": meta["sha256"]}))
        return 0
    x, source = _example_inputs(a, spec)
    r = export.export_onnx(model, x, out)
    print(json.dumps({"format": "onnx", "out": str(out), "model": spec.get("name"),
                      "inputs": source, "exporter": r.exporter, "opset": r.opset,
                      "max_abs_diff": r.max_abs_diff,
                      "latency": f"ms per 1,000 examples (CPU, median of {r.repeats}): torch "
                                 f"{r.torch_ms_per_1000:.3f}, onnxruntime "
                                 f"{r.onnxruntime_ms_per_1000:.3f}"}))
    return 0
