"""Exporting a trained model for use without kdistill's pickles: safetensors or ONNX.

safetensors: the weights as a safetensors file plus a JSON spec beside it, `<file>.json`, with
the registry spec (`{"name": ..., **kwargs}`), every state-dict key's shape and dtype, the
kdistill version and the SHA-256 of the weights file. Loading rebuilds the model through
`build_model(spec)` and refuses a file whose hash or tensors do not match, so nothing is
unpickled and a swapped or damaged file is caught before it is used.

ONNX: torch.onnx.export with a dynamic batch axis, then checked with onnxruntime on the given
inputs (the file is kept only when the largest logit difference is within tolerance), with the
latency of both runtimes. The dynamo exporter (torch.export + onnxscript) is the default: the
TorchScript exporter still works in torch 2.13 but is deprecated and announced for removal.
onnx, onnxruntime, onnxscript and safetensors are the optional extra `kdistill[export]`.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_write, atomic_write_json, sha256_file
from .checkpoint import CheckpointError
from .models import build_model

__all__ = ["export_safetensors", "load_safetensors", "spec_path", "export_onnx", "OnnxExport",
           "require_extra", "FORMAT"]

FORMAT = "kdistill-safetensors"
_FORMAT_VERSION = 1
_ONNX_MODULES = ("onnx", "onnxruntime", "onnxscript")


def require_extra(*modules: str) -> None:
    """Raise one ImportError naming every missing module of the `export` extra."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"export needs {', '.join(missing)} (not installed): "
                          f"pip install 'kdistill[export]'")


def spec_path(path: str | os.PathLike) -> Path:
    """The JSON spec that travels with a safetensors file: `model.safetensors.json`."""
    return Path(f"{os.fspath(path)}.json")



def _layout(state: dict[str, torch.Tensor]) -> dict[str, dict]:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in state.items()}


def _split_aliases(state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, str]]:
    """Tensors stored once: a layer registered twice (MLP's `head` is also `net[-1]`) appears
    under two keys sharing memory, which safetensors refuses; the second key becomes an alias."""
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for key, t in state.items():
        ident = (t.data_ptr(), t.dtype, tuple(t.shape), t.stride(), t.device)
        if t.numel() and ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        unique[key] = t
    return unique, aliases


def export_safetensors(model: nn.Module, spec: dict, path: str | os.PathLike,
                       extra: dict | None = None) -> Path:
    """Write the model's weights to `path` (safetensors) and its spec to `spec_path(path)`.

    The spec must rebuild this model (same keys and shapes), so the pair loads anywhere kdistill
    and the architecture's registration are available. `extra` (plain JSON, e.g. a tabular
    mimic's input encoding and class names) is stored in the spec beside the keys it cannot
    replace. Returns the path of the JSON spec."""
    from safetensors.torch import save

    path = Path(path)
    try:
        portable = json.loads(json.dumps(spec))
    except TypeError as exc:
        raise ValueError(f"the model spec is not plain JSON ({exc})") from None
    state = {k: v.detach() for k, v in model.state_dict().items()}
    expected = _layout(build_model(portable).state_dict())
    got = _layout(state)
    if {k: v["shape"] for k, v in expected.items()} != {k: v["shape"] for k, v in got.items()}:
        raise ValueError(f"the spec {portable.get('name')!r} does not rebuild this model: its "
                         f"state-dict keys or shapes differ")
    unique, aliases = _split_aliases(state)
    tensors = {k: v.cpu().contiguous() for k, v in unique.items()}
    blob = save(tensors, metadata={"format": FORMAT})  # bytes: the file keeps usual permissions
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
    from .. import __version__

    meta = {"format": FORMAT, "format_version": _FORMAT_VERSION, "kdistill_version": __version__,
            "torch_version": torch.__version__, "model_spec": portable,
            "weights": path.name, "sha256": sha256_file(path), "tensors": got, "aliases": aliases}
    return atomic_write_json(spec_path(path), {**json.loads(json.dumps(extra or {})), **meta})


def load_safetensors(path: str | os.PathLike, device: str | torch.device = "cpu",
                     ) -> tuple[nn.Module, dict]:
    """Rebuild a model written by `export_safetensors`: (model in eval mode, spec). Refuses a
    weights file whose SHA-256, keys, shapes or dtypes differ from its JSON spec."""
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = spec_path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if not meta_path.is_file():
        raise CheckpointError(f"{path} has no spec beside it ({meta_path.name} is missing)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path} is not readable JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not a kdistill safetensors spec")
    digest = sha256_file(path)
    if digest != meta.get("sha256"):
        raise CheckpointError(f"{path} does not match its spec: sha256 {digest[:12]}... != "
                              f"{str(meta.get('sha256'))[:12]}... (changed or damaged)")
    aliases: dict[str, str] = meta.get("aliases", {})
    layout: dict = meta.get("tensors", {})
    state = load_file(path, device=str(device))
    stored = {k: v for k, v in layout.items() if k not in aliases}
    if _layout(state) != stored:
        raise CheckpointError(f"{path}: the stored tensors' keys, shapes or dtypes differ from "
                              f"its spec")
    spec = meta["model_spec"]
    model = build_model(spec)
    built = _layout(model.state_dict())
    if {k: v["shape"] for k, v in built.items()} != {k: v["shape"] for k, v in layout.items()}:
        raise CheckpointError(f"{path}: model {spec.get('name')!r} built from the spec has "
                              f"other state-dict keys or shapes than the file")
    for key, source in aliases.items():
        if source not in state:
            raise CheckpointError(f"{path}: alias {key} points to a missing tensor {source}")
        state[key] = state[source]
    model.load_state_dict(state, assign=True)  # assign: keep the file's dtypes exactly
    return model.to(device).eval(), spec


# ----------------------------------------------------------------------------- ONNX


@dataclass
class OnnxExport:
    """What `export_onnx` wrote and measured (latency: one process, CPU, median of repeats)."""

    path: str
    exporter: str
    opset: int
    examples: int
    repeats: int
    max_abs_diff: float
    torch_ms_per_1000: float
    onnxruntime_ms_per_1000: float

    def as_dict(self) -> dict:
        return asdict(self)


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _write_onnx(model: nn.Module, example: torch.Tensor, out: str, opset: int,
                dynamo: bool, output_name: str = "logits") -> None:
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping ..."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dynamo:
                torch.onnx.export(model, (example,), out, dynamo=True, opset_version=opset,
                                  input_names=["input"], output_names=[output_name],
                                  dynamic_shapes=({0: torch.export.Dim("batch")},),
                                  external_data=False, verbose=False)
            else:
                torch.onnx.export(model, (example,), out, dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=[output_name],
                                  dynamic_axes={"input": {0: "batch"},
                                                output_name: {0: "batch"}})
    finally:
        quiet.setLevel(level)


def export_onnx(model: nn.Module, example_inputs: torch.Tensor, path: str | os.PathLike,
                opset: int = 18, atol: float = 1e-4, repeats: int = 5, batch_size: int = 1000,
                dynamo: bool = True, output_name: str = "logits") -> OnnxExport:
    """Export to ONNX (input "input" with a dynamic batch axis, output `output_name`) and check
    it: onnxruntime's outputs on `example_inputs` must lie within `atol` of torch's, else the
    file is not written and ValueError says by how much. Both runtimes are then timed on the same
    inputs in batches of `batch_size`, one thread each as torch is set (CPU)."""
    require_extra(*_ONNX_MODULES if dynamo else _ONNX_MODULES[:2])
    import onnxruntime as ort

    x = torch.as_tensor(example_inputs).detach().cpu()
    if x.is_floating_point():  # token ids and other integer inputs keep their dtype
        x = x.float()
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"example_inputs must be a non-empty batch (n, ...), got shape "
                         f"{tuple(x.shape)}")
    net = copy.deepcopy(model).cpu().eval()  # the caller's model keeps its device and mode
    batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]

    def run_torch() -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([net(b) for b in batches])

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    result: dict = {}

    def write_and_check(tmp: str) -> None:
        _write_onnx(net, x[:2], tmp, opset, dynamo, output_name)
        session = ort.InferenceSession(tmp, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_ort():
            return [session.run(None, {name: b.numpy()})[0] for b in batches]

        got = torch.cat([torch.from_numpy(o) for o in run_ort()])
        ref = run_torch()
        if got.shape != ref.shape:
            raise ValueError(f"onnxruntime returned shape {tuple(got.shape)}, torch "
                             f"{tuple(ref.shape)}")
        diff = float((got.double() - ref.double()).abs().max())
        if not diff <= atol:
            raise ValueError(f"the ONNX model's {output_name} differ from torch's by "
                             f"{diff:.3g} > {atol:g}: not written")
        result.update(diff=diff, torch_s=_timed(run_torch, repeats), ort_s=_timed(run_ort,
                                                                                   repeats))

    path = Path(path)
    atomic_write(path, write_and_check)
    per_1000 = 1000.0 * 1000.0 / len(x)
    return OnnxExport(path=str(path), exporter="dynamo" if dynamo else "torchscript",
                      opset=opset, examples=len(x), repeats=repeats, max_abs_diff=result["diff"],
                      torch_ms_per_1000=round(result["torch_s"] * per_1000, 4),
                      onnxruntime_ms_per_1000=round(result["ort_s"] * per_1000, 4))
