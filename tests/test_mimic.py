"""The mimic network: learns its teacher, MUNGE/RANDOM transfer sets, export without the
teacher, scikit-learn conventions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from kdistill.distill.checkpoint import CheckpointError, atomic_torch_save
from kdistill.tabular.mimic import MimicClassifier, TransferSet, build_transfer_set, load_mimic


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class FormulaTeacher:
    """p(class 1) = sigmoid(2 x0 - x1 + 1.5 [color == 'red']); records what it was asked."""

    classes_ = np.array([0, 1])

    def __init__(self) -> None:
        self.seen: list[pd.DataFrame] = []

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self.seen.append(X)
        p = sigmoid(2 * X["x0"].to_numpy() - X["x1"].to_numpy()
                    + 1.5 * (X["color"].astype(str) == "red").to_numpy())
        return np.column_stack([1 - p, p])


def table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x0": rng.standard_normal(n), "x1": rng.standard_normal(n),
                         "color": pd.Categorical(rng.choice(["red", "blue", "green"], n))})


def fast(**kw) -> MimicClassifier:
    params = dict(k=4, hidden=(32,), epochs=40, batch_size=128, lr=3e-3, random_state=0)
    params.update(kw)
    return MimicClassifier(**params)


def test_mimic_learns_the_teacher_function() -> None:
    teacher = FormulaTeacher()
    X = table()
    mimic = fast(teacher=teacher).fit(X)
    test = table(300, seed=1)
    err = np.abs(mimic.predict_proba(test)[:, 1] - teacher.predict_proba(test)[:, 1])
    assert err.mean() < 0.05
    np.testing.assert_array_equal(mimic.classes_, [0, 1])
    assert set(np.unique(mimic.predict(test))) <= {0, 1}


def test_transfer_set_munge_random_and_original_rows() -> None:
    X = table(50)
    teacher = FormulaTeacher()
    mimic = fast(teacher=teacher, k=3, epochs=1).fit(X)
    assert mimic.n_transfer_ == 4 * 50
    seen = teacher.seen[0]
    pd.testing.assert_frame_equal(seen.iloc[:50].reset_index(drop=True), X)
    assert set(seen["color"].astype(str)) <= {"red", "blue", "green"}
    assert not np.allclose(seen["x0"].to_numpy()[50:100], X["x0"].to_numpy())  # perturbed
    assert fast(teacher=teacher, k=3, epochs=1, include_original=False).fit(X).n_transfer_ == 150
    teacher.seen.clear()
    fast(teacher=teacher, pseudo="random", k=2, epochs=1).fit(X)
    rnd = teacher.seen[0].iloc[50:]
    for col in ("x0", "x1"):  # RANDOM draws every column from its own marginal
        assert set(rnd[col]) <= set(X[col])
    assert fast(teacher=teacher, pseudo="none", epochs=1).fit(X).n_transfer_ == 50


def test_a_prebuilt_transfer_set_trains_the_same_net_without_asking_the_teacher() -> None:
    X = table(60)
    teacher = FormulaTeacher()
    transfer = build_transfer_set(teacher, X, k=3, random_state=0)
    assert len(teacher.seen) == 1 and len(transfer.rows) == 4 * 60
    assert transfer.n_original == 60 and list(transfer.classes) == [0, 1]
    np.testing.assert_allclose(transfer.proba, teacher.predict_proba(transfer.rows))
    teacher.seen.clear()
    reused = fast(teacher=teacher, k=3, epochs=3).fit(X, transfer_set=transfer)
    assert teacher.seen == []  # labelled once, reused
    direct = fast(teacher=FormulaTeacher(), k=3, epochs=3).fit(X)  # builds the same set itself
    test = table(50, seed=3)
    np.testing.assert_allclose(reused.predict_proba(test), direct.predict_proba(test),
                               atol=1e-6)
    bad = TransferSet(transfer.rows, transfer.proba[:10], transfer.classes, 60)
    with pytest.raises(ValueError, match="transfer_set is inconsistent"):
        fast(teacher=teacher, epochs=1).fit(X, transfer_set=bad)
    with pytest.raises(ValueError, match="teacher-mode"):
        MimicClassifier(pseudo="none", epochs=1).fit(X, np.arange(60) % 2, transfer_set=transfer)


def test_export_and_load_predict_without_the_teacher(tmp_path) -> None:
    X = table()
    mimic = fast(teacher=FormulaTeacher(), epochs=5).fit(X)
    path = mimic.export(tmp_path / "mimic.pt")
    loaded = load_mimic(path)
    assert loaded.teacher is None
    test = table(40, seed=2)
    np.testing.assert_allclose(loaded.predict_proba(test), mimic.predict_proba(test))
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["model_spec"]["hidden"] == [32] and ckpt["encoder"]["nominal"] == ["color"]
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temporary left behind
    atomic_torch_save({"format": 1, "model_state": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a kdistill mimic"):
        load_mimic(tmp_path / "other.pt")


def test_robust_numeric_inputs_are_learned_and_survive_export(tmp_path) -> None:
    """A heavy-tailed column (a few values 1,000 sd out): the net sees asinh-scaled inputs."""
    X = table()
    X.loc[:4, "x1"] = [3e3, -2e3, 5e3, 1e4, -8e3]
    mimic = fast(teacher=FormulaTeacher(), numeric="robust").fit(X)
    assert mimic.encoder_.numeric == "robust"
    assert np.abs(mimic.encoder_.transform(X)).max() < 12   # asinh(1e4 / ~1) is about 10
    test = table(300, seed=1)
    err = np.abs(mimic.predict_proba(test)[:, 1] - FormulaTeacher().predict_proba(test)[:, 1])
    assert err.mean() < 0.05
    loaded = load_mimic(mimic.export(tmp_path / "robust.pt"))
    assert loaded.numeric == "robust"
    np.testing.assert_allclose(loaded.predict_proba(test), mimic.predict_proba(test))
    with pytest.raises(ValueError, match="numeric must be one of"):
        fast(teacher=FormulaTeacher(), numeric="quantile").fit(X)


def test_hard_label_mode_is_the_ann_baseline() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = np.where(X[:, 0] - X[:, 2] > 0, "yes", "no")
    ann = MimicClassifier(pseudo="none", hidden=(16,), epochs=60, batch_size=64,
                          lr=3e-3).fit(X, y)
    assert list(ann.classes_) == ["no", "yes"]
    assert (ann.predict(X) == y).mean() > 0.95


def test_sklearn_clone_params_and_a_frozen_teacher() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    y = (X[:, 0] > 0).astype(int)
    teacher = FrozenEstimator(LogisticRegression().fit(X, y))
    mimic = fast(teacher=teacher, epochs=2)
    copy = clone(mimic)
    assert copy.get_params()["k"] == 4 and copy.get_params()["hidden"] == (32,)
    copy.set_params(epochs=3).fit(X)  # the frozen teacher survived the clone
    assert copy.predict_proba(X).shape == (120, 2)


@pytest.mark.parametrize("kwargs, X_bad, match", [
    ({"pseudo": "munge"}, None, "needs a teacher"),
    ({"pseudo": "gan", "teacher": FormulaTeacher()}, None, "pseudo must be"),
    ({"hidden": (0,), "pseudo": "none"}, None, "hidden"),
    ({"lr": -1.0, "pseudo": "none"}, None, "lr"),
    ({"k": 0, "teacher": FormulaTeacher()}, None, "k must be"),
    ({"pseudo": "none"}, "nan", "missing"),
])
def test_bad_input_raises(kwargs, X_bad, match) -> None:
    X = table(30)
    y = np.arange(30) % 2
    if X_bad == "nan":
        X.loc[3, "x0"] = np.nan
    with pytest.raises(ValueError, match=match):
        MimicClassifier(**kwargs).fit(X, y)


def test_single_class_and_mismatched_columns() -> None:
    X = table(30)
    with pytest.raises(ValueError, match="single class"):
        MimicClassifier(pseudo="none", epochs=1).fit(X, np.zeros(30))
    mimic = MimicClassifier(pseudo="none", epochs=1).fit(X, np.arange(30) % 2)
    with pytest.raises(ValueError, match="lacks column 'x1'"):
        mimic.predict_proba(X.drop(columns=["x1"]))
