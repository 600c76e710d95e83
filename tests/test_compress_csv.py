"""`kdistill compress` on a real-looking CSV, and using its result (issue 14, parts 2, 3).

The file is made by hand: semicolons, an identifier column to drop, missing values in a nominal
column, class labels 1..12. What the commands write is compared with what the saved mimic
computes itself, and the class names with the numbers in the file.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kdistill.cli import main
from kdistill.tabular.encoding import TabularEncoder
from kdistill.tabular.mimic import load_mimic
from kdistill.tabular.problems import read_csv_problem, sniff_separator

QUICK = ["--preset", "tiny", "--n-jobs", "1", "--munge-k", "2", "--mimic-hidden", "16", "4",
         "--mimic-epochs", "5"]
GRADES = list(range(1, 13))


def graded_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    grade = np.resize(np.array(GRADES), n)
    rng.shuffle(grade)
    colour = rng.choice(np.array(["red", "blue", "green"], dtype=object), n)
    colour[rng.random(n) < 0.25] = None
    return pd.DataFrame({"id": [f"u{i}" for i in range(n)],
                         "x0": grade + 0.3 * rng.standard_normal(n),
                         "x1": rng.standard_normal(n), "colour": colour, "grade": grade})


@pytest.fixture(scope="module")
def compressed(tmp_path_factory) -> dict:
    """One quick compress run on the semicolon file, baselines skipped, budget unreachable."""
    d = tmp_path_factory.mktemp("compress")
    frame = graded_frame()
    frame.to_csv(d / "grades.csv", sep=";", index=False)
    assert "\n" in (d / "grades.csv").read_text() and ";" in (d / "grades.csv").read_text()
    return {"dir": d, "csv": d / "grades.csv", "frame": frame, "out": d / "out"}


def run_compress(c: dict, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["compress", str(c["csv"]), "--target", "grade", "--out", str(c["out"]),
                 *QUICK, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compress_survives_semicolons_an_id_column_and_missing_nominal_values(compressed,
                                                                               capsys) -> None:
    c = compressed
    # without --drop the identifier is refused up front, naming the column
    code, _, err = run_compress(c, capsys, "--skip-baselines")
    assert code == 2 and "column 'id'" in err and "--drop" in err and not c["out"].exists()
    code, out, err = run_compress(c, capsys, "--drop", "id", "--skip-baselines",
                                  "--size-budget", "1e9")
    assert code == 0, err
    report = json.loads((c["out"] / "report.json").read_text())
    assert report["separator"] == ";" and report["dropped"] == ["id"]
    assert report["classes"] == GRADES  # numbers, sorted as numbers (not '1', '10', '11', ...)
    assert report["methods"] == ["single", "ensemble", "mimic_munge", "mimic_small"]
    assert report["ann_chosen"] is None and report["gain_captured"] is None
    # nothing fits a 1/1e9 budget: the log and the report say so, and never "within budget"
    assert report["mimic_small_within_budget"] is False
    md = (c["out"] / "report.md").read_text()
    assert "no candidate is within 1/1e+09" in out and "the best within" not in out
    assert "No candidate is within 1/1e+09" in md and "the best within" not in md
    for name, weight in report["selection"]["members"].items():  # members with their weights
        assert f"| {name} | {weight:.4f} |" in md
    assert abs(sum(report["selection"]["members"].values()) - 1) < 1e-3

    mimic = load_mimic(c["out"] / "mimic.pt")
    np.testing.assert_array_equal(mimic.classes_, GRADES)
    X = c["frame"].drop(columns=["id", "grade"])
    assert set(mimic.predict(X)) <= set(GRADES)
    # numpy rows in fit order are the same rows; the target or an extra column is refused
    ordered = X[mimic.encoder_.columns_].to_numpy(dtype=object)
    np.testing.assert_allclose(mimic.predict_proba(ordered), mimic.predict_proba(X))
    with pytest.raises(ValueError, match="still holds the target column 'grade'"):
        mimic.predict_proba(c["frame"].drop(columns=["id"]))
    with pytest.raises(ValueError, match="column 'id', not seen in fit"):
        mimic.predict_proba(c["frame"].drop(columns=["grade"]))
    with pytest.raises(ValueError, match="X has 2 features, but TabularEncoder is expecting 3"):
        mimic.predict_proba(ordered[:, :2])


def test_predict_writes_labels_and_probabilities_under_the_class_names(compressed,
                                                                       capsys) -> None:
    c = compressed
    if not (c["out"] / "mimic.pt").is_file():
        code, _, err = run_compress(c, capsys, "--drop", "id", "--skip-baselines")
        assert code == 0, err
    new = graded_frame(50, seed=7)
    new.loc[:4, "colour"] = None
    new.to_csv(c["dir"] / "new.csv", sep=";", index=False)
    pred = c["dir"] / "predictions.csv"
    code = main(["predict", str(c["out"] / "mimic.pt"), str(c["dir"] / "new.csv"), "--out",
                 str(pred)])
    err = capsys.readouterr().err
    assert code == 2 and "holds the target column 'grade'" in err and "--drop grade" in err
    assert not pred.exists()
    code = main(["predict", str(c["out"] / "mimic.pt"), str(c["dir"] / "new.csv"), "--drop",
                 "id", "--drop", "grade", "--out", str(pred)])
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(pred)
    assert list(table.columns) == ["prediction"] + [f"proba_{g}" for g in GRADES]
    expected = load_mimic(c["out"] / "mimic.pt").predict_proba(new.drop(columns=["id",
                                                                                 "grade"]))
    proba = table.drop(columns=["prediction"]).to_numpy()
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(table["prediction"], np.array(GRADES)[expected.argmax(1)])


def test_read_csv_problem_sniffs_drops_and_keeps_numeric_labels(tmp_path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a;b;cls\n1;x;2.0\n2;y;10.0\n3;x;1.0\n4;y;2.0\n")
    assert sniff_separator(path) == ";"
    X, y, classes = read_csv_problem(path, "cls")
    assert classes == [1, 2, 10] and isinstance(classes[0], int)
    np.testing.assert_array_equal(y, [1, 2, 0, 1])
    X, _, _ = read_csv_problem(path, "cls", drop=["b"])
    assert list(X.columns) == ["a"]
    with pytest.raises(ValueError, match="column to drop 'zz' not in d.csv"):
        read_csv_problem(path, "cls", drop=["zz"])
    with pytest.raises(ValueError, match="cannot drop the target column 'cls'"):
        read_csv_problem(path, "cls", drop=["cls"])
    # read as commas, the header is one mashed column: the message shows it and the separator
    with pytest.raises(ValueError, match=r"columns: a;b;cls; separator ','"):
        read_csv_problem(path, "cls", sep=",")
    path.write_text("a,cls\n1,0.5\n2,1.5\n3,0.25\n")
    with pytest.raises(ValueError, match="non-integer numbers .*0.5.*continuous"):
        read_csv_problem(path, "cls")
    (tmp_path / "t.tsv").write_text("a\tcls\n1\tn\n2\ty\n")
    assert sniff_separator(tmp_path / "t.tsv") == "\t"


def test_encoder_missing_values_category_or_imputed() -> None:
    frame = pd.DataFrame({"n": [1.0, np.nan, 3.0, 5.0], "c": ["a", None, "a", "b"]})
    # category: a missing nominal value is its own category; a missing number is refused
    with pytest.raises(ValueError, match="column 'n' is numeric with 1 missing"):
        TabularEncoder().fit(frame)
    cat = TabularEncoder().fit(frame.assign(n=[1.0, 2.0, 3.0, 5.0]))
    assert cat.feature_names_out() == ["n", "c=NA", "c=a", "c=b"]
    # impute: the training mean and the most frequent value, computed here by hand
    enc = TabularEncoder(missing="impute").fit(frame)
    std = np.std([1.0, 3.0, 5.0])
    expected = np.array([[(1 - 3) / std, 1, 0], [0, 1, 0], [0, 1, 0], [(5 - 3) / std, 0, 1]])
    np.testing.assert_allclose(enc.transform(frame), expected, rtol=1e-6)
    again = TabularEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    np.testing.assert_array_equal(again.transform(frame), enc.transform(frame))
    filled = enc.fill_missing(frame)
    assert filled["n"].tolist() == [1.0, 3.0, 3.0, 5.0] and filled["c"].tolist()[1] == "a"
    # a column read as floats (it had gaps) matches the same column read as integers
    nominal = TabularEncoder(nominal=["k"]).fit(pd.DataFrame({"k": [1.0, 2.0, np.nan, 2.0]}))
    np.testing.assert_array_equal(nominal.transform(pd.DataFrame({"k": [1, 2]})),
                                  [[1, 0, 0], [0, 1, 0]])


def test_category_codes_match_the_row_by_row_rule() -> None:
    """The encoder compares each distinct value once; the codes equal comparing every row's
    text (the rule written out here), mixed types, gaps, True beside 1 and unseen values
    included."""
    from kdistill.tabular.encoding import _category_codes, _text

    def by_row(values: pd.Series, categories: list) -> list[int]:
        names = [_text(c) for c in categories]
        return [names.index(t) if t in names else -1 for t in
                ("NA" if pd.isna(v) else _text(v) for v in values)]

    cases = [
        (pd.Series([3, 3.0, "3", None, np.nan, "x", 7.5, "NA", "new"], dtype=object),
         [3, "x", 7.5, "NA"]),
        (pd.Series([1, True, 0, False, 1.0], dtype=object), [1, True, 0, False]),
        (pd.Series([1.0, 2.0, np.nan, 3.0]), [1, 2]),
        (pd.Series(["a", "b", None, "zz"]), ["a", "b", "NA"]),
        (pd.Series(["b", "a", None], dtype="category"), ["a", "b", "NA"]),
        (pd.Series([], dtype=object), ["a"]),
    ]
    for values, categories in cases:
        assert _category_codes(values, categories).tolist() == by_row(values, categories)


def test_missing_numbers_are_refused_up_front_or_imputed_on_request(tmp_path, capsys) -> None:
    frame = graded_frame(120, seed=3).drop(columns=["id"])
    frame.loc[[2, 30, 61], "x1"] = np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    argv = ["compress", str(tmp_path / "gaps.csv"), "--target", "grade", "--out",
            str(tmp_path / "out"), *QUICK, "--skip-baselines"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "column 'x1' is numeric with 3 missing" in err and "--missing impute" in err
    assert not (tmp_path / "out").exists()
    assert main([*argv, "--missing", "impute"]) == 0, capsys.readouterr().err
    mimic = load_mimic(tmp_path / "out" / "mimic.pt")
    fill = mimic.encoder_.fill_
    assert set(fill) == {"x0", "x1", "colour"} and fill["colour"] in ("red", "blue", "green")
    rows = frame.drop(columns=["grade"]).iloc[:5].copy()
    gaps = rows.assign(x1=np.nan, colour=None)
    np.testing.assert_allclose(mimic.predict_proba(gaps),
                               mimic.predict_proba(rows.assign(x1=fill["x1"],
                                                               colour=fill["colour"])))
