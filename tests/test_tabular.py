"""UCI problems from mlbench, the split protocol, the encoder and CSV reading."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from kdistill.tabular.encoding import TabularEncoder
from kdistill.tabular.problems import (
    MLBENCH_DIR,
    PROBLEMS,
    load_mlbench,
    load_problem,
    read_csv_problem,
    split_protocol,
)

needs_mlbench = pytest.mark.skipif(not (MLBENCH_DIR / "LetterRecognition.rda").is_file(),
                                   reason="Debian's r-cran-mlbench is not installed")


@needs_mlbench
def test_letter_problems_match_the_paper_definitions() -> None:
    raw = load_mlbench("LetterRecognition")
    letters = raw["lettr"].astype(str).to_numpy()
    p1, p2 = load_problem("letter.p1"), load_problem("letter.p2")
    assert p1.X.shape == (20000, 16) and p1.nominal == []
    assert "lettr" not in p1.X.columns
    np.testing.assert_array_equal(p1.y, (letters == "O").astype(int))
    np.testing.assert_array_equal(p2.y, np.isin(letters, list("ABCDEFGHIJKLM")).astype(int))
    assert 0.03 < p1.y.mean() < 0.05 and 0.45 < p2.y.mean() < 0.55
    assert p1.protocol == (4000, 1000, None)


@needs_mlbench
def test_other_problems_and_nominal_columns() -> None:
    dna = load_problem("dna")
    assert dna.X.shape == (3186, 180) and len(dna.nominal) == 180
    assert all(isinstance(dna.X[c].dtype, pd.CategoricalDtype) for c in dna.nominal)
    assert dna.y.sum() == 1654  # 'n' rows of the StatLog DNA data
    sat = load_problem("satellite")
    assert sat.X.shape == (6435, 36) and sat.y.sum() == 626
    assert load_problem("shuttle").y.sum() == 45586
    assert set(PROBLEMS) == {"letter.p1", "letter.p2", "satellite", "dna", "shuttle"}
    with pytest.raises(ValueError, match="unknown problem"):
        load_problem("adult")


def test_load_mlbench_missing_folder_says_how_to_get_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="r-cran-mlbench"):
        load_mlbench("DNA", tmp_path)


def test_split_protocol_is_disjoint_and_sized() -> None:
    tr, hi, te = split_protocol(100, 50, 20, None, seed=3)
    assert (len(tr), len(hi), len(te)) == (50, 20, 30)
    assert len(np.unique(np.concatenate([tr, hi, te]))) == 100
    _, _, te = split_protocol(100, 50, 20, 10, seed=3)
    assert len(te) == 10
    with pytest.raises(ValueError, match="too few rows"):
        split_protocol(60, 50, 20)


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "a": [1.0, 2.0, 3.0, 6.0],
        "color": ["red", "blue", "red", "green"],
        "flag": [True, False, True, True],
        "b": [10, 10, 10, 10],
    })


def test_encoder_matches_an_independent_encoding() -> None:
    df = frame()
    enc = TabularEncoder().fit(df)
    assert enc.nominal_ == ["color", "flag"]
    Z = enc.transform(df)
    a = df["a"].to_numpy()
    expected = np.column_stack([
        (a - a.mean()) / a.std(),
        pd.get_dummies(df["color"]).reindex(columns=["blue", "green", "red"]).to_numpy(float),
        pd.get_dummies(df["flag"]).to_numpy(float),  # False, True (sorted as text)
        np.zeros(4),  # constant column: scale 1
    ])
    np.testing.assert_allclose(Z, expected, rtol=1e-6)
    assert enc.feature_names_out()[1:4] == ["color=blue", "color=green", "color=red"]
    unseen = df.assign(color=["purple"] * 4)
    assert np.all(enc.transform(unseen)[:, 1:4] == 0)
    ordinal = TabularEncoder(encoding="ordinal").fit(df).transform(df)
    np.testing.assert_array_equal(ordinal[:, 1], [2, 0, 2, 1])


def test_encoder_json_round_trip_and_sklearn_conventions() -> None:
    df = frame()
    enc = TabularEncoder(nominal=["color", "flag", "b"]).fit(df)
    again = TabularEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    np.testing.assert_array_equal(again.transform(df), enc.transform(df))
    assert clone(enc).get_params() == {"nominal": ["color", "flag", "b"], "encoding": "onehot",
                                       "max_categories": 50, "missing": "category",
                                       "numeric": "standard"}
    assert TabularEncoder().set_params(encoding="ordinal").encoding == "ordinal"


def test_robust_numeric_encoding_by_hand() -> None:
    # a: median 0, quartiles 0 and 1.5 (numpy's linear rule on 7 values): s = 1.5 / 1.349;
    # z: half the values equal the median, so the IQR is 0 and s is the mean |z - median|.
    df = pd.DataFrame({"a": [0, 0, 0, 0, 1, 2, 100.0], "z": [5, 5, 5, 5, 5, 5, 9.0],
                       "c": [3.0] * 7})
    enc = TabularEncoder(numeric="robust").fit(df)
    s_a, s_z = 1.5 / 1.349, 4 / 7
    expected = np.column_stack([np.arcsinh(df["a"] / s_a), np.arcsinh((df["z"] - 5) / s_z),
                                np.zeros(7)])               # a constant column: scale 1
    np.testing.assert_allclose(enc.transform(df), expected, rtol=1e-6)
    assert enc.scale_ == pytest.approx({"a": s_a, "z": s_z, "c": 1.0})
    again = TabularEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again.numeric == "robust"
    np.testing.assert_array_equal(again.transform(df), enc.transform(df))
    old = {k: v for k, v in TabularEncoder().fit(df).to_dict().items() if k != "numeric"}
    assert TabularEncoder.from_dict(old).numeric == "standard"   # exports made before it
    with pytest.raises(ValueError, match="numeric must be one of"):
        TabularEncoder(numeric="log").fit(df)
    # An encoder pickled (in a saved ensemble) before `numeric` existed still transforms.
    standard = TabularEncoder().fit(df)
    state = dict(standard.__getstate__())
    del state["numeric"]
    older = TabularEncoder.__new__(TabularEncoder)
    older.__setstate__(state)
    np.testing.assert_array_equal(older.transform(df), standard.transform(df))
    assert pickle.loads(pickle.dumps(enc)).numeric == "robust"


def test_encoder_errors_name_the_column() -> None:
    ids = pd.DataFrame({"x": np.arange(80.0), "id": [f"user{i}" for i in range(80)]})
    with pytest.raises(ValueError, match="column 'id' is not numeric.*cannot encode"):
        TabularEncoder().fit(ids)
    with pytest.raises(ValueError, match="column 'a' is numeric with 1 missing"):
        TabularEncoder().fit(frame().assign(a=[1.0, np.nan, 2.0, 3.0]))
    with pytest.raises(ValueError, match="encoding"):
        TabularEncoder(encoding="hash").fit(frame())
    enc = TabularEncoder().fit(frame())
    with pytest.raises(ValueError, match="lacks column 'color'"):
        enc.transform(frame().drop(columns=["color"]))
    # a missing nominal value is its own category
    with_na = frame().assign(color=["red", None, "red", "green"])
    assert "color=NA" in TabularEncoder().fit(with_na).feature_names_out()


def test_read_csv_problem(tmp_path) -> None:
    path = tmp_path / "d.csv"
    pd.DataFrame({"x": [1, 2, 3, 4], "cls": ["b", "a", "b", "a"]}).to_csv(path, index=False)
    X, y, classes = read_csv_problem(path, "cls")
    assert list(X.columns) == ["x"] and classes == ["a", "b"]
    np.testing.assert_array_equal(y, [1, 0, 1, 0])
    with pytest.raises(ValueError, match="target column 'label' not in d.csv"):
        read_csv_problem(path, "label")
    with pytest.raises(FileNotFoundError):
        read_csv_problem(tmp_path / "none.csv", "cls")
    pd.DataFrame({"x": [1, 2], "cls": ["a", "a"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="single class"):
        read_csv_problem(path, "cls")


def _encode_by_hand(enc: TabularEncoder, df: pd.DataFrame) -> np.ndarray:
    """The slow reference: every cell by itself, from the encoder's fitted statistics."""
    def text(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "NA"
        return str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v)

    rows = []
    for i in range(len(df)):
        row = []
        for c in enc.columns_:
            v = df[c].iloc[i]
            if c in enc.categories_:
                if pd.isna(v) and c in enc.fill_:
                    v = enc.fill_[c]
                names = [text(x) for x in enc.categories_[c]]
                hit = [float(text(v) == n) for n in names]
                if enc.encoding == "ordinal":
                    row.append(float(hit.index(1.0)) if 1.0 in hit else -1.0)
                else:
                    row += hit
            else:
                x = float(v)
                if np.isnan(x):
                    x = enc.fill_[c]
                z = (x - enc.mean_[c]) / enc.scale_[c]
                row.append(np.arcsinh(z) if c in enc.robust_ else z)
        rows.append(row)
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize("encoding,numeric,missing", [("onehot", "standard", "category"),
                                                      ("onehot", "robust", "impute"),
                                                      ("ordinal", "standard", "impute"),
                                                      ("onehot", "auto", "category")])
def test_vectorized_transform_matches_the_cell_by_cell_reference(encoding, numeric,
                                                                 missing) -> None:
    rng = np.random.default_rng(0)
    n = 60
    bits = pd.CategoricalDtype(["0", "1"])
    df = pd.DataFrame({
        "f": rng.normal(size=n) * 10,
        "tail": np.exp(2 * rng.normal(size=n)),                    # lognormal, sigma 2
        "s1": pd.Series(rng.choice(["0", "1"], n)).astype(bits),      # two columns, one dtype
        "i": rng.integers(-5, 50, n),
        "s2": pd.Series(rng.choice(["0", "1"], n)).astype(bits),
        "colour": rng.choice(["red", "green", "blue"], n).astype(object),
        "as_text": rng.integers(0, 9, n).astype(str).astype(object),  # numbers written as text
        "k": pd.Categorical(rng.choice(["a", "b", "c"], n)),
        "flag": rng.random(n) > 0.5,
    })
    nominal = ["s1", "s2", "colour", "k", "flag"]
    enc = TabularEncoder(nominal=nominal, encoding=encoding, numeric=numeric,
                         missing=missing).fit(df)
    new = df.copy()
    new.loc[3, "colour"] = "purple"                          # unseen: all zeros / -1
    new["k"] = new["k"].cat.add_categories(["z"])
    new.loc[5, "k"] = "z"                                    # unseen in a categorical
    new.loc[7, "s1"] = np.nan                                # a missing categorical
    if missing == "impute":
        new.loc[9, "f"] = np.nan                             # the fast numeric block falls back
    Z = enc.transform(new[list(reversed(new.columns))])      # columns in another order
    assert Z.dtype == np.float32 and Z.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(Z, _encode_by_hand(enc, new), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(enc.transform(new.to_numpy(dtype=object)[:, :]),
                                  enc.transform(new))          # an array in fit order


def test_auto_numeric_encodes_only_heavy_tailed_columns_robustly() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"normal": rng.normal(size=500), "uniform": rng.random(500),
                       "lognormal": np.exp(2 * rng.normal(size=500))})
    enc = TabularEncoder(numeric="auto").fit(df)
    assert enc.robust_ == ["lognormal"]
    x = df["lognormal"].to_numpy()
    q1, q3 = np.quantile(x, [0.25, 0.75])
    expected = np.column_stack([(df["normal"] - df["normal"].mean()) / df["normal"].std(ddof=0),
                                (df["uniform"] - df["uniform"].mean()) / df["uniform"].std(ddof=0),
                                np.arcsinh((x - np.median(x)) / ((q3 - q1) / 1.349))])
    np.testing.assert_allclose(enc.transform(df), expected, rtol=1e-5, atol=1e-6)
    again = TabularEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again.robust_ == ["lognormal"]
    np.testing.assert_array_equal(again.transform(df), enc.transform(df))
    # exports made before "auto": every numeric column robust or none, as `numeric` says
    for numeric, robust in (("robust", ["normal", "uniform", "lognormal"]), ("standard", [])):
        old = TabularEncoder(numeric=numeric).fit(df).to_dict()
        del old["robust"]
        assert TabularEncoder.from_dict(old)._robust_columns() == robust
