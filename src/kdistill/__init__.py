"""kdistill: knowledge distillation for PyTorch models (Hinton, Vinyals & Dean 2015) and model
compression for tabular data (Caruana et al. 2004, Bucila et al. 2006).

The layout, bottom up (imports point down only):
  files.py        atomic writes (no torch)
  reporting.py    provenance, Markdown tables, figures, jsonable (torch/matplotlib on use only)
  tabular/        metrics, hillclimb, selection, model library, MUNGE, encoding, problems
                  (no torch); mimic, compress (one split), compress_csv (`kdistill compress`)
                  (torch via mimic)
  distill/        losses, methods/, hooks, adapters, augment, data, models, metrics, bias,
                  specialists, specialist_combine (pure pieces); teachers, cache, trainer,
                  checkpoint, export
  text/           BBC News corpus, hashed n-gram features, a packaged MiniLM sentence encoder
                  as teacher (transformers on use only)
  experiments/    one file per reproduced experiment, a registry and the shared plumbing
  cli/            one module per command (add_parser, run), listed in cli.COMMANDS

`import kdistill` loads nothing heavy: each public name below is imported on first use, so
`kdistill --help` and the torch-free tabular half never pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily by __getattr__)
_EXPORTS = {
    "ArrayDataset": "distill.data", "load_dataset": "distill.data",
    "load_digits": "distill.data", "load_fashion_mnist": "distill.data",
    "load_mnist": "distill.data", "jitter": "distill.augment",
    "distillation_loss": "distill.losses", "logit_matching_loss": "distill.losses",
    "soft_target_loss": "distill.losses", "softmax_t": "distill.losses",
    "MLP": "distill.models", "SmallCNN": "distill.models", "build_model": "distill.models",
    "register_model": "distill.models", "load_model": "distill.checkpoint",
    "cached_teacher_logits": "distill.cache", "run_teacher": "distill.teachers",
    "TrainConfig": "distill.trainer", "TrainingDiverged": "distill.trainer",
    "evaluate": "distill.trainer", "train": "distill.trainer",
    "methods": "distill.methods", "auto_distill": "distill.auto",
    "HashedNgrams": "text.features", "TokenizedTexts": "text.minilm",
}

__all__ = [
    "ArrayDataset",
    "MLP",
    "SmallCNN",
    "TrainConfig",
    "TrainingDiverged",
    "auto_distill",
    "build_model",
    "cached_teacher_logits",
    "distillation_loss",
    "evaluate",
    "jitter",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "load_model",
    "logit_matching_loss",
    "methods",
    "register_model",
    "run_teacher",
    "soft_target_loss",
    "softmax_t",
    "train",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        value = module if name == "methods" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kdistill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; not executed
    from .distill import methods
    from .distill.augment import jitter
    from .distill.cache import cached_teacher_logits
    from .distill.checkpoint import load_model
    from .distill.data import (
        ArrayDataset,
        load_dataset,
        load_digits,
        load_fashion_mnist,
        load_mnist,
    )
    from .distill.losses import distillation_loss, logit_matching_loss, soft_target_loss, softmax_t
    from .distill.models import MLP, SmallCNN, build_model, register_model
    from .distill.teachers import run_teacher
    from .distill.trainer import TrainConfig, TrainingDiverged, evaluate, train
