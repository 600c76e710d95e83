"""The league's plan: the students, the methods' layer pairs, which cells exist and which a
`cells` setting selects, the students' transfer sets, each run's name and recipe, and a
finished cell's row read back from its checkpoint (so training and `assemble_only` report the
same numbers)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..distill import methods
from ..distill.checkpoint import load_checkpoint
from ..distill.data import ArrayDataset
from ..distill.models import build_model
from .common import mlp_spec, train_config
from .league_teacher import trained_from

__all__ = ["METHODS", "STUDENTS", "LAYERS", "SKIPPED", "Plan", "parse_cells", "select_cells",
           "stratified_subset", "method_for", "cell_row"]

METHODS = ("kd", "kd_ls", "logit_matching", "dkd", "dkd_ls", "dist", "fitnets", "at", "pkt",
           "sp", "rkd", "crd")
STUDENTS = ("resnet8", "mlp800")

# (student layer, teacher layer) of every method that reads features; the others read logits.
# The teacher's names are WRN's: stage1..3 (pre-activation maps), pool (the pooled final
# BN-ReLU features, the penultimate embedding).
_STAGES = ("stage1", "stage2", "stage3")
LAYERS: dict[str, dict[str, tuple]] = {
    "resnet8": {"fitnets": ("stage2", "stage2"),      # the paper's middle-layer hint
                "at": (_STAGES, _STAGES),               # the end of every group
                "pkt": ("pool", "pool"), "sp": ("stage3", "stage3"),
                "rkd": ("pool", "pool"), "crd": ("pool", "pool")},
    "mlp800": {"fitnets": ("hidden_layers.1", "pool"), "pkt": ("hidden_layers.1", "pool"),
               "sp": ("hidden_layers.1", "pool"), "rkd": ("hidden_layers.1", "pool"),
               "crd": ("hidden_layers.1", "pool")},
}
SKIPPED: dict[str, dict[str, str]] = {
    "mlp800": {"at": "attention transfer pairs spatial feature maps; the MLP has none (its "
                     "hidden units have no positions that correspond to the teacher's)"},
}


def parse_cells(spec: str) -> tuple[str, object]:
    """('all', None), ('teacher', None), ('shard', (i, n)) or ('patterns', [...])."""
    spec = spec.strip()
    if not spec:
        return "all", None
    if spec == "teacher":
        return "teacher", None
    if "/" in spec:
        try:
            i, n = (int(v) for v in spec.split("/"))
        except ValueError:
            raise ValueError(f"a shard is 'i/n' with integers, got {spec!r}") from None
        if not 0 <= i < n:
            raise ValueError(f"a shard 'i/n' needs 0 <= i < n, got {spec!r}")
        return "shard", (i, n)
    patterns = [p.strip() for p in spec.split(",") if p.strip()]
    for p in patterns:
        if p.count(":") != 2:
            raise ValueError(f"a cell pattern is 'student:method:seed' (* allowed), got {p!r}")
    return "patterns", patterns


def select_cells(cells: list[tuple[str, str, int]], spec: str) -> list[tuple[str, str, int]]:
    """The cells `spec` names, in the canonical order (see LeagueConfig.cells)."""
    kind, arg = parse_cells(spec)
    if kind == "all":
        return list(cells)
    if kind == "teacher":
        return []
    if kind == "shard":
        i, n = arg
        return cells[i::n]
    return [c for c in cells
            if any(fnmatch.fnmatchcase(f"{c[0]}:{c[1]}:{c[2]}", p) for p in arg)]


def stratified_subset(data: ArrayDataset, n: int, seed: int) -> ArrayDataset:
    """A fixed `n` examples of `data` with its class shares: a seeded shuffle, then each
    example ranked by its position within its class over the class size."""
    if n >= len(data):
        return data
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    y = data.y[perm]
    rank = torch.empty(len(data), dtype=torch.float64)
    for c in y.unique():
        where = y == c
        rank[where] = torch.arange(int(where.sum()), dtype=torch.float64) / int(where.sum())
    keep = perm[torch.argsort(rank, stable=True)[:n]]
    return data.subset(keep.sort().values, f"{data.name}-stratified-{n}")


def _student_spec(name: str, data: ArrayDataset, width: int) -> dict:
    if name == "mlp800":
        return mlp_spec(data, (800, 800))
    c, h = data.input_shape[0], data.input_shape[1]
    return {"name": "resnet", "in_channels": c, "num_classes": data.num_classes,
            "image_size": h, "depth": 8, "width": width, "shortcut": "pad"}


def _teacher_spec(cfg, data: ArrayDataset) -> dict:
    c, h = data.input_shape[0], data.input_shape[1]
    return {"name": "wrn", "in_channels": c, "num_classes": data.num_classes, "image_size": h,
            "depth": cfg.teacher_depth, "widen_factor": cfg.teacher_width, "dropout": 0.0}


def method_for(name: str, student: str, transfer_size: int, steps: int = 0) -> methods.Method:
    """The registry's defaults, plus what a pair of architectures forces: the layers, CRD's
    memory bank of one row per transfer example, and DKD's warm-up over the first twelfth of
    the cell's `steps` (the paper's 20 of 240 epochs; without it the MLP diverges)."""
    if name == "plain":
        return methods.get("ce")
    params: dict = {}
    if name in LAYERS[student]:
        s, t = LAYERS[student][name]
        params = {"student_layer": s, "teacher_layer": t}
    if name == "crd":
        params["num_examples"] = transfer_size
    if name in ("dkd", "dkd_ls") and steps > 0:
        params["warmup_steps"] = max(1, round(steps / 12))
    return methods.get(name, **params)


@dataclass
class Plan:
    """Everything a league run derives from its config and data: specs, transfer sets, run
    names, recipes and the canonical list of cells (seed, then student, then method)."""

    cfg: object             # a LeagueConfig
    fit: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    source: str
    out: Path
    cuda: bool

    def __post_init__(self) -> None:
        cfg = self.cfg
        side = min(self.fit.x.shape[-2:])
        for name in ("teacher_jitter", "student_jitter"):
            if 2 * getattr(cfg, name) >= side:
                raise ValueError(f"{name} {getattr(cfg, name)} would shift most of a {side}-pixel "
                                 f"image out of its frame: use at most {(side - 1) // 2}")
        self.teacher_spec = _teacher_spec(cfg, self.fit)
        self.teacher_name = (f"teacher-wrn-{cfg.teacher_depth}-{cfg.teacher_width}"
                             f"-e{cfg.teacher_epochs}-j{cfg.teacher_jitter}")
        self.seeds = [cfg.seed + i for i in range(cfg.seeds)]
        self.transfer, self.specs, self.folder = {}, {}, {}
        for s in cfg.students:
            sub = cfg.subset if s == "resnet8" and not cfg.full else None
            data = stratified_subset(self.fit, sub, cfg.seed + 777) if sub else self.fit
            self.transfer[s] = data
            self.specs[s] = _student_spec(s, self.fit, cfg.student_width)
            tag = "all" if len(data) == len(self.fit) else f"sub{len(data)}"
            arch = f"{s}w{cfg.student_width}" if s == "resnet8" else s
            aug = f"-j{cfg.student_jitter}v{cfg.views}" if cfg.student_jitter else ""
            self.folder[s] = f"{arch}-{tag}-e{cfg.epochs}{aug}"
        self.cells = [(s, m, seed) for seed in self.seeds for s in cfg.students
                      for m in ("plain", *cfg.methods) if m not in SKIPPED.get(s, {})]

    def teacher_recipe(self):
        return train_config(self.cfg, self.cfg.teacher_epochs, seed=self.cfg.seed,
                            lr=self.cfg.teacher_lr, momentum=0.9,
                            weight_decay=self.cfg.weight_decay, amp=self.cuda,
                            jitter=self.cfg.teacher_jitter)

    def student_recipe(self, seed: int):
        return train_config(self.cfg, self.cfg.epochs, seed=seed, momentum=0.9,
                            weight_decay=self.cfg.weight_decay, amp=self.cuda,
                            jitter=self.cfg.student_jitter)

    def method(self, student: str, name: str) -> methods.Method:
        """The method of a cell of `student` (see method_for), sized by its schedule."""
        n = len(self.transfer[student])
        steps = self.cfg.epochs * -(-n // self.cfg.batch_size)
        return method_for(name, student, n, steps)

    def run_name(self, cell: tuple[str, str, int]) -> str:
        s, m, seed = cell
        return f"{self.folder[s]}/{m}/seed{seed}"

    def build(self, spec: dict, init_seed: int) -> nn.Module:
        torch.manual_seed(init_seed)
        model = build_model(spec)
        if self.cuda and spec["name"] != "mlp":
            model = model.to(memory_format=torch.channels_last)
        return model


# ------------------------------------------------------------------------------- the runs


def cell_row(path: Path, recipe, method: methods.Method | None) -> dict | None:
    """A finished run's row read from its checkpoint (None if it is absent or unfinished): the
    last epoch's accuracies, the test accuracy at the epoch of best validation accuracy (the
    first such epoch), seconds per epoch, the curves and how it read the teacher. A checkpoint
    trained with other settings is one error."""
    if not path.exists():
        return None
    ckpt = load_checkpoint(path)
    want, have = recipe.config.to_dict(), ckpt.get("config", {})
    keys = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "seed")
    if any(have.get(k) != want[k] for k in keys) or (
            method is not None and ckpt.get("method") != method.describe()):
        raise ValueError(f"{path} was trained with other settings; use another --out or "
                         "--fresh")
    history = ckpt["history"]
    if int(ckpt["epoch"]) < want["epochs"]:
        return None
    test = [float(h["test_accuracy"]) for h in history]
    val = [float(h["val_accuracy"]) for h in history]
    best = max(range(len(val)), key=lambda i: (val[i], -i))
    return {"test_accuracy": test[-1], "val_accuracy": val[-1], "chosen_epoch": best + 1,
            "val_chosen_test_accuracy": test[best],
            "seconds_per_epoch": sum(float(h["seconds"]) for h in history) / len(history),
            "train_seconds": round(sum(float(h["seconds"]) for h in history), 1),
            "test_accuracy_curve": test, "val_accuracy_curve": val,
            "teacher_outputs": trained_from(ckpt)}
