"""What each league cell learns from, so the teacher runs once per transfer set and never per batch:
methods that read only logits take the teacher's cached logits; methods that read its features take
a view cache (distill/view_cache.py) of exactly the layers they name, with K = 1 view (the students
train without augmentation), memory-mapped under `<out>/cache/`. With the students' jitter and K =
`views` > 1, every distilled cell reads a view cache of K shifted views of each image (its logits,
and the layers it names), replaying one view per example per epoch. Methods that name the same
layers share one cache; a cache is validated by its key and checksums and rebuilt only when they no
longer match. Where the view cache cannot serve a cell the teacher runs online, and the report says
so per cell (read back from the checkpoint's identity): a student recipe with augmentation and K = 1
(a one-view cache would freeze its shifts), or features larger on disk than `view_cache_gb` (e.g.
attention transfer's three maps of a wide teacher over all 55,000 images; on a GPU the online
teacher is cheap anyway)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..distill.augment import Jitter
from ..distill.cache import cached_teacher_logits
from ..distill.hooks import FeatureHooks
from ..distill.methods import Method
from ..distill.models import build_model
from ..distill.view_cache import ViewCache, cached_teacher_views

__all__ = ["LOGITS", "VIEWS", "ONLINE", "LABELS", "source_for", "planned_source",
           "trained_from", "TeacherOutputs"]

LOGITS, VIEWS, ONLINE, LABELS = "cached logits", "cached views", "online", "labels only"
_FLOATS: dict[str, int] = {}


def source_for(method: Method, recipe, cache_gib: float = 0.0,
               limit_gib: float = math.inf, views: int = 1) -> tuple[str, str]:
    """(how a cell of `method` trained with `recipe` reads the teacher, why); `cache_gib`:
    the size its view cache would have; `views`: K, the shifted views a cache would hold."""
    if not method.needs_teacher:
        return LABELS, "the plain student"
    augmented = recipe.augment() is not None
    if not method.teacher_layers() and not augmented:
        return LOGITS, "reads only the teacher's logits"
    if augmented and views == 1:
        return ONLINE, ("its inputs are augmented online, which a one-view cache cannot "
                        "replay")
    if cache_gib > limit_gib:
        return ONLINE, (f"its cached teacher outputs would take {cache_gib:.1f} GiB, over "
                        f"view_cache_gb = {limit_gib:g}")
    what = (f"teacher layers {sorted(method.teacher_layers())}" if method.teacher_layers()
            else "the teacher's logits")
    return VIEWS, what + (f" on {views} cached shifted views" if augmented else
                          " from the view cache")


def feature_values(spec: dict, example: torch.Tensor, layers: tuple[str, ...]) -> int:
    """Values per example in the teacher's `layers` (from the architecture alone)."""
    key = json.dumps([spec, list(example.shape), layers], sort_keys=True)
    if key not in _FLOATS:
        model = build_model(spec).eval()
        with FeatureHooks(model, list(layers), "teacher") as hooks, torch.no_grad():
            model(example[None])
            _FLOATS[key] = sum(f[0].numel() for f in hooks.take().values())
    return _FLOATS[key]


def planned_source(plan, student: str, method: Method, recipe) -> tuple[str, str]:
    """source_for with the size on disk of the view cache `method` would read."""
    layers = tuple(sorted(set(method.teacher_layers())))
    views = plan.cfg.views
    if not method.needs_teacher or (not layers and views == 1):
        return source_for(method, recipe, views=views)
    width = 4 if plan.cfg.view_dtype == "float32" else 2
    values = (feature_values(plan.teacher_spec, plan.fit.x[0], layers) if layers
              else plan.teacher_spec["num_classes"])  # logits only, on K views
    size = len(plan.transfer[student]) * views * width * values / 2 ** 30
    return source_for(method, recipe, size, plan.cfg.view_cache_gb, views)


def trained_from(ckpt: dict) -> str:
    """How a finished cell read the teacher, from its checkpoint's run identity (so a cell
    trained online by an older league still reports 'online')."""
    ident = ckpt.get("identity") or {}
    if ident.get("teacher_views"):
        return VIEWS
    if ident.get("extra.teacher_logits"):
        return LOGITS
    if ident.get("extra.teacher"):
        return ONLINE
    return LABELS


class TeacherOutputs:
    """The teacher's cached outputs per student transfer set, each built on first use (or
    found valid on disk) and then shared by every cell of this process."""

    def __init__(self, plan, teacher: nn.Module, device: torch.device,
                 log: Callable[[str], None] = lambda s: None) -> None:
        self.plan, self.teacher, self.device, self.log = plan, teacher, device, log
        self._logits: dict[str, torch.Tensor] = {}
        self._views: dict[tuple[str, tuple[str, ...]], ViewCache] = {}

    def folder(self, student: str, layers: tuple[str, ...] | None = None) -> Path:
        """`<out>/cache/<teacher>-<transfer set>` for the logits; with `layers` (a view cache)
        `...-views<K>[-j<pixels>]-<layers or logits>`."""
        tag = self.plan.folder[student].rsplit("-e", 1)[0]
        name = f"{self.plan.teacher_name}-{tag}"
        cfg = self.plan.cfg
        if layers is not None and cfg.student_jitter and cfg.views > 1:
            name += f"-views{cfg.views}-j{cfg.student_jitter}-{'+'.join(layers) or 'logits'}"
        elif layers:
            name += f"-views1-{'+'.join(layers)}"
        return self.plan.out / "cache" / name

    def logits(self, student: str) -> torch.Tensor:
        if student not in self._logits:
            self._logits[student] = torch.as_tensor(cached_teacher_logits(
                self.teacher, self.plan.transfer[student].x, self.folder(student),
                device=self.device, batch_size=1024).logits)
        return self._logits[student]

    def views(self, student: str, method: Method) -> ViewCache:
        layers = tuple(sorted(set(method.teacher_layers())))
        key = (student, layers)
        if key not in self._views:
            cfg = self.plan.cfg
            cache = cached_teacher_views(
                self.teacher, self.plan.transfer[student], self.folder(student, layers),
                views=cfg.views, augment=Jitter(cfg.student_jitter) if cfg.student_jitter
                else None, layers=layers, seed=cfg.seed,
                dtype=self.plan.cfg.view_dtype, device=self.device, batch_size=1024)
            self.log(f"teacher views {cache.path.name}: "
                     + (f"built ({cache.reason})" if cache.rebuilt else "reused")
                     + f", {cache.nbytes / 2 ** 20:.1f} MiB")
            self._views[key] = cache
        return self._views[key]

    def for_cell(self, student: str, method: Method, recipe) -> dict:
        """fit_run's teacher arguments for one cell."""
        how, _ = planned_source(self.plan, student, method, recipe)
        if how == LOGITS:
            return {"teacher_logits": self.logits(student)}
        if how == VIEWS:
            return {"teacher_views": self.views(student, method)}
        return {"teacher": self.teacher} if how == ONLINE else {}

    def build_all(self, students, methods_of) -> None:
        """Every cache the selected cells will read, so parallel cells only read them."""
        for s in students:
            for method, recipe in methods_of(s):
                how = planned_source(self.plan, s, method, recipe)[0]
                if how == LOGITS:
                    self.logits(s)
                elif how == VIEWS:
                    self.views(s, method)
