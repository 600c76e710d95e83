"""The reproduced experiments: a registry of name -> module, read without importing torch.

Each experiment module (imported only by :func:`load`) provides a config dataclass named in
its entry, ``config_from(dataset, **overrides)``, ``run(cfg) -> dict`` and ``summary(results,
cfg) -> list[str]``. ``kdistill reproduce NAME`` builds its flags from the config's fields
(help texts in ``field(metadata={"help": ...})``, see :func:`setting`), so a new experiment is
one entry here and needs no CLI edit. model-compression differs (its settings are the
pipeline's and it runs over problems, not one data set); the CLI gives it its own parser.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["EXPERIMENTS", "Experiment", "load", "setting", "COMMON_HELP"]


@dataclass(frozen=True)
class Experiment:
    """Where an experiment lives and how ``kdistill reproduce`` lists it."""

    module: str           # module path, imported on first use (it imports torch)
    config: str           # name of its config dataclass in that module
    help: str             # one line for `kdistill reproduce --help`
    description: str = ""

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


EXPERIMENTS: dict[str, Experiment] = {
    "hinton-mnist": Experiment(
        "kdistill.experiments.hinton_mnist", "HintonMnistConfig",
        "the MNIST table and the T x width sweep (H15 sec. 3)",
        "Teacher, hard-label student, distilled student at T, and the width x temperature "
        "sweep."),
    "ensemble": Experiment(
        "kdistill.experiments.ensemble", "EnsembleConfig",
        "ensemble distillation and self-distillation (H15 sec. 4, Table 1)",
        "A baseline, an ensemble of N seeds of it, one model distilled from the ensemble at "
        "each T (the headline T chosen on a validation split), and self-distillation."),
    "soft-regularizer": Experiment(
        "kdistill.experiments.soft_regularizer", "SoftRegularizerConfig",
        "soft targets on 3%% of the data (H15 sec. 6, Table 5)",
        "Full-data model (also the teacher), hard labels on a random fraction, soft targets on "
        "the same fraction."),
    "omitted-class": Experiment(
        "kdistill.experiments.omitted_class", "OmittedClassConfig",
        "classes left out of the transfer set and the bias fix (H15 sec. 3)",
        "Students distilled on transfer sets that lack classes, repaired by matching their "
        "mean prediction on unlabelled data to the teacher's; the test-tuned oracle shift is "
        "reported beside it."),
    "specialists": Experiment(
        "kdistill.experiments.specialists", "SpecialistsConfig",
        "specialists with a dustbin class (H15 sec. 5, Tables 2-4)",
        "A generalist, confusable class subsets from the covariance of its predictions, "
        "specialists with a dustbin class initialized from it, and their combination "
        "(SPEC 4.4)."),
    "model-compression": Experiment(
        "kdistill.experiments.model_compression", "CompressionConfig",
        "ensemble selection, MUNGE and mimic nets on UCI problems (Bucila et al. 2006)",
        "A model library, ensemble selection, MUNGE pseudo-data and a mimic network per "
        "problem."),
    "text": Experiment(
        "kdistill.experiments.text", "TextConfig",
        "a pretrained MiniLM teacher from K labels per class, distilled through unlabelled "
        "BBC News text",
        "MiniLM + linear head on K labelled articles per class; bag-of-n-gram students on the "
        "labels alone, on the teacher's soft targets, and with teacher-labelled crops; an "
        "embedding student; TF-IDF + LR beside them (needs kdistill[text])."),
    "league": Experiment(
        "kdistill.experiments.league", "LeagueConfig",
        "every distillation method into two students, several seeds (the league table)",
        "One wide-ResNet teacher; every registry method into resnet8 and the 800-800 MLP on "
        "one schedule, the plain student beside them; each student x method x seed a resumable "
        "cell (--cells for parallel processes, --assemble-only for the report)."),
}

# Help for the settings every data-set experiment shares, so each config need not repeat it.
COMMON_HELP: dict[str, str] = {
    "dataset": "digits (built in), mnist, fashion-mnist, kmnist, letter, or a path to an .npz "
               "with x_train, y_train, x_test, y_test",
    "data_dir": "folder holding the data set's files (default: $KDISTILL_DATA/<dataset>, then "
                "system folders)",
    "download": "download missing IDX files, each checked against its SHA-256",
    "out": "work folder with every run's checkpoint (CLI default: runs/<experiment>/<dataset>)",
    "report_dir": "also write <report-dir>/<dataset>.{json,md,png}",
    "seed": "random seed of data splits and initializations",
    "device": "auto (CUDA when present), cpu, cuda, cuda:1",
    "progress": "progress bars",
    "fresh": "ignore checkpoints under --out",
    "batch_size": "training batch size",
    "lr": "Adam learning rate (peak of the cosine schedule)",
    "optimizer": "sgd, adam or adamw",
    "soft_weight": "weight of the T^2-scaled soft term",
    "validation_size": "examples held out of the training set for choosing settings",
}


def load(name: str) -> ModuleType:
    """The module of experiment `name` (this imports torch)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name].load()


def setting(default: Any, help: str, **cli: Any) -> Any:
    """A config field that documents itself for the command line.

    `cli` holds optional hints for the generated flag: ``flags=("-T",)`` (extra names),
    ``choices=(...)``, ``nargs="*"`` (a tuple that may be empty; tuples default to "+"),
    ``none_if=0`` (that value on the command line means None).
    """
    return dataclasses.field(default=default, metadata={"help": help, **cli})
