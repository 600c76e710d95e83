"""`kdistill` command line: parses flags and calls the library. Nothing else lives here.

Bad input ends with one line on stderr and exit code 2, before anything is written; a run that
diverges ends with exit code 1 and keeps its last good checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UsageError(f"{self.prog}: {message}")


# ----------------------------------------------------------------------------- flag groups

def _add_data(p: argparse.ArgumentParser, default: str = "digits") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=default,
                   help="digits (built in), mnist, fashion-mnist, kmnist, or a path to an .npz "
                        "with x_train, y_train, x_test, y_test (default: %(default)s)")
    g.add_argument("--data-dir", default=None,
                   help="folder holding the four IDX files (*-ubyte[.gz]); default: "
                        "$KDISTILL_DATA/<dataset>, then system folders such as "
                        "/usr/share/datasets/fashion-mnist")
    g.add_argument("--download", action="store_true",
                   help="download missing IDX files, each checked against its SHA-256")


def _add_model(p: argparse.ArgumentParser, hidden_default: list[int]) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=["mlp", "cnn"], default="mlp", help="architecture")
    g.add_argument("--hidden", type=int, nargs="+", default=hidden_default,
                   help="MLP hidden layer widths (default: %(default)s)")
    g.add_argument("--input-dropout", type=float, default=0.0, help="MLP input dropout rate")
    g.add_argument("--hidden-dropout", type=float, default=0.0,
                   help="dropout rate after each hidden layer (MLP) or dense layer (CNN)")
    g.add_argument("--max-norm", type=float, default=None,
                   help="cap on each MLP hidden unit's incoming weight L2 norm")


def _add_training(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=20, help="default: %(default)s")
    g.add_argument("--batch-size", type=int, default=256, help="global batch size")
    g.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--schedule", choices=["constant", "cosine", "linear", "step"],
                   default="cosine", help="learning-rate schedule, stepped every batch")
    g.add_argument("--warmup-epochs", type=float, default=0.0)
    g.add_argument("--milestones", type=int, nargs="*", default=[],
                   help="epochs at which the step schedule multiplies the lr by --gamma")
    g.add_argument("--gamma", type=float, default=0.1)
    g.add_argument("--jitter", type=int, default=0,
                   help="shift each training image by up to this many pixels")
    g.add_argument("--grad-clip", type=float, default=None, help="max gradient norm")
    g.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1")
    g.add_argument("--out", required=True,
                   help="run folder: checkpoint.pt (every epoch, atomic) and metrics.json")
    g.add_argument("--no-resume", action="store_true",
                   help="start over even if --out holds a checkpoint")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _architecture(text: str) -> tuple[int, ...]:
    """'256' or '64x64' -> (256,) or (64, 64)."""
    try:
        widths = tuple(int(w) for w in text.lower().split("x"))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"not an architecture: {text!r} (widths >= 1 joined "
                                         f"by x, e.g. 256 or 64x64)")
    return widths


def _add_compression(p) -> None:
    from ..tabular.library import PRESETS

    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="model library: default (~290 models, the default), small (~40), tiny")
    p.add_argument("--n-jobs", type=int, default=None, help="joblib workers (default: 2)")
    p.add_argument("--munge-k", type=int, default=None,
                   help="MUNGE rows per training row (default: 10 for compress, 25 for "
                        "reproduce)")
    p.add_argument("--mimic-hidden", nargs="+", type=_architecture, default=None,
                   metavar="WIDTHS",
                   help="candidate mimic architectures, hidden widths joined by x, chosen on "
                        "the hillclimb rows (default: 32 128 256 32x32 64x64 128x128 256x256)")
    p.add_argument("--mimic-epochs", type=int, default=None, help="mimic epochs (default: 60)")
    p.add_argument("--size-budget", type=float, default=None,
                   help="the small mimic is at most 1/N of the ensemble's size (default: 1000)")


def _add_reproduce_common(p, dataset_default: str = "fashion-mnist") -> None:
    _add_data(p, default=dataset_default)
    g = p.add_argument_group("run")
    g.add_argument("--out", default=None,
                   help="work folder with every run's checkpoint (default: "
                        "runs/<experiment>/<dataset>)")
    g.add_argument("--report-dir", default=None,
                   help="also write <report-dir>/<dataset>.{json,md,png}")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--device", default=None, help="auto (CUDA when present), cpu, cuda")
    g.add_argument("--fresh", action="store_true", help="ignore checkpoints under --out")
    g.add_argument("--no-progress", action="store_true")


def _add_reproduce_parsers(exps) -> None:
    h = exps.add_parser("hinton-mnist", help="the MNIST table and the T x width sweep (H15 sec. 3)",
                        description="Teacher, hard-label student, distilled student at T, and "
                                    "the width x temperature sweep.")
    _add_reproduce_common(h)
    h.add_argument("--teacher-recipe", default=None,
                   choices=["paper", "dropout", "dropout-jitter1", "dropout-light", "auto"],
                   help="paper: 1200-1200, dropout, max-norm, 2-pixel jitter; auto: choose among "
                        "the recipes on a validation split (default: paper on mnist, else auto)")
    h.add_argument("--teacher-members", type=int, default=None,
                   help="teach with an ensemble of this many seeds of the recipe (mean of "
                        "their probabilities at T); default 3 on fashion-mnist, else 1")
    h.add_argument("--temperature", "-T", type=float, default=None, help="headline T (20)")
    h.add_argument("--hard-weight", type=float, default=None, help="hard-term weight (0.1)")
    h.add_argument("--no-sweep", action="store_true", help="skip the width x temperature sweep")
    h.add_argument("--teacher-epochs", type=int, default=None)
    h.add_argument("--student-epochs", type=int, default=None)
    h.add_argument("--batch-size", type=int, default=None)

    e = exps.add_parser("ensemble", help="ensemble distillation and self-distillation "
                                         "(H15 sec. 4, Table 1)",
                        description="A baseline, an ensemble of N seeds of it, one model "
                                    "distilled from the ensemble at each T (the headline T "
                                    "chosen on a validation split), and self-distillation.")
    _add_reproduce_common(e)
    e.add_argument("--members", type=int, default=None, help="ensemble size (10)")
    e.add_argument("--combine", choices=["arith_prob", "geo_logit"], default=None,
                   help="arith_prob: mean of the members' probabilities at T (default); "
                        "geo_logit: normalized geometric mean (mean of logits)")
    e.add_argument("--bootstrap", action="store_true",
                   help="also give each member its own bootstrap sample")
    e.add_argument("--hidden", type=int, nargs="+", default=None,
                   help="MLP hidden widths of every model (512 512)")
    e.add_argument("--member-jitter", type=int, default=None,
                   help="train the members on images shifted online by up to this many "
                        "pixels (0)")
    e.add_argument("--hidden-dropout", type=float, default=None,
                   help="hidden dropout of every member (0)")
    e.add_argument("--temperatures", type=float, nargs="+", default=None,
                   help="distillation temperatures (1 2 5 10)")
    e.add_argument("--hard-weight", type=float, default=None, help="hard-term weight (0.5)")
    e.add_argument("--epochs", type=int, default=None, help="epochs of every member (20)")
    e.add_argument("--student-epochs", type=int, default=None,
                   help="epochs of distilled models and of the hard-label control (default: "
                        "--epochs)")
    e.add_argument("--no-self-distill", action="store_true")
    e.add_argument("--student-dropout", type=float, default=None,
                   help="hidden dropout of distilled models (default: the members')")
    e.add_argument("--transfer-copies", type=int, default=None,
                   help="add this many jittered copies of the training images to the students' "
                        "transfer set, with the ensemble's soft targets on each (2; 0: the "
                        "training images only)")
    e.add_argument("--transfer-jitter", type=int, default=None,
                   help="pixels of shift for those copies (1)")

    s = exps.add_parser("soft-regularizer", help="soft targets on 3%% of the data "
                                                 "(H15 sec. 6, Table 5)",
                        description="Full-data model (also the teacher), hard labels on a "
                                    "random fraction, soft targets on the same fraction.")
    _add_reproduce_common(s)
    s.add_argument("--fraction", type=float, default=None,
                   help="share of the training set (0.03; digits 0.1)")
    s.add_argument("--temperatures", type=float, nargs="+", default=None,
                   help="candidate T, chosen on validation (1 2 4 8)")
    s.add_argument("--hard-weight", type=float, default=None,
                   help="hard-term weight of the soft run (0: soft targets only)")
    s.add_argument("--jitter", type=int, default=None,
                   help="also train on the fraction with this many pixels of jitter (1; 0 "
                        "skips those rows)")
    s.add_argument("--full-epochs", type=int, default=None)
    s.add_argument("--small-epochs", type=int, default=None)

    o = exps.add_parser("omitted-class", help="classes left out of the transfer set and the "
                                              "bias fix (H15 sec. 3)",
                        description="Students distilled on transfer sets that lack classes, "
                                    "repaired by matching their mean prediction on unlabelled "
                                    "data to the teacher's; the test-tuned oracle shift is "
                                    "reported beside it.")
    _add_reproduce_common(o)
    o.add_argument("--omit", type=int, nargs="+", default=None,
                   help="classes left out of the transfer set (3)")
    o.add_argument("--keep-only", type=int, nargs="*", default=None,
                   help="second case: a transfer set of only these classes (7 8); give no "
                        "class to skip it")
    o.add_argument("--temperature", "-T", type=float, default=None, help="T (20)")
    o.add_argument("--hard-weight", type=float, default=None, help="hard-term weight (0.1)")
    o.add_argument("--teacher-epochs", type=int, default=None)
    o.add_argument("--student-epochs", type=int, default=None)

    sp = exps.add_parser("specialists", help="specialists with a dustbin class (H15 sec. 5, "
                                             "Tables 2-4)",
                         description="A generalist, confusable class subsets from the covariance "
                                     "of its predictions, specialists with a dustbin class "
                                     "initialized from it, and their combination (SPEC 4.4).")
    _add_reproduce_common(sp, dataset_default="letter")
    sp.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="one run per seed, pooled in the tables (letter: 0 1 2)")
    sp.add_argument("--hidden", type=int, nargs="+", default=None,
                    help="generalist MLP hidden widths")
    sp.add_argument("--generalist-epochs", type=int, default=None)
    sp.add_argument("--num-subsets", type=int, default=None,
                    help="number of k-means clusters of classes (specialists)")
    sp.add_argument("--subset-size", type=int, default=None,
                    help="classes per specialist (overlapping subsets); 0: the disjoint k-means "
                         "partition")
    sp.add_argument("--specialist-epochs", type=int, nargs="+", default=None,
                    help="candidate specialist epochs, chosen on validation")
    sp.add_argument("--special-fraction", type=float, default=None,
                    help="share of subset examples in a specialist's training data (0.5)")
    sp.add_argument("--specialist-lr", type=float, default=None,
                    help="Adam learning rate of the specialists (1e-3)")
    sp.add_argument("--validation-size", type=int, default=None,
                    help="examples held out of the training set for choosing epochs")

    m = exps.add_parser("model-compression", help="ensemble selection, MUNGE and mimic nets "
                                                  "on UCI problems (Bucila et al. 2006)",
                        description="A model library, ensemble selection, MUNGE pseudo-data "
                                    "and a mimic network per problem.")
    m.add_argument("--problems", nargs="+", default=None,
                   help="UCI problems (default: letter.p1 letter.p2 satellite dna shuttle)")
    m.add_argument("--out", default=None, help="work folder (default: runs/model-compression)")
    m.add_argument("--report-dir", default=None,
                   help="summary.json, results.md, results.png (default "
                        "docs/results/model-compression)")
    m.add_argument("--seed", type=int, default=None)
    m.add_argument("--no-resume", action="store_true",
                   help="recompute every problem even if --out holds its result")
    _add_compression(m)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kdistill", description="Knowledge distillation for PyTorch models "
                "(Hinton, Vinyals & Dean 2015).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a teacher or a hard-label baseline",
                       description="Train a model on hard labels (a teacher, or a baseline).")
    _add_data(t)
    _add_model(t, [1200, 1200])
    _add_training(t)

    d = sub.add_parser("distill", help="distill a student from a teacher checkpoint",
                       description="Train a student on a teacher's soft targets at temperature "
                                   "T (plus the hard labels, weighted).")
    d.add_argument("--teacher", required=True, nargs="+",
                   help="teacher checkpoint.pt (from kdistill train); several checkpoints form "
                        "an ensemble teacher")
    d.add_argument("--combine", choices=["arith_prob", "geo_logit"], default="arith_prob",
                   help="how an ensemble's members are combined: mean of probabilities at T "
                        "(default) or normalized geometric mean (mean of logits)")
    _add_data(d)
    _add_model(d, [800, 800])
    _add_training(d)
    g = d.add_argument_group("distillation")
    g.add_argument("--temperature", "-T", type=float, default=20.0,
                   help="softmax temperature for teacher and student (default: %(default)s)")
    g.add_argument("--soft-weight", type=float, default=1.0,
                   help="weight of the T^2-scaled soft term (>= 0)")
    g.add_argument("--hard-weight", type=float, default=0.1,
                   help="weight of the hard-label cross-entropy at T = 1 (>= 0; 0 drops it)")
    g.add_argument("--loss", choices=["kd", "logit_matching"], default="kd",
                   help="kd: soft targets at T; logit_matching: squared error of zero-meaned "
                        "logits (the high-T limit)")
    g.add_argument("--cache-dir", default=None,
                   help="teacher-logit cache folder (default: <out>/teacher-cache); unused with "
                        "--jitter, where the teacher runs online on the jittered batch")

    f = sub.add_parser("fix-bias", help="shift a student's output biases so that its mean "
                                        "prediction matches a prior (classes missing from "
                                        "its transfer set)",
                       description="Prior matching (SPEC 2.4): offsets on the output biases so "
                                   "that the student's mean prediction on the data set's "
                                   "training inputs (labels unused unless --prior labels) "
                                   "matches the teacher's mean prediction or the label "
                                   "frequencies. Writes a new checkpoint; the old one is kept.")
    f.add_argument("student", help="student checkpoint.pt")
    f.add_argument("--teacher", nargs="+", default=None,
                   help="teacher checkpoint(s): the target prior is their mean prediction")
    f.add_argument("--prior", choices=["teacher", "labels"], default="teacher",
                   help="teacher: the teacher's mean prediction (no labels); labels: the "
                        "training label frequencies")
    f.add_argument("--classes", type=int, nargs="+", default=None,
                   help="only these classes' biases move (default: all)")
    f.add_argument("--out", required=True, help="where to write the fixed checkpoint")
    _add_data(f)
    f.add_argument("--device", default="auto")

    e = sub.add_parser("evaluate", help="evaluate a checkpoint on a data set's test split",
                       description="Print test errors, accuracy, NLL and ECE as JSON.")
    e.add_argument("checkpoint", help="checkpoint.pt")
    _add_data(e)
    e.add_argument("--device", default="auto")

    r = sub.add_parser("reproduce", help="reproduce one of the papers' experiments",
                       description="Run a whole experiment and write JSON, Markdown and a plot. "
                                   "Every run checkpoints under --out; rerun the same command "
                                   "to resume.")
    exps = r.add_subparsers(dest="experiment", required=True, parser_class=_Parser,
                            metavar="EXPERIMENT")
    _add_reproduce_parsers(exps)

    c = sub.add_parser("compress", help="compress a CSV's ensemble into a small net",
                       description="Model compression on a CSV file: a library of scikit-learn "
                                   "models, ensemble selection on a hillclimb split, MUNGE "
                                   "pseudo-data labelled by the ensemble, a mimic MLP; writes "
                                   "the models and a report (metrics, sizes, prediction times, "
                                   "the selection trajectory plot).")
    c.add_argument("data", help="CSV file with a header row")
    c.add_argument("--target", required=True, help="the class column")
    c.add_argument("--out", default="kdistill-compress",
                   help="output folder: mimic.pt, ensemble.joblib, report.{json,md}, "
                        "selection.png (default: %(default)s)")
    c.add_argument("--nominal", nargs="+", default=None,
                   help="columns to treat as nominal (default: the non-numeric ones)")
    c.add_argument("--hillclimb-fraction", type=float, default=0.2,
                   help="share of rows for ensemble selection (default: %(default)s)")
    c.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of rows held out for the report (default: %(default)s)")
    c.add_argument("--seed", type=int, default=0)
    _add_compression(c)

    m = sub.add_parser("demo", help="teacher -> student -> distilled student on the built-in "
                       "digits, with a report", description="The main job on scikit-learn's "
                       "digits: a teacher, a hard-label student and a distilled student.")
    m.add_argument("--out", default="kdistill-demo", help="report folder (default: %(default)s)")
    m.add_argument("--fresh", action="store_true", help="ignore checkpoints under --out")
    m.add_argument("--no-progress", action="store_true")
    return p


# ----------------------------------------------------------------------------- commands

def _train_config(a, **extra):
    from ..distill.trainer import TrainConfig

    cfg = TrainConfig(
        epochs=a.epochs, batch_size=a.batch_size, optimizer=a.optimizer, lr=a.lr,
        momentum=a.momentum, weight_decay=a.weight_decay, schedule=a.schedule,
        warmup_epochs=a.warmup_epochs, milestones=tuple(a.milestones), gamma=a.gamma,
        jitter=a.jitter, grad_clip=a.grad_clip, amp=a.amp, seed=a.seed, device=a.device,
        progress=not a.no_progress, **extra)
    cfg.validate()
    return cfg


def _model_spec(a, data) -> dict:
    if a.model == "mlp":
        return {"name": "mlp", "in_features": data.in_features, "num_classes": data.num_classes,
                "hidden": list(a.hidden), "input_dropout": a.input_dropout,
                "hidden_dropout": a.hidden_dropout, "max_norm": a.max_norm}
    shape = data.input_shape
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"the cnn needs square images (C, H, H), got input shape {shape}")
    return {"name": "cnn", "in_channels": shape[0], "num_classes": data.num_classes,
            "image_size": shape[1], "dropout": a.hidden_dropout}


def _build(spec: dict, seed: int):
    import torch

    from ..distill.models import build_model

    torch.manual_seed(seed)
    return build_model(spec)


def _finish(result, out: Path, spec: dict, test) -> None:
    from ..files import atomic_write_json
    from ..reporting import provenance

    summary = {"final": result.final, "history": result.history, "model_spec": spec,
               "test_size": len(test), "seconds": round(result.seconds, 1), **provenance()}
    atomic_write_json(out / "metrics.json", summary)
    f = result.final
    print(f"done: test errors {f.get('test_errors')} of {len(test)} "
          f"(accuracy {f.get('test_accuracy', float('nan')):.4f}), "
          f"checkpoint {out / 'checkpoint.pt'}")


def cmd_train(a) -> int:
    from ..distill.data import load_dataset
    from ..distill.trainer import train

    cfg = _train_config(a, hard_weight=1.0)
    splits = load_dataset(a.dataset, a.data_dir, a.download)
    spec = _model_spec(a, splits.train)
    model = _build(spec, a.seed)
    out = Path(a.out)
    result = train(model, splits.train, cfg, eval_data=splits.test, out_dir=out,
                   resume=not a.no_resume, model_spec=spec)
    _finish(result, out, spec, splits.test)
    return 0


def _load_model(path: str):
    from ..distill.checkpoint import load_model

    return load_model(path)


def _load_teacher(paths: list[str], combine: str, temperature: float):
    """One checkpoint, or several as an EnsembleTeacher; returns (teacher, class count)."""
    from ..distill.teachers import EnsembleTeacher

    loaded = [_load_model(p) for p in paths]
    counts = {p: spec.get("num_classes") for p, (_, spec) in zip(paths, loaded)}
    if len(set(counts.values())) > 1:
        raise ValueError("ensemble members disagree on the number of classes: " + ", ".join(
            f"{p}: {n}" for p, n in counts.items()))
    n_classes = next(iter(counts.values()))
    if len(loaded) == 1:
        return loaded[0][0], n_classes
    return EnsembleTeacher([m for m, _ in loaded], combine, temperature), n_classes


def cmd_distill(a) -> int:
    from ..distill.cache import cached_teacher_logits
    from ..distill.data import load_dataset
    from ..distill.teachers import fingerprint_module
    from ..distill.trainer import resolve_device, train

    cfg = _train_config(a, temperature=a.temperature, soft_weight=a.soft_weight,
                        hard_weight=a.hard_weight, loss=a.loss)
    teacher, n_teacher = _load_teacher(a.teacher, a.combine, a.temperature)
    device = resolve_device(a.device)
    teacher = teacher.to(device)
    splits = load_dataset(a.dataset, a.data_dir, a.download)
    spec = _model_spec(a, splits.train)
    if n_teacher is not None and n_teacher != splits.train.num_classes:
        raise ValueError(f"teacher/student class-count mismatch: the teacher has {n_teacher} "
                         f"classes, {a.dataset} has {splits.train.num_classes}")
    student = _build(spec, a.seed)
    out = Path(a.out)
    kwargs = {}
    if a.jitter > 0:
        kwargs["teacher"] = teacher  # online: the teacher sees the same jittered batch
    else:
        cache = cached_teacher_logits(teacher, splits.train.x,
                                      a.cache_dir or out / "teacher-cache",
                                      transform="identity", device=device,
                                      progress=not a.no_progress)
        print(f"teacher logits {'computed' if cache.rebuilt else 'reused'} ({cache.reason}): "
              f"{cache.path}")
        kwargs["teacher_logits"] = cache.logits
    result = train(student, splits.train, cfg, eval_data=splits.test, out_dir=out,
                   resume=not a.no_resume, model_spec=spec,
                   extra={"teacher": fingerprint_module(teacher)}, **kwargs)
    _finish(result, out, spec, splits.test)
    return 0


def cmd_fix_bias(a) -> int:
    import torch

    from ..distill.bias import label_prior, match_prior, teacher_prior
    from ..distill.checkpoint import atomic_torch_save, load_checkpoint
    from ..distill.data import load_dataset
    from ..distill.teachers import run_teacher
    from ..distill.trainer import evaluate, resolve_device

    if a.prior == "teacher" and not a.teacher:
        raise ValueError("--prior teacher needs --teacher checkpoint(s)")
    device = resolve_device(a.device)
    student, spec = _load_model(a.student)
    splits = load_dataset(a.dataset, a.data_dir, a.download)
    k = splits.train.num_classes
    if spec.get("num_classes") != k:
        raise ValueError(f"the student has {spec.get('num_classes')} classes, {a.dataset} has {k}")
    if a.classes is not None and any(not 0 <= c < k for c in a.classes):
        raise ValueError(f"--classes names a class that does not exist: {a.classes} "
                         f"(classes are 0..{k - 1})")
    head = [m for m in student.modules() if isinstance(m, torch.nn.Linear)][-1]
    if head.bias is None:
        raise ValueError("the student's output layer has no bias to shift")
    if a.prior == "teacher":
        teacher, n_teacher = _load_teacher(a.teacher, "arith_prob", 1.0)
        if n_teacher != k:
            raise ValueError(f"the teacher has {n_teacher} classes, {a.dataset} has {k}")
        prior = teacher_prior(run_teacher(teacher.to(device), splits.train.x,
                                          device=device).numpy(), from_logits=True)
    else:
        prior = label_prior(splits.train.y.numpy(), k)
    logits = run_teacher(student.to(device), splits.train.x, device=device).numpy()
    offsets = match_prior(logits, prior, classes=a.classes)
    before = evaluate(student, splits.test, device=device)
    with torch.no_grad():
        head.bias += torch.as_tensor(offsets, dtype=head.bias.dtype, device=head.bias.device)
    after = evaluate(student, splits.test, device=device)
    ckpt = load_checkpoint(a.student)
    ckpt["model_state"] = {n: v.detach().cpu() for n, v in student.state_dict().items()}
    ckpt["bias_fix"] = {"offsets": offsets.tolist(), "prior": prior.tolist(),
                        "prior_source": a.prior, "classes": a.classes, "from": str(a.student)}
    atomic_torch_save(ckpt, a.out)
    print(json.dumps({"offsets": [round(float(v), 4) for v in offsets],
                      "test_errors_before": before["errors"],
                      "test_errors_after": after["errors"], "checkpoint": a.out}))
    return 0


def cmd_evaluate(a) -> int:
    from ..distill.data import load_dataset
    from ..distill.trainer import evaluate, resolve_device

    model, _ = _load_model(a.checkpoint)
    splits = load_dataset(a.dataset, a.data_dir, a.download)
    metrics = evaluate(model, splits.test, device=resolve_device(a.device))
    print(json.dumps({"checkpoint": a.checkpoint, "dataset": a.dataset, **metrics}, indent=2))
    return 0


def _compression_config(a, **defaults):
    from ..experiments import model_compression

    given = {"preset": a.preset, "n_jobs": a.n_jobs, "munge_k": a.munge_k,
             "mimic_hidden": tuple(a.mimic_hidden) if a.mimic_hidden else None,
             "epochs": a.mimic_epochs, "size_budget": a.size_budget, "seed": a.seed}
    cfg = model_compression.config_from(**{**defaults, **{k: v for k, v in given.items()
                                                          if v is not None}})
    cfg.validate()
    return cfg


def cmd_compress(a) -> int:
    from ..tabular.compress_csv import compress_csv

    cfg = _compression_config(a, munge_k=10)
    r = compress_csv(a.data, a.target, a.out, cfg, hillclimb_fraction=a.hillclimb_fraction,
                     test_fraction=a.test_fraction, nominal=a.nominal)
    print(f"test RMSE: ensemble {r['rmse']['ensemble']:.4f}, mimic {r['rmse']['mimic_munge']:.4f}"
          f", single {r['rmse']['single']:.4f}, ann {r['rmse']['ann']:.4f}; mimic "
          f"{r['speedup_vs_ensemble']:.0f}x faster, {r['size_ratio_vs_ensemble']:.0f}x smaller; "
          f"small mimic {r['rmse']['mimic_small']:.4f}, "
          f"{r['size_ratio_vs_ensemble_small']:.0f}x smaller")
    print(f"report: {Path(a.out) / 'report.md'}; models: {Path(a.out) / 'mimic.pt'}, "
          f"{Path(a.out) / 'mimic-small.pt'}, {Path(a.out) / 'ensemble.joblib'}")
    return 0


def _reproduce_model_compression(a) -> int:
    from ..experiments import model_compression
    from ..tabular.problems import PROBLEMS

    cfg = _compression_config(a)
    problems = tuple(a.problems) if a.problems else PROBLEMS
    s = model_compression.run(cfg, problems, report_dir=a.report_dir or
                              "docs/results/model-compression",
                              out=a.out or "runs/model-compression", resume=not a.no_resume)
    for label, key in (("mimic", ""), ("small mimic", "_small")):
        gain = s["mean_gain_captured" + key]
        print(f"{label}: mean gain captured {'n/a' if gain is None else f'{gain:.2f}'}, "
              f"{s['speedup_vs_ensemble' + key]:.0f}x faster, "
              f"{s['size_ratio_vs_ensemble' + key]:.0f}x smaller than the ensemble")
    report_dir = a.report_dir or "docs/results/model-compression"
    print(f"wall time {s['wall_seconds']:.0f} s; report in {report_dir}")
    return 0


def _dataset_name(dataset: str) -> str:
    return Path(dataset).stem if dataset.endswith(".npz") else dataset


def _experiment_config(module, a, **overrides):
    return module.config_from(
        a.dataset, data_dir=a.data_dir, download=a.download or None,
        out=a.out or f"runs/{a.experiment}/{_dataset_name(a.dataset)}", report_dir=a.report_dir,
        seed=a.seed, device=a.device, fresh=a.fresh or None, progress=not a.no_progress,
        **overrides)


def _tuple(values):
    return None if values is None else tuple(values)


def cmd_reproduce(a) -> int:
    from ..experiments import ensemble, hinton_mnist, omitted_class, soft_regularizer

    if a.experiment == "model-compression":
        return _reproduce_model_compression(a)
    if a.experiment == "specialists":
        return _reproduce_specialists(a)
    if a.experiment == "hinton-mnist":
        cfg = _experiment_config(
            hinton_mnist, a, teacher_recipe=a.teacher_recipe,
            teacher_members=a.teacher_members, temperature=a.temperature,
            hard_weight=a.hard_weight, sweep=False if a.no_sweep else None,
            teacher_epochs=a.teacher_epochs, student_epochs=a.student_epochs,
            batch_size=a.batch_size)
        results = hinton_mnist.run(cfg)
        _print_summary(results, Path(cfg.out))
        return 0
    if a.experiment == "ensemble":
        cfg = _experiment_config(
            ensemble, a, members=a.members, combine=a.combine, bootstrap=a.bootstrap or None,
            hidden=_tuple(a.hidden), hidden_dropout=a.hidden_dropout,
            member_jitter=a.member_jitter,
            temperatures=_tuple(a.temperatures),
            hard_weight=a.hard_weight, epochs=a.epochs, student_epochs=a.student_epochs,
            self_distill=False if a.no_self_distill else None,
            student_dropout=a.student_dropout, transfer_copies=a.transfer_copies,
            transfer_jitter=a.transfer_jitter)
        r = ensemble.run(cfg)
        print(f"test accuracy: baseline {r['baseline_accuracy']:.4f}, {r['members']}x ensemble "
              f"{r['ensemble_accuracy']:.4f}, distilled (T={r['temperature']:g}) "
              f"{r['distilled_accuracy']:.4f}, self-distilled {r['self_distilled_accuracy']}; "
              f"gain recovered {_pct(r['gain_recovered'])}; ms per 1,000: ensemble "
              f"{r['ensemble_ms_per_1000']:.2f}, distilled {r['distilled_ms_per_1000']:.2f}")
    elif a.experiment == "soft-regularizer":
        cfg = _experiment_config(
            soft_regularizer, a, fraction=a.fraction, temperatures=_tuple(a.temperatures),
            hard_weight=a.hard_weight, jitter=a.jitter, full_epochs=a.full_epochs,
            small_epochs=a.small_epochs)
        r = soft_regularizer.run(cfg)
        print(f"test accuracy: full data {r['full_data_accuracy']:.4f}; "
              f"{100 * r['fraction']:g}% hard labels peak {r['hard_peak_accuracy']:.4f} (on "
              f"test), final {r['hard_final_accuracy']:.4f}; soft targets (T="
              f"{r['temperature']:g}) final {r['soft_final_accuracy']:.4f}; gap recovered "
              f"{_pct(r['gap_recovered'])}")
    elif a.experiment == "omitted-class":
        cfg = _experiment_config(
            omitted_class, a, omit=_tuple(a.omit), keep_only=_tuple(a.keep_only),
            temperature=a.temperature, hard_weight=a.hard_weight,
            teacher_epochs=a.teacher_epochs, student_epochs=a.student_epochs)
        r = omitted_class.run(cfg)
        for case, c in r["cases"].items():
            print(f"{case} {c['omitted_classes']}: test errors before {c['errors_before']}, "
                  f"auto fix {c['errors_auto']}, oracle {c['errors_oracle']}, whole transfer "
                  f"set {c['errors_full_transfer']}; recall on left-out classes "
                  f"{c['recall_omitted_before']:.3f} -> {c['recall_omitted_auto']:.3f} "
                  f"(teacher {c['teacher_recall_omitted']:.3f})")
    print(f"report: {Path(cfg.out) / 'results.md'} (+ .json, .png); wall time "
          f"{r['wall_seconds']:.0f} s")
    return 0


def _reproduce_specialists(a) -> int:
    from ..experiments import specialists

    if a.seed is not None:
        raise ValueError("specialists takes --seeds (one or more), not --seed")
    cfg = specialists.config_from(
        a.dataset, data_dir=a.data_dir, download=a.download or None,
        out=a.out or f"runs/specialists/{_dataset_name(a.dataset)}", report_dir=a.report_dir,
        seeds=_tuple(a.seeds), device=a.device, fresh=a.fresh or None,
        progress=not a.no_progress, hidden=_tuple(a.hidden),
        generalist_epochs=a.generalist_epochs, num_subsets=a.num_subsets,
        specialist_epochs=_tuple(a.specialist_epochs), special_fraction=a.special_fraction,
        subset_size=a.subset_size, specialist_lr=a.specialist_lr,
        validation_size=a.validation_size)
    if a.subset_size == 0:
        cfg.subset_size = None  # the disjoint k-means partition
    r = specialists.run(cfg)
    print(f"test accuracy: generalist {r['generalist_accuracy']:.4f}, with specialists "
          f"{r['combined_accuracy']:.4f}")
    for row in r["gain_by_covering"]:
        print(f"  covered by {row['covering']}: {row['examples']} examples, "
              f"{row['delta_correct']:+d} correct")
    print(f"report: {Path(cfg.out) / 'results.md'} (+ .json, .png); wall time "
          f"{r['wall_seconds']:.0f} s")
    return 0


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def cmd_demo(a) -> int:
    from ..experiments import hinton_mnist

    # The digits teacher recipe the full reproduction picks on validation; no sweep, so the
    # demo takes about a minute on two cores.
    cfg = hinton_mnist.config_from("digits", out=a.out, teacher_recipe="dropout", sweep=False,
                                   fresh=a.fresh or None, progress=not a.no_progress)
    results = hinton_mnist.run(cfg)
    _print_summary(results, Path(cfg.out))
    return 0


def _print_summary(r: dict, out: Path) -> None:
    n = r["test_size"]
    print()
    print(f"{'model':<44} {'test errors':>12} {'error rate':>11}")
    for key, label in (("teacher", f"teacher ({r['teacher_recipe']})"),
                       ("student", "student, hard labels"),
                       ("distilled", f"student, distilled at T={r['temperature']:g}")):
        e = r[f"{key}_errors"]
        print(f"{label:<44} {e:>12} {100 * e / n:>10.2f}%")
    if r["gap_recovered"] is not None:
        print(f"gap recovered by distillation: {100 * r['gap_recovered']:.1f}%")
    print(f"report: {out / 'results.md'} (+ .json, .png); wall time {r['wall_seconds']:.0f} s")


COMMANDS = {"train": cmd_train, "distill": cmd_distill, "evaluate": cmd_evaluate,
            "reproduce": cmd_reproduce, "demo": cmd_demo, "compress": cmd_compress,
            "fix-bias": cmd_fix_bias}


def main(argv: list[str] | None = None) -> int:
    from ..distill.checkpoint import CheckpointError
    from ..distill.trainer import TrainingDiverged

    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"{exc} (see kdistill --help)", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"kdistill: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"kdistill: training diverged: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kdistill: interrupted; rerun the same command to resume from the last "
              "checkpoint", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
