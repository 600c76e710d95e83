"""The mimic network of model compression (Bucila, Caruana & Niculescu-Mizil 2006, SPEC §7).

A slow, large teacher (the selected ensemble) labels a big transfer set: the original training
rows plus pseudo-data drawn near them with MUNGE (or, as the paper's weak baseline, RANDOM
marginals). A small PyTorch MLP trained on those soft labels with kdistill's trainer then
imitates the teacher at a fraction of its size and prediction time.

Loss: the paper trains on the ensemble's continuous predictions and reports RMSE; it does not
say which loss (SPEC §7.3). We feed ``log p`` of the teacher's probabilities as logits, so the
trainer's T = 1 soft term is the cross-entropy to ``p``, a proper scoring rule minimised at the
same point as the squared error. The original rows are relabelled by the teacher too (the paper
leaves this open).

Without a teacher, ``fit(X, y)`` trains the same network on the hard labels of the original rows
only: the "ANN trained on the original data" baseline.

Labelling a big transfer set with a slow ensemble usually costs more than training the net, so
:func:`build_transfer_set` does it once and ``fit(X, transfer_set=...)`` reuses it: the
compression pipeline trains several mimic architectures on one labelled set and keeps the one
that does best on the hillclimb rows.

``export(path)`` writes the weights, the network's spec, the input encoding and the class names
in one checkpoint (atomically); :func:`load_mimic` rebuilds a working classifier from it without
the ensemble and without pickled code. A path ending in ``.onnx`` or ``.safetensors`` writes
that format instead, with the encoding in a JSON file beside it (:mod:`.mimic_export`).

A teacher that is a scikit-learn estimator and not fitted (``sklearn.base.clone`` unfits it, as
GridSearchCV and cross_val_score do) is fitted on ``fit``'s X and y first, as a copy: a cloned
mimic is fittable. To keep one fitted teacher across clones, wrap it in
``sklearn.frozen.FrozenEstimator``.
"""

from __future__ import annotations

import os
import time
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..distill import methods
from ..distill.checkpoint import CheckpointError, atomic_torch_save, load_checkpoint
from ..distill.data import ArrayDataset
from ..distill.models import build_model, count_parameters
from ..distill.trainer import TrainConfig, train
from . import mimic_export
from .encoding import MISSING, NUMERIC, TabularEncoder
from .inputs import check_table
from .mimic_transfer import TransferSet, concat_rows, teacher_proba
from .munge import ALGORITHMS, Munge
from .random_marginals import RandomMarginals

__all__ = ["MimicClassifier", "TransferSet", "build_transfer_set", "load_mimic", "PSEUDO",
           "MIMIC_FORMAT"]

PSEUDO: tuple[str, ...] = ("munge", "random", "none")
MIMIC_FORMAT = "kdistill-mimic/1"
# Rows per forward pass at prediction: a block's activations stay in cache (256-256 on 10,000
# rows at one thread: about 2x faster than one pass over all rows).
PREDICT_BLOCK = 2048


def build_transfer_set(teacher: Any, X: Any, *, pseudo: str = "munge", k: int = 10,
                       p: float = 0.5, s: float = 10.0, munge_algorithm: str = "sequential",
                       include_original: bool = True, nominal: list[Any] | None = None,
                       random_state: int = 0) -> TransferSet:
    """The original rows (if asked) then ``k * n`` pseudo rows, labelled by ``teacher``.

    Same parameters as :class:`MimicClassifier`; ``nominal`` as positions or labels (None =
    the non-numeric columns). The teacher is called once, on all rows together.
    """
    mimic = MimicClassifier(teacher=teacher, pseudo=pseudo, k=k, p=p, s=s,
                            munge_algorithm=munge_algorithm, include_original=include_original,
                            nominal=nominal, random_state=random_state)
    mimic._check_params()
    if teacher is None:
        raise ValueError("a transfer set needs a teacher to label it")
    X = check_table(X, "MimicClassifier", min_rows=2)
    nominal_ = TabularEncoder(nominal=nominal).fit(X).nominal_
    return mimic._labelled_transfer_set(X, nominal_, mimic._fitted_teacher(X, None))


def _labels(y: Any, n_rows: int) -> np.ndarray:
    """y as 1-D class labels: a column vector is raveled (with sklearn's warning), a continuous
    target refused ("Unknown label type"), missing labels refused."""
    y = column_or_1d(y, warn=True)
    if len(y) != n_rows:
        raise ValueError(f"y must be 1-D with {n_rows} labels; got {len(y)}")
    if pd.isna(y).any():
        raise ValueError("y contains missing values")
    check_classification_targets(y)
    return y


class MimicClassifier(ClassifierMixin, BaseEstimator):
    """A small MLP trained on a teacher's probabilities over MUNGE pseudo-data (or RANDOM).

    Parameters:
      teacher: fitted model with ``predict_proba`` (or a callable ``X -> probabilities``) taking
        the same raw rows as ``fit``; None trains on the hard labels ``y`` of ``X`` only.
      pseudo: ``"munge"``, ``"random"`` or ``"none"`` (only the original rows).
      k: pseudo-data size multiplier (``k * n`` rows; the paper's final runs used 99).
      p, s, munge_algorithm: MUNGE swap probability, local variance, algorithm.
      include_original: add the original rows to the transfer set.
      nominal: nominal columns (labels, or positions for arrays); None = non-numeric columns.
      hidden: hidden layer widths (the paper: one layer of 256).
      epochs, batch_size, lr, weight_decay: Adam with a cosine schedule.
      device: ``"cpu"``, ``"cuda"`` or ``"auto"``; random_state: seeds MUNGE and the network.
      missing: ``"category"`` or ``"impute"``; numeric: ``"standard"``, ``"robust"`` or
        ``"auto"`` (robust for heavy-tailed columns only), as in :class:`TabularEncoder`.

    Fitted attributes: ``model_`` (torch module), ``encoder_``, ``classes_``, ``n_transfer_``,
    ``history_``, ``fit_seconds_``, ``n_features_in_``, ``teacher_`` (the teacher used),
    ``target_`` (the target column a prediction frame must not hold; set by exports that know
    it, else None).
    """

    def __init__(self, teacher: Any = None, pseudo: str = "munge", k: int = 10, p: float = 0.5,
                 s: float = 10.0, munge_algorithm: str = "sequential",
                 include_original: bool = True, nominal: list[Any] | None = None,
                 hidden: tuple[int, ...] = (256,), epochs: int = 30, batch_size: int = 256,
                 lr: float = 1e-3, weight_decay: float = 0.0, device: str = "cpu",
                 random_state: int = 0, missing: str = "category",
                 numeric: str = "standard") -> None:
        self.teacher = teacher
        self.pseudo = pseudo
        self.k = k
        self.p = p
        self.s = s
        self.munge_algorithm = munge_algorithm
        self.include_original = include_original
        self.nominal = nominal
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state
        self.missing = missing
        self.numeric = numeric

    # ------------------------------------------------------------------------------ fit

    def _check_params(self) -> None:
        if self.missing not in MISSING:
            raise ValueError(f"missing must be one of {MISSING}; got {self.missing!r}")
        if self.numeric not in NUMERIC:
            raise ValueError(f"numeric must be one of {NUMERIC}; got {self.numeric!r}")
        if self.pseudo not in PSEUDO:
            raise ValueError(f"pseudo must be one of {PSEUDO}; got {self.pseudo!r}")
        if self.munge_algorithm not in ALGORITHMS:
            raise ValueError(f"munge_algorithm must be one of {ALGORITHMS}; "
                             f"got {self.munge_algorithm!r}")
        if self.teacher is not None and not (hasattr(self.teacher, "predict_proba")
                                             or callable(self.teacher)):
            raise ValueError("teacher must have predict_proba or be a callable")
        if self.teacher is None and self.pseudo != "none":
            raise ValueError(f"pseudo={self.pseudo!r} needs a teacher to label the pseudo-data; "
                             f"pass teacher=... or pseudo='none'")
        if self.pseudo == "none" and not self.include_original:
            raise ValueError("pseudo='none' with include_original=False leaves no training data")
        for name in ("k", "epochs", "batch_size", "random_state"):
            value = getattr(self, name)
            low = 0 if name == "random_state" else 1
            if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
        hidden = tuple(self.hidden)
        if not hidden or any(not isinstance(h, Integral) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty sequence of integers >= 1; "
                             f"got {self.hidden!r}")
        if not isinstance(self.lr, Real) or not np.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a finite number > 0; got {self.lr!r}")
        wd = self.weight_decay
        if not isinstance(wd, Real) or not np.isfinite(wd) or wd < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0; got {wd!r}")

    def _fitted_teacher(self, X: Any, y: Any) -> Any:
        """The teacher, or a copy fitted on X, y when it is an unfitted estimator."""
        teacher = self.teacher
        if not (isinstance(teacher, BaseEstimator) and hasattr(teacher, "fit")):
            return teacher
        try:
            check_is_fitted(teacher)
            return teacher
        except NotFittedError:
            if y is None:
                raise ValueError("MimicClassifier requires y to be passed, but the target y is "
                                 "None: the teacher is not fitted (sklearn.base.clone unfits "
                                 "it, as GridSearchCV does), so a copy is fitted on X, y; or "
                                 "wrap the fitted teacher in sklearn.frozen.FrozenEstimator") \
                    from None
            return clone(teacher).fit(X, y)

    def _labelled_transfer_set(self, X: Any, nominal: list[Any], teacher: Any) -> TransferSet:
        """Original rows (if asked) followed by ``k * n`` pseudo rows, labelled by the teacher;
        ``nominal`` holds the nominal column positions."""
        rows = X
        if self.pseudo != "none":
            if self.pseudo == "munge":
                generator = Munge(self.k, self.p, self.s, nominal=nominal,
                                  algorithm=self.munge_algorithm, random_state=self.random_state)
            else:
                generator = RandomMarginals(self.k, random_state=self.random_state)
            pseudo = generator.fit_sample(X)
            rows = concat_rows(X, pseudo) if self.include_original else pseudo
        proba = teacher_proba(teacher, rows)
        classes = np.asarray(getattr(teacher, "classes_", np.arange(proba.shape[1])))
        if len(classes) != proba.shape[1]:
            classes = np.arange(proba.shape[1])
        return TransferSet(rows, proba, classes, len(X) if self.include_original else 0)

    def fit(self, X: Any, y: Any = None, transfer_set: TransferSet | None = None
            ) -> MimicClassifier:
        """Build the transfer set, label it with the teacher, train the network.

        ``transfer_set`` (from :func:`build_transfer_set` on the same X) skips the building
        and labelling; the input encoding is still fitted on X, the original rows.
        """
        self._check_params()
        start = time.perf_counter()
        X = check_table(X, "MimicClassifier", min_rows=2)
        encoder = TabularEncoder(nominal=self.nominal, missing=self.missing,
                                 numeric=self.numeric).fit(X)
        if self.missing == "impute":  # MUNGE and the teacher see the rows the encoder sees
            filled = encoder.fill_missing(X)
            X = filled if isinstance(X, pd.DataFrame) else filled.to_numpy()
        teacher = None
        if self.teacher is None:
            if transfer_set is not None:
                raise ValueError("transfer_set needs a teacher-mode mimic (teacher=...)")
            if y is None:
                raise ValueError("without a teacher, MimicClassifier requires y to be passed, "
                                 "but the target y is None")
            y = _labels(y, len(X))
            classes, codes = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                raise ValueError(f"y contains a single class ({classes[0]}); need at least 2")
            transfer = X
            targets = None
            labels = torch.as_tensor(codes, dtype=torch.long)
        else:
            if y is not None:
                y = _labels(y, len(X))
            if transfer_set is None:
                teacher = self._fitted_teacher(X, y)
                transfer_set = self._labelled_transfer_set(X, encoder.nominal_, teacher)
            transfer, proba = transfer_set.rows, np.asarray(transfer_set.proba)
            classes = np.asarray(transfer_set.classes)
            if proba.ndim != 2 or len(proba) != len(transfer) or proba.shape[1] != len(classes):
                raise ValueError(f"transfer_set is inconsistent: {len(transfer)} rows, "
                                 f"probabilities {proba.shape}, {len(classes)} classes")
            targets = torch.as_tensor(np.log(np.clip(proba, 1e-7, 1.0)), dtype=torch.float32)
            labels = None
        inputs = torch.as_tensor(encoder.transform(transfer), dtype=torch.float32)
        spec = {"name": "mlp", "in_features": inputs.shape[1], "num_classes": len(classes),
                "hidden": [int(h) for h in self.hidden]}
        torch.manual_seed(self.random_state)
        model = build_model(spec)
        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer="adam",
                          lr=float(self.lr), weight_decay=float(self.weight_decay),
                          schedule="cosine", seed=self.random_state, device=self.device,
                          progress=False)
        data = ArrayDataset(inputs, labels, len(classes), name="transfer set")
        # The ensemble's probabilities at T = 1 as soft targets, or its hard labels.
        method = (methods.get("kd", temperature=1.0, soft_weight=1.0, hard_weight=0.0)
                  if targets is not None else methods.get("ce"))
        result = train(model, data, cfg, method=method, teacher_logits=targets,
                       log=lambda _: None)
        self.model_ = result.model.cpu().eval()
        self.model_spec_ = spec
        self.encoder_ = encoder
        self.teacher_ = teacher if teacher is not None else self.teacher
        self.target_ = None
        self.classes_ = classes
        self.n_features_in_ = encoder.n_features_in_
        self.n_transfer_ = len(inputs)
        self.history_ = result.history
        self.fit_seconds_ = time.perf_counter() - start
        return self

    # ------------------------------------------------------------------------------ predict

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``. X: a DataFrame with the
        fitted columns, or an array with them in fit order (``encoder_.columns_``)."""
        check_is_fitted(self, "model_")
        target = getattr(self, "target_", None)
        if target is not None and isinstance(X, pd.DataFrame) and target in X.columns:
            raise ValueError(f"X still holds the target column {target!r}: drop it before "
                             f"predicting")
        return self.proba_from_encoded(self.encoder_.transform(X))

    def proba_from_encoded(self, Z: np.ndarray) -> np.ndarray:
        """Probabilities for rows already encoded by ``encoder_`` (skips the encoding)."""
        check_is_fitted(self, "model_")
        x = torch.as_tensor(Z, dtype=torch.float32)
        with torch.inference_mode():
            proba = torch.cat([torch.softmax(self.model_(b), dim=1)
                               for b in x.split(PREDICT_BLOCK)])
        return proba.double().numpy()

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def n_parameters(self) -> int:
        check_is_fitted(self, "model_")
        return count_parameters(self.model_)

    # ------------------------------------------------------------------------------ export

    def export(self, path: str | os.PathLike, *, format: str | None = None,
               classes: list[Any] | None = None, target: str | None = None) -> Path:
        """Write weights + spec + encoding + classes atomically; no teacher, no pickled code.

        ``format`` "onnx" or "safetensors" (None: from a ``.onnx`` / ``.safetensors`` suffix)
        writes that format with the encoding beside it in ``<path>.json``; else a torch
        checkpoint for :func:`load_mimic`. ``classes``
        names the classes instead of ``classes_`` (the pipeline trains on integer codes of the
        user's labels); ``target`` is the column a prediction frame must not hold.
        """
        check_is_fitted(self, "model_")
        names = list(self.classes_) if classes is None else list(classes)
        if len(names) != len(self.classes_):
            raise ValueError(f"classes names {len(names)} classes; the mimic predicts "
                             f"{len(self.classes_)}")
        target = target if target is not None else getattr(self, "target_", None)
        parts = {"format": MIMIC_FORMAT, "model_spec": self.model_spec_,
                 "encoder": self.encoder_.to_dict(),
                 "classes": [c.item() if isinstance(c, np.generic) else c for c in names],
                 "target": target}
        suffix = Path(path).suffix.lower()
        format = format or {".onnx": "onnx", ".safetensors": "safetensors"}.get(suffix, "torch")
        if format == "onnx":
            return mimic_export.export_onnx(self.model_, parts, path)
        if format == "safetensors":
            return mimic_export.export_safetensors(self.model_, parts, path)
        state = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
        return atomic_torch_save({**parts, "model_state": state}, path)


def load_mimic(path: str | os.PathLike) -> MimicClassifier:
    """A fitted :class:`MimicClassifier` from :meth:`MimicClassifier.export`'s file (a torch
    checkpoint, or ``.safetensors`` with its JSON spec beside it).

    The result predicts, with ``classes_`` the stored class names; it has no teacher, so
    refitting it needs one (or labels).
    """
    if Path(path).suffix.lower() == ".onnx":
        raise CheckpointError(f"{path} is an ONNX file, for onnxruntime: load_mimic reads the "
                              f".pt or .safetensors export")
    if Path(path).suffix.lower() == ".safetensors":
        model, ckpt = mimic_export.load_safetensors_parts(path)
    else:
        ckpt, model = load_checkpoint(path), None
    if ckpt.get("format") != MIMIC_FORMAT:
        raise CheckpointError(f"{path} is not a kdistill mimic export "
                              f"(format {ckpt.get('format')!r})")
    try:
        if model is None:
            model = build_model(ckpt["model_spec"])
            model.load_state_dict(ckpt["model_state"])
        encoder = TabularEncoder.from_dict(ckpt["encoder"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged mimic export ({str(exc)[:160]})") from None
    spec = ckpt["model_spec"]
    mimic = MimicClassifier(teacher=None, pseudo="none", nominal=encoder.nominal_,
                            hidden=tuple(spec["hidden"]), missing=encoder.missing,
                            numeric=encoder.numeric)
    mimic.model_ = model.eval()
    mimic.model_spec_ = spec
    mimic.encoder_ = encoder
    mimic.classes_ = np.asarray(ckpt["classes"])
    mimic.target_ = ckpt.get("target")
    mimic.teacher_ = None
    mimic.n_features_in_ = encoder.n_features_in_
    mimic.n_transfer_ = None
    mimic.history_ = []
    mimic.fit_seconds_ = None
    return mimic
