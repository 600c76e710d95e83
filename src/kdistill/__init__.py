"""kdistill: knowledge distillation for PyTorch models (Hinton, Vinyals & Dean 2015) and model
compression for tabular data (Caruana et al. 2004, Bucila et al. 2006).

The modules, bottom up: losses, metrics, data, models (pure pieces); selection, munge (tabular,
no torch); teachers, training (teachers, cache, trainer); experiments/ (one file per reproduced
experiment); cli (parses and calls).
"""

from .data import ArrayDataset, jitter, load_dataset, load_digits, load_fashion_mnist, load_mnist
from .losses import distillation_loss, logit_matching_loss, soft_target_loss, softmax_t
from .models import MLP, SmallCNN, build_model
from .teachers import cached_teacher_logits, run_teacher
from .training import TrainConfig, TrainingDiverged, evaluate, train

__version__ = "0.1.0"

__all__ = [
    "ArrayDataset", "jitter", "load_dataset", "load_digits", "load_fashion_mnist", "load_mnist",
    "distillation_loss", "logit_matching_loss", "soft_target_loss", "softmax_t",
    "MLP", "SmallCNN", "build_model", "cached_teacher_logits", "run_teacher",
    "TrainConfig", "TrainingDiverged", "evaluate", "train",
]
