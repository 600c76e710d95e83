"""The gain captured and its noise rule (issue 14, part 4), and the progress lines.

Point values are checked against scikit-learn's metrics, the bootstrap against a plain loop
over the same resamples and against the analytic standard error of a paired difference.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, roc_auc_score

from kdistill.tabular.gain import (
    bootstrap_gain,
    check_metric,
    combined_gain,
    gain_captured,
    gain_verdict,
)
from kdistill.tabular.metrics import metric_score
from kdistill.tabular.progress import Progress


def sk_metric(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    """The metric as scikit-learn computes it (p: (n, c) probabilities)."""
    if metric == "rmse":
        target = np.eye(p.shape[1])[y]
        cols = p[:, 1:] if p.shape[1] == 2 else p
        cols_t = target[:, 1:] if p.shape[1] == 2 else target
        return float(np.sqrt(mean_squared_error(cols_t.ravel(), cols.ravel())))
    if metric == "accuracy":
        return float(accuracy_score(y, p.argmax(axis=1)))
    if metric == "log_loss":
        return float(log_loss(y, p, labels=np.arange(p.shape[1])))
    if p.shape[1] == 2:
        return float(roc_auc_score(y, p[:, 1]))
    return float(roc_auc_score(y, p, multi_class="ovr", average="macro"))


def two_models(n: int, n_classes: int, seed: int, edge: float) -> tuple:
    """Labels and two probability tables; the first is better by about ``edge`` logits."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    base = rng.standard_normal((n, n_classes))
    onehot = np.eye(n_classes)[y]

    def soft(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return y, soft(base + (1.0 + edge) * onehot), soft(base + onehot)


def test_check_metric_spellings() -> None:
    assert check_metric("log-loss") == "log_loss" and check_metric("ROC-AUC") == "roc_auc"
    assert check_metric("rmse") == "rmse"
    with pytest.raises(ValueError, match="unknown metric 'f2'; use one of rmse, accuracy"):
        check_metric("f2")


def test_gain_captured_in_each_metrics_orientation() -> None:
    # letter.p2 in the paper's Table 2: munge 0.179, ensemble 0.178, ann 0.228 -> 0.98
    assert gain_captured(0.228, 0.179, 0.178, "rmse") == pytest.approx(0.98)
    # accuracy: higher is better; a mimic halfway between the ANN and the ensemble keeps 0.5
    assert gain_captured(0.80, 0.85, 0.90, "accuracy") == pytest.approx(0.5)
    # a mimic below the ANN keeps a negative share, not 1.54
    assert gain_captured(0.80, 0.78, 0.90, "accuracy") == pytest.approx(-0.2)
    assert gain_captured(0.90, 0.95, 0.85, "roc_auc") is None  # the ensemble lost
    assert gain_captured(0.3, 0.3, 0.31, "log_loss") is None


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("metric", ["rmse", "accuracy", "log_loss", "roc_auc"])
def test_bootstrap_matches_sklearn_and_a_plain_loop(metric: str, n_classes: int) -> None:
    y, p_ens, p_ann = two_models(150, n_classes, seed=3, edge=0.5)
    noise = bootstrap_gain(y, p_ens, p_ann, metric, n_boot=200, seed=7)
    sign = -1.0 if metric in ("rmse", "log_loss") else 1.0
    assert noise["gain"] == pytest.approx(
        sign * (sk_metric(metric, y, p_ens) - sk_metric(metric, y, p_ann)), abs=1e-10)
    # the same resamples scored one by one with the module's metric
    idx = np.random.default_rng(7).integers(0, len(y), size=(200, len(y)))
    draws = np.array([sign * (metric_score(y[i], p_ens[i], metric)
                              - metric_score(y[i], p_ann[i], metric)) for i in idx])
    assert noise["ci95"] == pytest.approx(list(np.percentile(draws, [2.5, 97.5])), abs=1e-10)
    assert noise["se"] == pytest.approx(np.std(draws, ddof=1), abs=1e-10)
    assert noise["n_boot"] == 200 and noise["rows"] == 150 and noise["metric"] == metric


def test_bootstrap_standard_error_is_the_paired_one() -> None:
    # accuracy is a mean of per-row differences d_i, so its standard error is sd(d) / sqrt(n)
    y, p_ens, p_ann = two_models(2000, 3, seed=5, edge=0.3)
    noise = bootstrap_gain(y, p_ens, p_ann, "accuracy", n_boot=2000, seed=0)
    d = (p_ens.argmax(axis=1) == y).astype(float) - (p_ann.argmax(axis=1) == y)
    assert noise["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)), rel=0.1)
    # paired: far tighter than if the two models' errors were independent
    unpaired = np.sqrt(((p_ens.argmax(1) == y).var() + (p_ann.argmax(1) == y).var()) / len(y))
    assert noise["se"] < 0.8 * unpaired


def test_a_tiny_gain_is_within_noise_and_no_ratio_is_shown() -> None:
    # The case: the ensemble beats the net by 0.001 RMSE, so a mimic 0.012 better than
    # the net "captures 12" of the gain. Built by hand: the ensemble is the net, nudged 0.05
    # toward the label on 120 rows and away from it on 80.
    rng = np.random.default_rng(0)
    n = 1000
    y = rng.integers(0, 2, n)
    p_ann = np.clip(np.where(y == 1, 0.7, 0.3) + 0.25 * rng.standard_normal(n), 0.06, 0.94)
    toward = np.where(y == 1, 1.0, -1.0)
    p_ens = p_ann.copy()
    p_ens[:120] += 0.05 * toward[:120]
    p_ens[120:200] -= 0.05 * toward[120:200]
    ann, ens = metric_score(y, p_ann, "rmse"), metric_score(y, p_ens, "rmse")
    assert 0.0009 < ann - ens < 0.0011
    assert gain_captured(ann, ann - 12 * (ann - ens), ens, "rmse") == pytest.approx(12.0)
    noise = bootstrap_gain(y, p_ens, p_ann, "rmse", seed=0)
    assert noise["gain"] == pytest.approx(ann - ens)
    lo, hi = noise["ci95"]
    assert lo < 0 < hi
    shown, reason = gain_verdict(noise)
    assert not shown and reason.startswith("gain within noise")
    assert "95% bootstrap interval" in reason
    # the same nudges on ten times the rows: the gain is the same, now beyond the noise
    big = bootstrap_gain(np.tile(y, 10), np.tile(p_ens, 10), np.tile(p_ann, 10), "rmse")
    assert big["gain"] == pytest.approx(ann - ens, rel=1e-6) and big["ci95"][0] > 0
    assert gain_verdict(big) == (True, None)


def test_a_clear_gain_is_shown_and_a_loss_is_named() -> None:
    y, p_ens, p_ann = two_models(500, 3, seed=1, edge=1.0)
    noise = bootstrap_gain(y, p_ens, p_ann, "log_loss", seed=0)
    assert noise["ci95"][0] > 0
    assert gain_verdict(noise) == (True, None)
    worse = bootstrap_gain(y, p_ann, p_ens, "log_loss", seed=0)  # roles swapped
    shown, reason = gain_verdict(worse)
    assert not shown and reason.startswith("the ensemble is worse than the ANN")
    assert gain_verdict(None)[1].startswith("baselines skipped")


def test_combined_gain_over_problems() -> None:
    noises = [{"metric": "rmse", "gain": 0.02, "se": 0.003},
              {"metric": "rmse", "gain": 0.01, "se": 0.004}]
    mean = combined_gain(noises)
    assert mean["gain"] == pytest.approx(0.015)
    assert mean["se"] == pytest.approx(0.0025)  # sqrt(0.003^2 + 0.004^2) / 2
    assert mean["ci95"] == pytest.approx([0.015 - 1.96 * 0.0025, 0.015 + 1.96 * 0.0025])


def test_progress_logs_first_last_and_throttled() -> None:
    lines: list[str] = []
    progress = Progress(lines.append, "library: model", 5, every=1e9)
    for i in range(1, 6):
        progress(i, f"m{i}")
    assert len(lines) == 2
    assert lines[0].startswith("  library: model 1 of 5 (m1), ") and lines[0].endswith(" s")
    assert lines[1].startswith("  library: model 5 of 5 (m5), ")
    every = Progress(lines.append, "mimic: candidate", 3, every=0.0)
    for i in range(1, 4):
        every(i)
    assert lines[2:] == [f"  mimic: candidate {i} of 3, 0 s" for i in (1, 2, 3)]
