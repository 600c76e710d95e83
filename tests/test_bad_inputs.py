"""A battery of bad inputs over every command (issue #10 item 8).

Each case runs `kdistill.cli.main` in-process and asserts the promise: exit code 2 (1 for a
true divergence), exactly one line on stderr, no traceback, and nothing written under the
case's folder (a listing before and after). A case that runs longer than a few seconds has
started work it should have refused: an alarm stops it and the case fails.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kdistill.cli import main
from kdistill.distill.models import MLP

TINY = ["--hidden", "8", "--epochs", "1", "--batch-size", "64", "--no-progress"]
BIG = str(10 ** 7)
HUGE_INT = str(10 ** 20)
ALARM_S = int(os.environ.get("KDISTILL_BAD_INPUT_ALARM", "20"))


class _TookTooLong(BaseException):
    """Raised by the alarm: not an Exception, so main cannot swallow it."""


def _listing(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1)
                  for p in root.rglob("*"))


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _checkpoint(model: torch.nn.Module, spec: dict) -> dict:
    return {"format": 2, "model_spec": spec, "model_state": model.state_dict()}


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict[str, str]:
    """Shared inputs: a trained digits teacher, broken checkpoints, npz and CSV files."""
    d = tmp_path_factory.mktemp("fixtures")
    teacher = d / "teacher"
    assert main(["train", "--dataset", "digits", "--out", str(teacher), *TINY]) == 0
    f = {"teacher": str(teacher / "checkpoint.pt"), "fx": str(d)}
    torch.manual_seed(0)
    spec16 = {"name": "mlp", "in_features": 16, "num_classes": 10, "hidden": [8]}
    f["in16"] = str(_save(d / "in16.pt", _checkpoint(MLP(16, 10, [8]), spec16)))
    spec3 = {"name": "mlp", "in_features": 64, "num_classes": 3, "hidden": [8]}
    f["cls3"] = str(_save(d / "cls3.pt", _checkpoint(MLP(64, 3, [8]), spec3)))
    nan_model = MLP(64, 10, [8])
    with torch.no_grad():
        nan_model.head.weight.fill_(float("nan"))
    spec = {"name": "mlp", "in_features": 64, "num_classes": 10, "hidden": [8]}
    f["nan"] = str(_save(d / "nan.pt", _checkpoint(nan_model, spec)))
    f["state_list"] = str(_save(d / "state_list.pt", {"format": 2, "model_spec": spec,
                                                       "model_state": [1, 2, 3]}))
    f["nospec"] = str(_save(d / "nospec.pt", {"format": 2,
                                              "model_state": MLP(64, 10, [8]).state_dict()}))
    f["badspec"] = str(_save(d / "badspec.pt", {"format": 2, "model_spec": {"name": "nope"},
                                                "model_state": {}}))
    f["specnotdict"] = str(_save(d / "specnotdict.pt", {"format": 2, "model_spec": [1],
                                                        "model_state": {}}))
    f["wrongweights"] = str(_save(d / "wrongweights.pt", _checkpoint(MLP(64, 10, [16]), spec)))
    f["list"] = str(_save(d / "list.pt", [1, 2, 3]))
    f["tensor"] = str(_save(d / "tensor.pt", torch.zeros(3)))
    (d / "corrupt.pt").write_bytes(b"PK\x03\x04 not really a zip" * 10)
    (d / "empty.pt").write_bytes(b"")
    (d / "text.pt").write_text("hello\n")
    f.update(corrupt=str(d / "corrupt.pt"), empty=str(d / "empty.pt"), text=str(d / "text.pt"))
    _npz_fixtures(d, f)
    _csv_fixtures(d, f)
    _idx_fixtures(d, f)
    return f


def _npz_fixtures(d: Path, f: dict) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 16)).astype(np.float32), np.arange(40) % 3
    good = {"x_train": x, "y_train": y, "x_test": x[:10], "y_test": y[:10]}
    variants = {
        "npz_missing": {k: v for k, v in good.items() if k != "y_test"},
        "npz_lengths": {**good, "y_train": y[:30]},
        "npz_1d": {**good, "x_train": x[:, 0], "x_test": x[:10, 0]},
        "npz_neg_label": {**good, "y_train": np.where(y == 0, -1, y)},
        "npz_float_label": {**good, "y_train": y.astype(np.float64)},
        "npz_nan_label": {**good, "y_train": np.where(y == 0, np.nan, y)},
        "npz_2d_label": {**good, "y_train": y[:, None]},
        "npz_empty_train": {**good, "x_train": x[:0], "y_train": y[:0]},
        "npz_empty_test": {**good, "x_test": x[:0], "y_test": y[:0]},
        "npz_shape": {**good, "x_test": x[:10, :8]},
        "npz_nan_pixels": {**good, "x_train": np.where(x > 0.9, np.nan, x)},
        "npz_inf_test": {**good, "x_test": np.full((10, 16), np.inf, np.float32)},
        "npz_one_class": {**good, "y_train": np.zeros(40, int), "y_test": np.zeros(10, int)},
        "npz_string_x": {**good, "x_train": np.array(["a"] * 40)},
    }
    for name, arrays in variants.items():
        np.savez(d / f"{name}.npz", **arrays)
        f[name] = str(d / f"{name}.npz")
    (d / "npz_text.npz").write_text("not an npz\n")
    (d / "npz_dir.npz").mkdir()
    f["npz_text"], f["npz_dir"] = str(d / "npz_text.npz"), str(d / "npz_dir.npz")
    # digits-shaped data of another width, for the shape checks against the digits teacher
    np.savez(d / "wide.npz", x_train=rng.random((40, 20)).astype(np.float32),
             y_train=np.arange(40) % 10, x_test=rng.random((10, 20)).astype(np.float32),
             y_test=np.arange(10) % 10)
    f["wide"] = str(d / "wide.npz")


def _csv_fixtures(d: Path, f: dict) -> None:
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [f"{rng.random():.3f},{rng.random():.3f},{i % 2}" for i in range(80)]
    texts = {
        "csv": "\n".join(rows) + "\n",
        "csv_empty": "",
        "csv_header": "a,b,label\n",
        "csv_one_class": "\n".join(["a,b,label"] + [f"{i},{i},x" for i in range(80)]) + "\n",
        "csv_nan_label": "\n".join(rows[:40] + ["0.5,0.5,"] + rows[40:]) + "\n",
        "csv_only_target": "\n".join(["label"] + [str(i % 2) for i in range(80)]) + "\n",
        "csv_few_rows": "\n".join(rows[:6]) + "\n",
        "csv_ragged": "a,b,label\n1,2,0\n1,2,3,4,5\n",
        "csv_inf": "\n".join(rows[:40] + ["inf,0.5,1"] + rows[40:]) + "\n",
        "csv_continuous": "\n".join(["a,b,label"] + [f"{i},{i},{rng.random():.3f}"
                                                      for i in range(80)]) + "\n",
        "csv_numeric_nan": "\n".join(rows[:40] + [",0.5,1"] + rows[40:]) + "\n",
        "csv_ids": "\n".join(["a,b,id,label"] + [f"{i},{i},user{i},{i % 2}"
                                               for i in range(80)]) + "\n",
        "csv_only_a": "\n".join(["a"] + [f"{rng.random():.3f}" for _ in range(10)]) + "\n",
        "csv_extra": "\n".join(["a,b,c"] + [f"{i},{i},{i}" for i in range(10)]) + "\n",
    }
    for name, text in texts.items():
        (d / f"{name}.csv").write_text(text)
        f[name] = str(d / f"{name}.csv")
    (d / "csv_binary.csv").write_bytes(bytes(range(256)) * 4)
    f["csv_binary"] = str(d / "csv_binary.csv")
    # a tabular mimic of the good CSV's columns, as kdistill compress saves it
    from kdistill.tabular.mimic import MimicClassifier

    frame = pd.read_csv(f["csv"])
    mimic = MimicClassifier(pseudo="none", hidden=(4,), epochs=1).fit(
        frame[["a", "b"]], frame["label"])
    f["mimic"] = str(mimic.export(d / "mimic.pt", target="label"))


def _idx_fixtures(d: Path, f: dict) -> None:
    """An MNIST-style folder whose training images are float32 IDX with NaN pixels."""
    import gzip
    import struct

    folder = d / "idx_nan"
    folder.mkdir()
    for part, n in (("train", 20), ("t10k", 10)):
        images = np.random.default_rng(0).random((n, 28, 28)).astype(">f4")
        if part == "train":
            images[0, 0, 0] = np.nan
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr, code in (("images-idx3", images, 0x0D), ("labels-idx1", labels, 0x08)):
            header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim,
                                                                  *arr.shape)
            with gzip.open(folder / f"{part}-{kind}-ubyte.gz", "wb") as fh:
                fh.write(header + arr.tobytes())
    f["idx_nan"] = str(folder)


def C(case_id: str, argv: list[str], *words: str, code: int = 2):
    return pytest.param(argv, words, code, id=case_id)


def _train(*extra: str) -> list[str]:
    return ["train", "--dataset", "digits", *TINY, "--out", "{out}", *extra]


def _distill(*extra: str) -> list[str]:
    return ["distill", "--teacher", "{teacher}", "--dataset", "digits", *TINY, "--out",
            "{out}", *extra]


def _evaluate(ckpt: str = "{teacher}", *extra: str) -> list[str]:
    return ["evaluate", ckpt, "--dataset", "digits", "--device", "cpu", *extra]


def _fix(student: str = "{teacher}", *extra: str) -> list[str]:
    return ["fix-bias", student, "--prior", "labels", "--dataset", "digits", "--out",
            "{out}/fixed.pt", *extra]


def _export(ckpt: str = "{teacher}", *extra: str) -> list[str]:
    return ["export", ckpt, "--format", "safetensors", "--out", "{out}/m.safetensors", *extra]


def _compress(csv: str = "{csv}", *extra: str) -> list[str]:
    return ["compress", csv, "--target", "label", "--out", "{out}", "--preset", "tiny",
            "--mimic-epochs", "1", "--n-jobs", "1", *extra]


def _predict(model: str = "{mimic}", csv: str = "{csv}", *extra: str) -> list[str]:
    return ["predict", model, csv, "--out", "{out}/p.csv", *extra]


def _repro(exp: str, *extra: str) -> list[str]:
    return ["reproduce", exp, "--dataset", "digits", "--out", "{out}", "--report-dir",
            "{out}/report", *extra]


# ------------------------------------------------------------------------------ the cases
# Output paths first (they must fail before anything loads), then flags, then files.

OUTPUT_CASES = [
    C("train-out-is-file", _train("--out", "{afile}"), "afile"),
    C("train-out-under-file", _train("--out", "{afile}/run"), "afile"),
    C("distill-out-is-file", _distill("--out", "{afile}"), "afile"),
    C("distill-out-under-file", _distill("--out", "{afile}/x/y"), "afile"),
    C("distill-cache-dir-is-file", _distill("--cache-dir", "{afile}"), "afile"),
    C("fix-bias-out-is-dir", _fix("{teacher}", "--out", "{adir}"), "adir"),
    C("fix-bias-out-under-file", _fix("{teacher}", "--out", "{afile}/fixed.pt"), "afile"),
    C("export-out-is-dir", _export("{teacher}", "--out", "{adir}"), "adir"),
    C("export-out-under-file", _export("{teacher}", "--out", "{afile}/m.st"), "afile"),
    C("compress-out-is-file", _compress("{csv}", "--out", "{afile}"), "afile"),
    C("compress-out-under-file", _compress("{csv}", "--out", "{afile}/c"), "afile"),
    C("demo-out-is-file", ["demo", "--out", "{afile}", "--no-progress"], "afile"),
    C("demo-out-under-file", ["demo", "--out", "{afile}/d", "--no-progress"], "afile"),
    C("mc-out-is-file", ["reproduce", "model-compression", "--out", "{afile}", "--report-dir",
                         "{out}/r", "--problems", "dna"], "afile"),
    C("mc-report-dir-is-file", ["reproduce", "model-compression", "--out", "{out}",
                                "--report-dir", "{afile}", "--problems", "dna"], "afile"),
]

EXPERIMENTS = ("hinton-mnist", "ensemble", "soft-regularizer", "omitted-class", "specialists")
for _exp in EXPERIMENTS:
    OUTPUT_CASES += [
        C(f"{_exp}-out-is-file", _repro(_exp, "--out", "{afile}"), "afile"),
        C(f"{_exp}-report-dir-is-file", _repro(_exp, "--report-dir", "{afile}"), "afile"),
    ]

DEVICE_CASES = [
    C("train-device-gpu7", _train("--device", "gpu7"), "gpu7"),
    C("train-device-empty", _train("--device", ""), "device"),
    C("train-device-cuda99", _train("--device", "cuda:99"), "cuda"),
    C("train-device-meta", _train("--device", "meta"), "meta"),
    C("distill-device-gpu7", _distill("--device", "gpu7"), "gpu7"),
    C("evaluate-device-gpu7", _evaluate("{teacher}", "--device", "gpu7"), "gpu7"),
    C("fix-bias-device-gpu7", _fix("{teacher}", "--device", "gpu7"), "gpu7"),
    *[C(f"{e}-device-gpu7", _repro(e, "--device", "gpu7"), "gpu7") for e in EXPERIMENTS],
]

# (flag, value, a word the message must hold) for every numeric flag train and distill share
NUMERIC = [
    ("--epochs", "0", "epochs"), ("--epochs", "-1", "epochs"), ("--epochs", HUGE_INT, "epochs"),
    ("--epochs", "abc", "epochs"), ("--epochs", "1.5", "epochs"),
    ("--batch-size", "0", "batch_size"), ("--batch-size", "-5", "batch_size"),
    ("--batch-size", HUGE_INT, "batch_size"),
    ("--lr", "0", "lr"), ("--lr", "-1", "lr"), ("--lr", "nan", "lr"), ("--lr", "inf", "lr"),
    ("--lr", "abc", "lr"),
    ("--momentum", "-0.1", "momentum"), ("--momentum", "1", "momentum"),
    ("--momentum", "nan", "momentum"),
    ("--weight-decay", "-1", "weight_decay"), ("--weight-decay", "nan", "weight_decay"),
    ("--weight-decay", "inf", "weight_decay"),
    ("--warmup-epochs", "-1", "warmup"), ("--warmup-epochs", "nan", "warmup"),
    ("--warmup-epochs", "inf", "warmup"),
    ("--gamma", "-1", "gamma"), ("--gamma", "0", "gamma"), ("--gamma", "nan", "gamma"),
    ("--gamma", "inf", "gamma"),
    ("--milestones", "-1", "milestones"), ("--milestones", "0", "milestones"),
    ("--jitter", "-1", "jitter"),
    ("--grad-clip", "0", "grad_clip"), ("--grad-clip", "-1", "grad_clip"),
    ("--grad-clip", "nan", "grad_clip"),
    ("--seed", "-1", "seed"), ("--seed", HUGE_INT, "seed"),
    ("--hidden", "0", "hidden"), ("--hidden", "-8", "hidden"), ("--hidden", "x", "hidden"),
    ("--input-dropout", "-0.1", "input_dropout"), ("--input-dropout", "1", "input_dropout"),
    ("--input-dropout", "nan", "input_dropout"),
    ("--hidden-dropout", "1.5", "hidden_dropout"), ("--hidden-dropout", "nan", "hidden_dropout"),
    ("--max-norm", "nan", "max_norm"), ("--max-norm", "0", "max_norm"),
    ("--max-norm", "-1", "max_norm"), ("--max-norm", "inf", "max_norm"),
    ("--optimizer", "bogus", "optimizer"), ("--schedule", "bogus", "schedule"),
    ("--model", "bogus", "model"),
]

FLAG_CASES = [C(f"train{flag}={value}", _train(flag, value), word)
              for flag, value, word in NUMERIC]
FLAG_CASES += [C(f"distill{flag}={value}", _distill(flag, value), word)
               for flag, value, word in NUMERIC[::3]]
FLAG_CASES += [
    C("train-hidden-huge", _train("--hidden", BIG, BIG), "GB"),
    C("distill-hidden-huge", _distill("--hidden", BIG, BIG), "GB"),
    C("train-unknown-flag", _train("--bogus"), "unrecognized"),
    C("train-no-out", ["train", "--dataset", "digits", *TINY], "--out"),
    C("distill-T-nan", _distill("-T", "nan"), "temperature"),
    C("distill-T-inf", _distill("-T", "inf"), "temperature"),
    C("distill-T-0", _distill("-T", "0"), "temperature"),
    C("distill-soft-nan", _distill("--soft-weight", "nan"), "soft_weight"),
    C("distill-hard-neg", _distill("--hard-weight", "-1"), "hard_weight"),
    C("distill-method-unknown", _distill("--method", "nope"), "nope"),
    C("distill-method-ce", _distill("--method", "ce"), "ce"),
    C("distill-method-arg-no-eq", _distill("--method-arg", "beta"), "KEY=VALUE"),
    C("distill-method-arg-unknown", _distill("--method-arg", "zeta=1"), "zeta"),
    C("distill-dkd-beta-nan", _distill("--method", "dkd", "--method-arg", "beta=NaN"), "beta"),
    C("distill-T-for-fitnets", _distill("--method", "logit_matching", "-T", "2"),
      "temperature"),
    C("distill-combine-bogus", _distill("--combine", "bogus"), "combine"),
    C("fix-bias-classes-10", _fix("{teacher}", "--classes", "10"), "classes"),
    C("fix-bias-classes-neg", _fix("{teacher}", "--classes", "-1"), "classes"),
    C("fix-bias-prior-teacher-alone", ["fix-bias", "{teacher}", "--dataset", "digits",
                                       "--out", "{out}/f.pt"], "--teacher"),
    C("fix-bias-prior-bogus", _fix("{teacher}", "--prior", "bogus"), "prior"),
    C("export-format-bogus", ["export", "{teacher}", "--format", "bogus", "--out",
                              "{out}/m"], "format"),
    C("export-onnx-dataset-unknown", ["export", "{teacher}", "--format", "onnx", "--out",
                                      "{out}/m.onnx", "--dataset", "nope"], "nope"),
    C("export-onnx-dataset-wide", ["export", "{teacher}", "--format", "onnx", "--out",
                                   "{out}/m.onnx", "--dataset", "{wide}"], "64"),
    C("unknown-command", ["frobnicate"], "frobnicate"),
    C("unknown-experiment", ["reproduce", "nope"], "nope"),
    C("no-command", [], "command"),
]

COMPRESS_FLAGS = [
    ("--hillclimb-fraction", "0"), ("--hillclimb-fraction", "1"),
    ("--hillclimb-fraction", "nan"), ("--hillclimb-fraction", "-0.1"),
    ("--test-fraction", "nan"), ("--test-fraction", "inf"), ("--test-fraction", "0.9"),
    ("--n-jobs", "0"), ("--n-jobs", "-3"), ("--n-jobs", HUGE_INT), ("--munge-k", "0"),
    ("--munge-k", "-1"), ("--mimic-epochs", "0"), ("--mimic-epochs", "-1"),
    ("--mimic-epochs", "abc"), ("--size-budget", "0"), ("--size-budget", "nan"),
    ("--size-budget", "-1"), ("--size-budget", "inf"), ("--mimic-hidden", "0"),
    ("--mimic-hidden", "x"), ("--mimic-hidden", "8x0"), ("--mimic-hidden", BIG + "x" + BIG),
    ("--seed", "-1"), ("--seed", HUGE_INT), ("--preset", "bogus"),
    ("--nominal", "nosuchcolumn"), ("--drop", "nosuchcolumn"), ("--sep", ";;"),
    ("--missing", "bogus"),
]
FLAG_CASES += [C(f"compress{flag}={value}", _compress("{csv}", flag, value))
               for flag, value in COMPRESS_FLAGS]
FLAG_CASES += [
    C("mc-problem-unknown", ["reproduce", "model-compression", "--out", "{out}", "--report-dir",
                             "{out}/r", "--problems", "nope"], "nope"),
    C("mc-n-jobs-0", ["reproduce", "model-compression", "--out", "{out}", "--report-dir",
                      "{out}/r", "--n-jobs", "0"], "n_jobs"),
    C("mc-size-budget-nan", ["reproduce", "model-compression", "--out", "{out}",
                             "--report-dir", "{out}/r", "--size-budget", "nan"],
      "size_budget"),
]

TEXT_FLAGS = [("--dataset", "imdb", "imdb"), ("--labels-per-class", "0", "labels_per_class"),
              ("--draws", "0", "draws"), ("--seeds", "1", "1", "seeds"),
              ("-T", "0", "temperature"), ("--articles-per-class", "2", "articles_per_class"),
              ("--validation-fraction", "0.75", "fractions"), ("--crops", "-1", "crops"),
              ("--head-weight-decays", "-1", "head_weight_decays"),
              ("--buckets", "0", "buckets"), ("--lr", "nan", "lr")]
FLAG_CASES += [C(f"text{'='.join(case[:-1])}", ["reproduce", "text", "--out", "{out}",
                                                  "--report-dir", "{out}/r", *case[:-1]],
                 case[-1]) for case in TEXT_FLAGS]

REPRO_COMMON = [("--dataset", "nope", "nope"), ("--dataset", "{fx}/missing.npz", "missing"),
                ("--lr", "nan", "lr"), ("--batch-size", "0", "batch_size"),
                ("--seed", "-1", "seed"), ("--bogus", "1", "unrecognized")]
REPRO_OWN = {
    "hinton-mnist": [("-T", "nan"), ("--student-hidden", "0"), ("--sweep-temperatures", "-1"),
                     ("--student-hidden", BIG), ("--teacher-recipe", "bogus")],
    "ensemble": [("--members", "0"), ("--temperatures", "nan"), ("--hidden", f"{BIG} {BIG}"),
                 ("--hidden-dropout", "nan")],
    "soft-regularizer": [("--fraction", "0"), ("--fraction", "nan"), ("--fraction", "1.5"),
                         ("--temperatures", "inf")],
    "omitted-class": [("--omit", "99"), ("-T", "0"), ("--teacher-dropout", "nan"),
                      ("--teacher-hidden", f"{BIG} {BIG}")],
    "specialists": [("--num-subsets", "0"), ("--special-fraction", "nan"),
                    ("--specialist-lr", "inf"), ("--hidden", f"{BIG} {BIG}")],
}
for _exp in EXPERIMENTS:
    FLAG_CASES += [C(f"{_exp}{flag}={value}", _repro(_exp, flag, value), word)
                   for flag, value, word in REPRO_COMMON]
    FLAG_CASES += [C(f"{_exp}{flag}={value.replace(' ', ',')}", _repro(_exp, flag, *value.split()))
                   for flag, value in REPRO_OWN[_exp]]

BAD_CHECKPOINTS = [("missing", "{fx}/nope.pt", "not found"),
                   ("dir", "{fx}", "is a folder, not a checkpoint"),
                   ("corrupt", "{corrupt}", "corrupt"), ("empty", "{empty}", "corrupt"),
                   ("text", "{text}", "corrupt"), ("list", "{list}", "not a kdistill"),
                   ("tensor", "{tensor}", "not a kdistill"),
                   ("state-list", "{state_list}", "model_state"),
                   ("nospec", "{nospec}", "model_spec"), ("badspec", "{badspec}", "nope"),
                   ("spec-not-dict", "{specnotdict}", "spec"),
                   ("wrong-weights", "{wrongweights}", "weights"),
                   ("nan-weights", "{nan}", "NaN"), ("in16", "{in16}", "16"),
                   ("cls3", "{cls3}", "3")]
FILE_CASES = []
for _name, _path, _word in BAD_CHECKPOINTS:
    FILE_CASES += [C(f"evaluate-ckpt-{_name}", _evaluate(_path), _word),
                   C(f"distill-teacher-{_name}", _distill("--teacher", _path), _word),
                   C(f"fix-bias-student-{_name}", _fix(_path), _word)]
    if _name not in ("in16", "cls3"):  # export needs no data set: those export fine
        FILE_CASES.append(C(f"export-ckpt-{_name}", _export(_path), _word))
FILE_CASES += [
    C("distill-ensemble-classes-differ", _distill("--teacher", "{teacher}", "{cls3}"),
      "classes"),
    C("fix-bias-teacher-in16", ["fix-bias", "{teacher}", "--teacher", "{in16}", "--dataset",
                                "digits", "--out", "{out}/f.pt"], "16"),
    C("fix-bias-teacher-nan", ["fix-bias", "{teacher}", "--teacher", "{nan}", "--dataset",
                               "digits", "--out", "{out}/f.pt"], "NaN"),
    C("evaluate-wide-data", _evaluate("{teacher}", "--dataset", "{wide}"), "64"),
    C("fix-bias-wide-data", _fix("{teacher}", "--dataset", "{wide}"), "64"),
    C("distill-wide-data", _distill("--dataset", "{wide}"), "64"),
]

NPZ = [("npz_missing", "y_test"), ("npz_lengths", "labels"), ("npz_1d", "x_train"),
       ("npz_neg_label", "-1"), ("npz_float_label", "integer"), ("npz_nan_label", "integer"),
       ("npz_2d_label", "label"), ("npz_empty_train", "empty"), ("npz_empty_test", "empty"),
       ("npz_shape", "16"), ("npz_nan_pixels", "x_train"), ("npz_inf_test", "x_test"),
       ("npz_one_class", "class"), ("npz_string_x", "x_train"), ("npz_text", "npz"),
       ("npz_dir", "npz_dir")]
for _name, _word in NPZ:
    FILE_CASES.append(C(f"train-{_name}", _train("--dataset", "{" + _name + "}"), _word))
for _name, _word in NPZ[::4]:
    FILE_CASES += [C(f"evaluate-{_name}", _evaluate("{teacher}", "--dataset", "{" + _name + "}"),
                     _word),
                   C(f"hinton-mnist-{_name}", _repro("hinton-mnist", "--dataset",
                                                     "{" + _name + "}"), _word)]
FILE_CASES += [
    C("train-unknown-dataset", _train("--dataset", "nope"), "nope"),
    C("train-npz-missing-file", _train("--dataset", "{fx}/missing.npz"), "missing.npz"),
    C("train-mnist-no-files", _train("--dataset", "mnist", "--data-dir", "{adir}"), "missing"),
    C("train-mnist-data-dir-missing", _train("--dataset", "mnist", "--data-dir",
                                             "{fx}/nowhere"), "not found"),
    C("train-idx-nan-pixels", _train("--dataset", "mnist", "--data-dir", "{idx_nan}"),
      "NaN"),
    C("evaluate-idx-nan-pixels", _evaluate("{teacher}", "--dataset", "mnist", "--data-dir",
                                           "{idx_nan}"), "NaN"),
]

CSV = [("csv_empty", "empty"), ("csv_header", "no data rows"), ("csv_one_class", "single"),
       ("csv_nan_label", "missing"), ("csv_only_target", "no input"), ("csv_few_rows", "rows"),
       ("csv_ragged", "CSV"), ("csv_binary", "CSV"), ("csv_inf", "inf")]
FILE_CASES += [C(f"compress-{name}", _compress("{" + name + "}"), word) for name, word in CSV]
FILE_CASES += [
    C("compress-missing-target", _compress("{csv}", "--target", "nope"), "nope"),
    C("compress-missing-file", _compress("{fx}/nope.csv"), "not found"),
    C("compress-file-is-dir", _compress("{adir}"), "adir"),
    C("compress-drop-target", _compress("{csv}", "--drop", "label"), "'label'"),
    C("compress-continuous-target", _compress("{csv_continuous}"), "continuous"),
    C("compress-numeric-nan", _compress("{csv_numeric_nan}"), "'a'", "--missing impute"),
    C("compress-id-column", _compress("{csv_ids}"), "'id'", "--drop"),
    C("compress-semicolons-forced-comma", _compress("{csv}", "--sep", ";"), "label"),
]
# kdistill predict: the model, the CSV, its columns against the mimic's, the output path
FILE_CASES += [
    C("predict-target-left", _predict("{mimic}", "{csv}"), "'label'", "--drop label"),
    C("predict-lacks-column", _predict("{mimic}", "{csv_only_a}"), "'b'"),
    C("predict-extra-column", _predict("{mimic}", "{csv_extra}"), "'c'"),
    C("predict-not-a-mimic", _predict("{teacher}", "{csv}"), "not a kdistill mimic"),
    C("predict-missing-model", _predict("{fx}/nope.pt", "{csv}"), "not found"),
    C("predict-corrupt-model", _predict("{corrupt}", "{csv}"), "corrupt"),
    C("predict-onnx-model", _predict("{fx}/m.onnx", "{csv}"), "ONNX"),
    C("predict-missing-csv", _predict("{mimic}", "{fx}/nope.csv"), "not found"),
    C("predict-empty-csv", _predict("{mimic}", "{csv_empty}"), "empty"),
    C("predict-drop-unknown", _predict("{mimic}", "{csv}", "--drop", "zz"), "zz"),
    C("predict-out-is-dir", _predict("{mimic}", "{csv}", "--drop", "label", "--out", "{adir}"),
      "adir"),
    C("predict-sep-long", _predict("{mimic}", "{csv}", "--sep", "ab"), "--sep"),
    C("export-mimic-with-dataset", ["export", "{mimic}", "--format", "onnx", "--out",
                                    "{out}/m.onnx", "--dataset", "digits"], "--dataset"),
]

DIVERGENCE_CASES = [
    C("train-diverges", _train("--optimizer", "sgd", "--lr", "1e30", "--momentum", "0.9"),
      "diverged", code=1),
]

ALL = OUTPUT_CASES + DEVICE_CASES + FLAG_CASES + FILE_CASES + DIVERGENCE_CASES


def _alarm(_signum, _frame):
    raise _TookTooLong


@pytest.mark.parametrize("argv, words, code", ALL)
def test_bad_input(fx, tmp_path, monkeypatch, capsys, argv, words, code):
    monkeypatch.chdir(tmp_path)  # defaults such as runs/... land here, inside the listing
    (tmp_path / "afile").write_text("a file where a folder is wanted\n")
    (tmp_path / "adir").mkdir()
    names = {**fx, "out": str(tmp_path / "out"), "afile": str(tmp_path / "afile"),
             "adir": str(tmp_path / "adir")}
    args = [a.format(**names) for a in argv]
    before = _listing(tmp_path)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(ALARM_S)
    try:
        got = main(args)
    except _TookTooLong:
        pytest.fail(f"still running after {ALARM_S} s: the bad input was not refused before work")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
    assert _listing(tmp_path) == before


def test_the_battery_is_big_enough():
    assert len(ALL) >= 172


# ---------------------------------------------------------------- the disk, the read-only folder

@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code = main(["train", "--dataset", "digits", *TINY, "--out", str(folder / "run")])
    finally:
        folder.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "writable" in err
    assert list(folder.iterdir()) == []


def test_unwritable_out_folder_is_refused_before_work(tmp_path, monkeypatch, capsys):
    """The writability probe's own OSError (EROFS here) is the one line, naming the folder."""
    import tempfile

    def refuse(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    code = main(["train", "--dataset", "digits", *TINY, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "Read-only" in err and str(tmp_path) in err
    assert list(tmp_path.iterdir()) == []


def test_disk_full_mid_run_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    saves = []
    real_save = torch.save

    def save(obj, f, *a, **k):
        saves.append(f)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    code = main(["train", "--dataset", "digits", "--hidden", "8", "--epochs", "3",
                 "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "No space left" in err and "Traceback" not in err
    monkeypatch.setattr(torch, "save", real_save)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]  # no temp file left


def test_evaluate_refuses_nan_weights_without_writing_json(fx, capsys):
    code = main(["evaluate", fx["nan"], "--dataset", "digits", "--device", "cpu"])
    out = capsys.readouterr()
    assert code == 2 and out.out == "" and "NaN" in out.err
