"""The teacher-output cache for augmentation and feature methods: run the teacher once on K
augmented views of every example, store its logits and the features of the layers a method
reads, and train the student from them, so that no epoch waits for the teacher.

Replay. An augmentation is replayable (kdistill.distill.augment): `draw(n, generator)` gives
one row of parameters per example, `apply(batch, params)` applies exactly those rows. View v
draws the rows of all N examples at once from a generator seeded by (seed, v); the rows are
stored in the cache (`params`, (K, N, P)) and the teacher runs on `apply(x[block], rows)` over
blocks in index order. In training, each epoch's generator (seed, epoch) draws the permutation
and then one view per example (as array_batches draws its augmentation: for the whole epoch,
identical on every rank); a batch's student input is `apply(x[idx], params[view, idx])`,
recomputed from the stored rows alone, so it is the very input the teacher saw, on any rank
and after a resume. `Jitter`'s rows are its shifts; `PerExample(fn)` stores a seed per example
for any per-example augmentation. K = 1 with augment=None is the unaugmented data.

Storage: `logits.npy` (K, N, C), `features-<i>.npy` (K, N, ...) per layer, `params.npy`, and
`meta.json` with the key (fingerprints of the teacher's weights and the data, the augmentation's
describe_augment, K, seed, layers, dtype) and each array's SHA-256, verified on load; one
process at a time checks and builds (a file lock); arrays first, meta last (cache_files).

The float16 rule (dtype="auto"): a layer's features are stored as float16 when every value
fits float16's range (max |f| <= 65504); its relative rounding is then at most 2^-11. Logits are
stored as float16 only when, in addition, the largest float16 round-trip error over all views
and examples is at most 1e-3, which keeps every log-softmax(z / T) within 2e-3 at T >= 1;
otherwise (the usual case: that holds only for |z| below about 2) float32, which costs C x 4
bytes per view and example. dtype="float32" stores everything exactly; dtype="float16" stores
everything as float16 and refuses values out of its range.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import file_lock
from .adapters import LogitsKey, batch_length, call_model, logits_of, to_device
from .augment import Augment, describe_augment, is_replayable
from .batches import TrainBatch
from .cache import fingerprint_data
from .cache_files import check_npy, fingerprint_teacher, load_npy, publish, read_meta, write_npy
from .data import ArrayDataset
from .guards import freeze, unfreeze
from .hooks import FeatureHooks
from .methods import Method, Outputs
from .runtime import epoch_generator
from .teachers import Teacher

__all__ = ["ViewCache", "cached_teacher_views", "view_generator", "check_teacher_views"]

VIEW_CACHE_FORMAT = 1
FP16_MAX = 65504.0
LOGIT_FP16_TOL = 1e-3
DTYPES = ("auto", "float16", "float32")
_KEY_REASONS = (("format", "cache format changed"), ("teacher", "teacher weights changed"),
                ("data", "data changed"), ("n", "data size changed"),
                ("augment", "augmentation changed"), ("views", "number of views changed"),
                ("seed", "seed changed"), ("layers", "layers changed"),
                ("dtype", "dtype changed"), ("logits_key", "logits key changed"))


@dataclass
class ViewCache:
    """The teacher's outputs on K replayable views of every example (memory-mapped)."""

    logits: torch.Tensor               # (K, N, C)
    features: dict[str, torch.Tensor]  # layer -> (K, N, ...)
    params: torch.Tensor | None        # (K, N, P): each view's augmentation rows
    augment: Augment | None
    path: Path
    rebuilt: bool
    reason: str
    fingerprint: str                   # of the meta: the key and every array's checksum
    data_fingerprint: str

    @property
    def views(self) -> int:
        return self.logits.shape[0]

    @property
    def layers(self) -> list[str]:
        return list(self.features)

    @property
    def nbytes(self) -> int:
        arrays = [self.logits, *self.features.values()]
        arrays += [] if self.params is None else [self.params]
        return sum(a.numel() * a.element_size() for a in arrays)

    def __len__(self) -> int:
        return self.logits.shape[1]

    def replay(self, x: torch.Tensor, idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """The inputs the teacher saw for examples `idx` (rows of `x`) in views `views`."""
        inputs = x[idx.to(x.device)]
        if self.augment is None:
            return inputs
        return self.augment.apply(inputs, self.params[views, idx])

    def teacher_outputs(self, idx: torch.Tensor, views: torch.Tensor, device) -> Outputs:
        return Outputs(self.logits[views, idx].to(device).float(),
                       {k: f[views, idx].to(device).float() for k, f in self.features.items()})

    def batch(self, x, y, idx: torch.Tensor, views: torch.Tensor, n_global: int) -> TrainBatch:
        on = idx.to(x.device)
        return TrainBatch(self.replay(x, idx, views), None if y is None else y[on], on,
                          self.teacher_outputs(idx, views, x.device), n_global)

    def batches(self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int, seed: int,
                epoch: int, rank: int, world: int) -> Iterator[TrainBatch]:
        """This rank's share of each global batch of one shuffled epoch, each example in one
        view; the permutation and the views are drawn for the whole epoch on every rank."""
        gen = epoch_generator(seed, epoch)
        n = len(x)
        perm = torch.randperm(n, generator=gen)
        choice = (torch.randint(0, self.views, (n,), generator=gen) if self.views > 1
                  else torch.zeros(n, dtype=torch.long))
        for start in range(0, n, batch_size):
            glob = perm[start:start + batch_size]
            local = torch.tensor_split(torch.arange(len(glob)), world)[rank]
            yield self.batch(x, y, glob[local], choice[start:start + batch_size][local],
                             len(glob))

    def probe_batch(self, data: ArrayDataset, device) -> TrainBatch:
        idx = torch.arange(min(2, len(data)))
        return self.batch(data.x[idx].to(device), None, idx, torch.zeros_like(idx), len(idx))


def view_generator(seed: int, view: int) -> torch.Generator:
    """The generator view `view` draws its augmentation rows from."""
    digest = hashlib.sha256(f"kdistill-view|{seed}|{view}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def cached_teacher_views(
    teacher: Teacher,
    data: ArrayDataset,
    cache_dir: str | os.PathLike,
    *,
    views: int = 1,
    augment: Augment | None = None,
    layers: Sequence[str] = (),
    seed: int = 0,
    dtype: str = "auto",
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
    teacher_key: str | None = None,
    logits_key: LogitsKey = None,
) -> ViewCache:
    """The teacher's logits and `layers` features on `views` augmented views of every example
    of `data`, from `cache_dir` if its key and checksums still match, else computed and written
    there. device: where the teacher runs for the build (default: where it is); its mode and
    device are restored. `teacher_key` names a callable teacher without weights."""
    layers = _check_args(teacher, data, views, augment, layers, seed, dtype, batch_size)
    data_fp, n = fingerprint_data(data.x)
    key = {"format": VIEW_CACHE_FORMAT, "teacher": fingerprint_teacher(teacher, teacher_key),
           "data": data_fp, "n": n, "augment": describe_augment(augment), "views": views,
           "seed": seed, "layers": layers, "dtype": dtype,
           "logits_key": logits_key if isinstance(logits_key, str) or logits_key is None
           else getattr(logits_key, "__qualname__", type(logits_key).__name__)}
    cache_dir = Path(cache_dir)
    with file_lock(cache_dir / ".lock"):
        reason, meta = _mismatch(cache_dir, key)
        if reason is not None:
            meta = _build(teacher, data.x, cache_dir, key, augment, batch_size, device,
                          progress, logits_key)
        arrays = meta["arrays"]
        return ViewCache(
            load_npy(cache_dir / arrays["logits"]["file"]),
            {k: load_npy(cache_dir / arrays[f"features:{k}"]["file"]) for k in layers},
            load_npy(cache_dir / arrays["params"]["file"]) if "params" in arrays else None,
            augment, cache_dir, reason is not None, reason or "fingerprint matches",
            hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest(), data_fp)


def _check_args(teacher, data, views, augment, layers, seed, dtype, batch_size) -> list[str]:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ValueError(msg)
    need(isinstance(data, ArrayDataset), f"a view cache needs an ArrayDataset (its rows are the "
         f"examples), got {type(data).__name__}")
    need(len(data) > 0, f"{data.name} is empty")
    for name, v in (("views", views), ("seed", seed), ("batch_size", batch_size)):
        need(isinstance(v, int) and not isinstance(v, bool) and v >= (name != "seed"),
             f"{name} must be an integer >= {int(name != 'seed')}, got {v!r}")
    need(views == 1 or augment is not None,
         f"views={views} needs an augmentation: without one every view is the same input")
    need(augment is None or is_replayable(augment),
         f"the view cache replays augmentations: {describe_augment(augment)} has no "
         "draw()/apply(); wrap a per-example one as kdistill.distill.augment.PerExample(fn)")
    need(dtype in DTYPES, f"dtype must be one of {DTYPES}, got {dtype!r}")
    layers = [layers] if isinstance(layers, str) else list(layers)
    need(all(isinstance(k, str) and k for k in layers),
         f"layers must be module names, got {layers!r}")
    need(not layers or isinstance(teacher, torch.nn.Module),
         "features need a teacher module to hook; a callable teacher gives logits only")
    return list(dict.fromkeys(layers))


def _what(name: str) -> str:
    if name == "logits":
        return "logits"
    return "augmentation parameters" if name == "params" else f"features of {name[9:]!r}"


def _mismatch(cache_dir: Path, key: dict) -> tuple[str | None, dict | None]:
    """(why the cache cannot be used, None), or (None, its meta) when it can."""
    meta_path = cache_dir / "meta.json"
    if not meta_path.is_file():
        return "no cache yet", None
    have = read_meta(meta_path)
    if isinstance(have, str):
        return have, None
    for k, what in _KEY_REASONS:
        if have.get(k) != key[k]:
            return what, None
    arrays = have.get("arrays")
    want = {"logits", *(f"features:{k}" for k in key["layers"])}
    if key["augment"] is not None:
        want.add("params")
    if not isinstance(arrays, dict) or set(arrays) != want:
        return "cache metadata names other arrays", None
    for name, entry in arrays.items():
        file = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(file, str) or Path(file).name != file:
            return "cache metadata unreadable", None
        if not (cache_dir / file).is_file():
            return f"cached {_what(name)} missing", None
        reason = check_npy(cache_dir / file, entry.get("sha256"), entry.get("shape"),
                           _what(name))
        if reason is None and entry["shape"][:2] != [key["views"], key["n"]]:
            reason = f"cached {_what(name)} have the wrong shape"
        if reason is not None:
            return reason, None
    return None, have


def _build(teacher, x, cache_dir: Path, key: dict, augment, batch_size, device, progress,
           logits_key) -> dict:
    k_views, n = key["views"], key["n"]
    params = None
    if augment is not None:
        rows = [torch.as_tensor(augment.draw(n, view_generator(key["seed"], v)))
                for v in range(k_views)]
        if rows[0].dim() != 2 or len(rows[0]) != n:
            raise ValueError(f"{key['augment']}: draw({n}, generator) must give one row per "
                             f"example, (n, P); got shape {tuple(rows[0].shape)}")
        params = torch.stack(rows)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as tmp:
        raw = _run_views(teacher, x, params, augment, key, batch_size, device, progress,
                         logits_key, Path(tmp))
        dtypes = {name: _choose_dtype(name, arr, key["dtype"]) for name, arr in raw.items()}

        def write_arrays() -> dict:
            for old in [*cache_dir.glob("features-*.npy"), cache_dir / "params.npy"]:
                old.unlink(missing_ok=True)
            arrays = {}
            if params is not None:
                p = params.numpy()
                arrays["params"] = write_npy(cache_dir / "params.npy", p, p.dtype)
            for i, (name, arr) in enumerate(raw.items()):
                file = "logits.npy" if name == "logits" else f"features-{i - 1}.npy"
                arrays[name] = write_npy(cache_dir / file, arr, dtypes[name])
            return {"arrays": arrays}

        meta = publish(cache_dir / "meta.json", key, write_arrays)
        raw.clear()
    return meta


@torch.no_grad()
def _run_views(teacher, x, params, augment, key: dict, batch_size: int, device, progress,
               logits_key, tmp: Path) -> dict[str, np.ndarray]:
    """float32 memory maps in `tmp`: "logits" (K, N, C) and "features:<layer>" (K, N, ...)."""
    k_views, n, layers = key["views"], key["n"], key["layers"]
    first = next(teacher.parameters(), None) if isinstance(teacher, torch.nn.Module) else None
    dev = torch.device(device) if device is not None else (
        first.device if first is not None else torch.device("cpu"))
    steps: Any = [(v, s) for v in range(k_views) for s in range(0, n, batch_size)]
    if progress:
        from tqdm import tqdm
        steps = tqdm(steps, desc="teacher views", unit="batch", leave=False)
    out: dict[str, np.ndarray] = {}
    state = freeze(teacher, dev)
    try:
        with FeatureHooks(teacher, layers, "teacher") as hooks:
            for v, s in steps:
                xb = to_device(x[s:s + batch_size], dev)
                if augment is not None:
                    xb = augment.apply(xb, params[v, s:s + batch_size])
                logits = logits_of(call_model(teacher, xb), logits_key)
                feats = hooks.take()
                for name, t in (("logits", logits), *((f"features:{k}", feats[k])
                                                      for k in layers)):
                    t = t.detach().float().cpu()
                    if len(t) != batch_length(xb) or not torch.isfinite(t).all():
                        raise ValueError(f"the teacher's {_what(name)} on view {v}, examples "
                                         f"{s}..{s + batch_length(xb) - 1}: "
                                         + ("NaN or infinite values" if len(t) == len(xb)
                                            else f"{len(t)} rows for {len(xb)} inputs"))
                    if name not in out:
                        out[name] = np.lib.format.open_memmap(
                            tmp / f"{len(out)}.npy", mode="w+", dtype=np.float32,
                            shape=(k_views, n, *t.shape[1:]))
                    out[name][v, s:s + len(t)] = t.numpy()
    finally:
        unfreeze(teacher, state)
    return out


def _choose_dtype(name: str, arr: np.ndarray, rule: str) -> type:
    """The float16 rule of the module docstring."""
    if rule == "float32":
        return np.float32
    top, err = 0.0, 0.0
    for v in range(arr.shape[0]):
        for s in range(0, arr.shape[1], 4096):
            chunk = arr[v, s:s + 4096]
            top = max(top, float(np.abs(chunk).max(initial=0.0)))
            if name == "logits" and top <= FP16_MAX:
                back = chunk.astype(np.float16).astype(np.float32)
                err = max(err, float(np.abs(chunk - back).max(initial=0.0)))
    if rule == "float16":
        if top > FP16_MAX:
            raise ValueError(f"the teacher's {_what(name)} reach {top:.4g}, beyond float16's "
                             f"range ({FP16_MAX:g}): use dtype='auto' or 'float32'")
        return np.float16
    ok = top <= FP16_MAX and (name != "logits" or err <= LOGIT_FP16_TOL)
    return np.float16 if ok else np.float32


def check_teacher_views(cache: Any, method: Method, data: Any, teacher, teacher_logits,
                        augment) -> None:
    """What train() refuses about teacher_views=, before any work."""
    if teacher is not None or teacher_logits is not None:
        raise ValueError("pass one of teacher, teacher_logits or teacher_views, not several")
    if not isinstance(cache, ViewCache):
        raise ValueError(f"teacher_views must be a ViewCache (cached_teacher_views), got "
                         f"{type(cache).__name__}")
    if augment is not None:
        raise ValueError("teacher_views replays the augmentation its views were built with "
                         f"({describe_augment(cache.augment)}): drop augment=")
    if not isinstance(data, ArrayDataset):
        raise ValueError("teacher_views needs the training data as an ArrayDataset (the "
                         f"cache's rows are its examples), got {type(data).__name__}")
    if len(data) != len(cache):
        raise ValueError(f"the view cache holds {len(cache)} examples but {data.name} has "
                         f"{len(data)}")
    if fingerprint_data(data.x)[0] != cache.data_fingerprint:
        raise ValueError(f"the view cache was built on other inputs than {data.name}'s")
    missing = [k for k in method.teacher_layers() if k not in cache.features]
    if missing:
        raise ValueError(f"{method.name} reads teacher layers {missing}, which the view cache "
                         f"does not hold (it holds {cache.layers}): build it with "
                         f"layers={method.teacher_layers()}")
