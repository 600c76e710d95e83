"""What a distillation method is: a small nn.Module that names the outputs it needs, owns any
trainable parts, and turns student and teacher outputs into named loss terms.

The trainer sums the terms, logs each per epoch and checks each for NaN. A term is either a
vector of per-example losses (the trainer sums it and divides by the global batch size, which
keeps several ranks exactly equal to one process) or a scalar mean over the local batch (for
relation-based losses that only exist per batch).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..labels import hard_cross_entropy
from ..losses import upcast

__all__ = ["Outputs", "Method", "check_positive", "check_nonneg", "check_flag", "check_layer",
           "hard_term", "flat_features", "LayerPairMethod"]


@dataclass
class Outputs:
    """A model's outputs on one batch: logits and the features of the layers a method named."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)


class Method(nn.Module):
    """Base of every method. Subclasses set `name`, store each constructor argument under its own
    name (that is how `describe` records them), and implement `forward`."""

    name: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = True     # False: trains on labels alone (e.g. "ce")
    needs_labels: ClassVar[bool] = False     # True: refuses an unlabelled transfer set

    def student_layers(self) -> list[str]:
        """Module names of the student whose outputs `forward` reads from `student.features`."""
        return []

    def teacher_layers(self) -> list[str]:
        return []

    def setup(self, student: Outputs, teacher: Outputs | None) -> None:
        """Called once on a probe batch before the optimizer is built: create trainable parts
        whose sizes depend on the models (a FitNets regressor)."""

    def forward(self, student: Outputs, teacher: Outputs | None, batch: Any,
                ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict:
        """The method's identity: its registry name and constructor arguments (JSON types). It
        goes into the run's checkpoint so a resume cannot change the method silently."""
        params = {}
        for p in list(inspect.signature(type(self).__init__).parameters)[1:]:
            if hasattr(self, p):
                v = getattr(self, p)
                params[p] = list(v) if isinstance(v, tuple) else v
        return {"name": self.name or type(self).__name__, **params}


def check_positive(name: str, value: Any, method: str) -> float:
    v = _number(name, value, method)
    if not v > 0:
        raise ValueError(f"{method}: {name} must be a finite number > 0, got {value!r}")
    return v


def check_nonneg(name: str, value: Any, method: str) -> float:
    v = _number(name, value, method)
    if v < 0:
        raise ValueError(f"{method}: {name} must be a finite number >= 0, got {value!r}")
    return v


def _number(name: str, value: Any, method: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{method}: {name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{method}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{method}: {name} must be finite, got {value!r}")
    return v


def check_flag(name: str, value: Any, method: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{method}: {name} must be true or false, got {value!r}")
    return value


def check_layer(name: str, value: Any, method: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{method}: {name} must name a module, got {value!r}")
    return value


def hard_term(weight: float, student: Outputs, batch: Any) -> dict[str, torch.Tensor]:
    """{"hard": weight * CE(z, y)} per example, or {} for a weight of 0 or an unlabelled batch.
    Rows labelled UNLABELLED (a partially labelled set) give 0: the term stays one value per
    example, so the trainer's sum over the global batch is a mean over all rows (labels.py)."""
    if weight == 0 or batch.labels is None:
        return {}
    ce = hard_cross_entropy(student.logits, batch.labels)
    return {"hard": ce if weight == 1.0 else weight * ce}


def flat_features(out: Outputs, layer: str | None, detach: bool = False) -> torch.Tensor:
    """The named layer's output (the logits for None) as (N, D), float32 or float64."""
    f = out.logits if layer is None else out.features[layer]
    f = upcast(f.detach() if detach else f)
    return f.reshape(f.shape[0], -1)


class LayerPairMethod(Method):
    """A method that reads one student layer and one teacher layer (None: the logits)."""

    student_layer: str | None = None
    teacher_layer: str | None = None

    def set_layers(self, student_layer: Any, teacher_layer: Any, optional: bool = False) -> None:
        if optional and student_layer is None and teacher_layer is None:
            return
        self.student_layer = check_layer("student_layer", student_layer, self.name)
        self.teacher_layer = check_layer("teacher_layer", teacher_layer, self.name)

    def student_layers(self) -> list[str]:
        return [] if self.student_layer is None else [self.student_layer]

    def teacher_layers(self) -> list[str]:
        return [] if self.teacher_layer is None else [self.teacher_layer]
