"""Model registry: the MLPs of the paper's MNIST experiment, a small CNN, and the CIFAR-style
ResNets of `kdistill.distill.resnet` ("resnet", "wrn").

A model is described by a plain dict spec (`{"name": "mlp", "hidden": [800, 800], ...}`) so a
checkpoint can rebuild it without pickled code: `build_model(spec)`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .resnet import ResNet, WideResNet
from .text_models import BagOfNgrams

__all__ = ["MLP", "SmallCNN", "MODELS", "register_model", "build_model", "count_parameters",
           "count_flops", "apply_constraints", "estimate_parameters", "check_model_size"]


class MLP(nn.Module):
    """ReLU MLP with optional input/hidden dropout and a max-norm cap on each hidden unit's
    incoming weight vector, the regularizer of Hinton et al.'s dropout nets (arXiv:1207.0580).

    Inputs of any shape are flattened, so images (N, 1, 28, 28) go in as they are.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (800, 800),
        input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        max_norm: float | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 2:
            raise ValueError(f"need in_features >= 1 and num_classes >= 2, got "
                             f"{in_features}, {num_classes}")
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {list(hidden)}")
        for name, p in (("input_dropout", input_dropout), ("hidden_dropout", hidden_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {p}")
        if max_norm is not None and not (math.isfinite(max_norm) and max_norm > 0):
            raise ValueError(f"max_norm must be a finite number > 0, got {max_norm}")
        self.max_norm = max_norm
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout > 0:
            layers.append(nn.Dropout(input_dropout))
        width = in_features
        self.hidden_layers = nn.ModuleList()
        for h in hidden:
            linear = nn.Linear(width, h)
            self.hidden_layers.append(linear)
            layers += [linear, nn.ReLU()]
            if hidden_dropout > 0:
                layers.append(nn.Dropout(hidden_dropout))
            width = h
        self.head = nn.Linear(width, num_classes)
        layers.append(self.head)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def apply_constraints(self) -> None:
        """Rescale each hidden unit's incoming weights to L2 norm <= max_norm (after a step)."""
        if self.max_norm is None:
            return
        for linear in self.hidden_layers:
            w = linear.weight
            norms = w.norm(dim=1, keepdim=True).clamp_min(1e-12)
            w.mul_(norms.clamp(max=self.max_norm) / norms)


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks + one hidden dense layer: a teacher clearly stronger than an MLP on
    clothing images, still cheap on a CPU."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size}")
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        flat = c2 * (image_size // 4) ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "cnn": SmallCNN, "resnet": ResNet,
                                               "wrn": WideResNet,
                                               "bag-of-ngrams": BagOfNgrams}


def register_model(name: str, builder: Callable[..., nn.Module] | None = None, *,
                   overwrite: bool = False):
    """Register an architecture under `name` so that checkpoints holding `{"name": name, ...}`
    rebuild it (`load_model`, `kdistill evaluate`, `distill`). Usable as a decorator:
    `@register_model("my-net")` over a class or function taking the spec's keyword arguments."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a model name is a non-empty string, got {name!r}")

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if not callable(fn):
            raise ValueError(f"register_model({name!r}) needs a callable, got {fn!r}")
        if name in MODELS and MODELS[name] is not fn and not overwrite:
            raise ValueError(f"model {name!r} is already registered (pass overwrite=True)")
        MODELS[name] = fn
        return fn

    return add if builder is None else add(builder)


def build_model(spec: dict) -> nn.Module:
    """Build a registered model from a spec dict: {"name": ..., **constructor kwargs}."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a model spec is a dict with a 'name' key, got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    check_model_size(spec)
    try:
        return MODELS[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for model {name!r}: {exc}") from None


def estimate_parameters(spec: dict) -> int | None:
    """Parameter count of an mlp or cnn spec without building it (None: another model, or a
    spec too broken to count, which the constructor then refuses)."""
    try:
        if spec.get("name") == "mlp":
            widths = [int(spec["in_features"]), *map(int, spec.get("hidden", (800, 800))),
                      int(spec["num_classes"])]
            return sum((a + 1) * b for a, b in zip(widths, widths[1:]))
        if spec.get("name") == "cnn":
            c_in, k = int(spec.get("in_channels", 1)), int(spec.get("num_classes", 10))
            c1, c2 = map(int, spec.get("channels", (32, 64)))
            hidden, size = int(spec.get("hidden", 256)), int(spec.get("image_size", 28))
            flat = c2 * (size // 4) ** 2
            return (9 * c_in + 1) * c1 + (9 * c1 + 1) * c2 + (flat + 1) * hidden + (hidden + 1) * k
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_model_size(spec: dict, what: str | None = None) -> None:
    """Refuse a model whose float32 weights alone would take more than half this machine's
    memory: one line with the estimate, instead of an allocation traceback (or the OOM
    killer) once building starts."""
    n, memory = estimate_parameters(spec), _memory_bytes()
    if n is None or memory is None or n * 4 <= memory // 2:
        return
    label = what or f"model {spec.get('name')!r} with hidden sizes {spec.get('hidden')}"
    raise ValueError(f"{label} would have about {n:,} parameters ({n * 4 / 1e9:,.1f} GB of "
                     f"float32 weights), more than half of this machine's "
                     f"{memory / 1e9:,.1f} GB of memory")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of the model's Conv and Linear layers for one example of `input_shape`
    (no batch axis), measured with forward hooks on a zero input in eval mode (the model's
    mode and BN statistics are left as they were). A conv costs out_elements * in_channels /
    groups * kernel area, a linear layer out_elements * in_features; biases, BN, activations,
    additions and pooling are not counted (the convention behind the "FLOPs" of KD papers)."""
    total = 0

    def conv_hook(m: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kernel = 1
        for k in m.kernel_size:
            kernel *= k
        total += output.numel() * (m.in_channels // m.groups) * kernel

    def linear_hook(m: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was = model.training
    param = next(model.parameters(), None)
    x = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu")
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return total


def apply_constraints(model: nn.Module) -> None:
    """Call the model's own post-step constraint (max-norm) if it has one; DDP-wrapped too."""
    inner = getattr(model, "module", model)
    fn = getattr(inner, "apply_constraints", None)
    if callable(fn):
        fn()
