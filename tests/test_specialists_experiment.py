"""The specialists reproduction: torch-side specialist construction, the dustbin-corrected
combination, the Table 3/4 metrics, and a tiny resumable end-to-end run on the digits."""

import math

import numpy as np
import pytest
import torch

from kdistill.distill import specialist_combine as spc
from kdistill.distill import specialist_eval as spe
from kdistill.distill import specialists as sp
from kdistill.distill.models import MLP, build_model
from kdistill.distill.specialist_models import specialist_from_generalist
from kdistill.experiments import specialists as se


def _generalist(num_classes: int = 5) -> MLP:
    torch.manual_seed(0)
    return MLP(6, num_classes, hidden=(7,))


def _by_hand(model: MLP, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(last hidden features, logits) computed from the weights directly."""
    w1, b1 = model.hidden_layers[0].weight, model.hidden_layers[0].bias
    h = torch.relu(x @ w1.T + b1)
    return h, h @ model.head.weight.T + model.head.bias


def test_specialist_keeps_hidden_layers_and_subset_rows():
    gen = _generalist()
    x = torch.randn(20, 6)
    spec = specialist_from_generalist(gen, [3, 1])
    with torch.no_grad():
        h, z = _by_hand(gen, x)
        out = spec(x)
    assert out.shape == (20, 3)
    assert torch.equal(spec.hidden_layers[0].weight, gen.hidden_layers[0].weight)
    assert torch.allclose(out[:, :2], z[:, [3, 1]], atol=1e-6)
    # Without data the dustbin is mean(outside logits) + log K: Jensen's bound on log-sum-exp.
    outside = z[:, [0, 2, 4]]
    assert torch.allclose(out[:, 2], outside.mean(1) + math.log(3), atol=1e-5)
    assert torch.all(out[:, 2] <= torch.logsumexp(outside, 1) + 1e-5)
    # A copy: training the specialist leaves the generalist alone.
    with torch.no_grad():
        spec.hidden_layers[0].weight.add_(1.0)
    assert not torch.equal(spec.hidden_layers[0].weight, gen.hidden_layers[0].weight)


def test_dustbin_fitted_to_log_sum_exp_on_inputs():
    gen = _generalist()
    x = torch.randn(200, 6)
    with torch.no_grad():
        _, z = _by_hand(gen, x)
        # One class outside: log-sum-exp is that class's logit, affine in the features, so the
        # fit is exact and the specialist starts as the generalist's grouped distribution.
        spec = specialist_from_generalist(gen, [0, 1, 2, 4], inputs=x)
        out = spec(x)
        assert torch.allclose(out[:, -1], z[:, 3], atol=1e-4)
        grouped = sp.group_probs(torch.softmax(z.double(), 1).numpy(), [0, 1, 2, 4])
        assert np.allclose(torch.softmax(out.double(), 1).numpy(), grouped, atol=1e-5)
        # Three outside: the least-squares fit beats the data-free bound on those inputs.
        target = torch.logsumexp(z[:, [0, 2, 4]], 1)
        fitted = specialist_from_generalist(gen, [3, 1], inputs=x)(x)[:, -1]
        bound = specialist_from_generalist(gen, [3, 1])(x)[:, -1]
        assert ((fitted - target) ** 2).mean() < 0.5 * ((bound - target) ** 2).mean()


@pytest.mark.parametrize("subset", [[0, 1, 2, 3, 4], [5], [1, 1], []])
def test_specialist_rejects_bad_subsets(subset):
    with pytest.raises(ValueError):
        specialist_from_generalist(_generalist(), subset)


def test_combination_applies_the_dustbin_corrections():
    rng = np.random.default_rng(0)
    pg = rng.dirichlet(np.ones(6), size=50)
    subsets = [np.array([0, 1]), np.array([1, 2, 3])]
    fractions = [0.3, 0.45]
    # Specialists that agree with the generalist once corrected: their dustbin is shrunk by
    # exactly the correction, as training on 50/50 data shrinks it.
    pms = []
    for s, f in zip(subsets, fractions):
        g = sp.group_probs(pg, s)
        g[:, -1] /= (1 - f) / f
        pms.append(g / g.sum(1, keepdims=True))
    q = spe.combine_with_specialists(pg, pms, subsets, fractions)
    assert np.allclose(q, pg, atol=1e-7)
    # The literal and uncorrected variants leave the specialists disagreeing: q moves.
    for kwargs in ({"literal": True}, {"correct": False}):
        assert np.abs(spe.combine_with_specialists(pg, pms, subsets, fractions, **kwargs)
                      - pg).max() > 1e-3
    raw = spc.combine(pg, pms, subsets, top_n=1)
    assert np.allclose(spe.combine_with_specialists(pg, pms, subsets, fractions, correct=False),
                       raw)


def test_table_metrics_by_hand():
    # 4 classes; subsets {0,1} and {1,2}; class 3 uncovered.
    subsets = [np.array([0, 1]), np.array([1, 2])]
    labels = np.array([0, 1, 2, 3, 1])
    pg = np.array([[.1, .2, .0, .7],    # wrong overall, wrong within {0,1} too
                   [.3, .2, .1, .4],    # wrong overall, within {0,1,2}: 0 -> wrong
                   [.1, .1, .5, .3],    # right
                   [.1, .1, .1, .7],    # uncovered, right
                   [.2, .5, .2, .1]])   # right
    q = np.array([[.6, .1, .0, .3], [.1, .6, .1, .2], [.1, .1, .5, .3], [.1, .1, .1, .7],
                  [.5, .2, .2, .1]])
    assert spe.conditional_accuracy(pg, labels, subsets) == (2, 4)
    assert spe.conditional_accuracy(q, labels, subsets) == (3, 4)
    rows = spe.gain_by_covering(pg, q, labels, subsets)
    assert [(r["covering"], r["examples"], r["delta_correct"]) for r in rows] == [
        (0, 1, 0), (1, 2, 1), (2, 2, 0)]
    assert rows[1]["relative_change"] == 1.0 and rows[2]["relative_change"] == 0.0


def _tiny(out, **kw):
    return se.config_from("digits", out=str(out), hidden=(16,), generalist_epochs=3,
                          specialist_epochs=(1, 2), num_subsets=3, subset_size=4,
                          validation_size=200, report_dir=str(out / "report"), **kw)


def test_end_to_end_run_resumes_and_refuses_stale_specialists(tmp_path):
    logs: list[str] = []
    r = se.run(_tiny(tmp_path), log=logs.append)
    for key in ("generalist_accuracy", "combined_accuracy", "gain_by_covering", "clusters",
                "conditional_accuracy", "num_specialists", "subset_size", "seeds",
                "literal_dustbin_accuracy", "uncorrected_dustbin_accuracy", "wall_seconds",
                "compute_seconds", "command", "hardware"):
        assert key in r, key
    assert r["reported_epoch"] == "last" and r["subset_size"] == 4
    n = r["test_size"]
    assert n == 450 and sum(g["examples"] for g in r["gain_by_covering"]) == n
    delta = round((r["combined_accuracy"] - r["generalist_accuracy"]) * n)
    assert sum(g["delta_correct"] for g in r["gain_by_covering"]) == delta
    assert all(len(c) == 4 for c in r["clusters"]) and r["num_specialists"] == [3]
    assert r["specialist_epochs_chosen"][0] in (1, 2)
    # The reported generalist accuracy is its checkpoint's test accuracy.
    ckpt = torch.load(tmp_path / "runs" / "generalist-16-s0" / "checkpoint.pt",
                      weights_only=False)
    model = build_model(ckpt["model_spec"])
    model.load_state_dict(ckpt["model_state"])
    from kdistill.distill.data import load_digits
    test = load_digits().test
    with torch.no_grad():
        acc = (model.eval()(test.x).argmax(1) == test.y).double().mean().item()
    assert acc == pytest.approx(r["generalist_accuracy"])
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"results.{suffix}").is_file()
        assert (tmp_path / "report" / f"digits.{suffix}").is_file()
    md = (tmp_path / "report" / "digits.md").read_text()
    assert "Table 4" in md and "How this was made" in md

    # Second call: every run resumes from its finished checkpoint, no epoch is trained.
    logs2: list[str] = []
    r2 = se.run(_tiny(tmp_path), log=logs2.append)
    runs = 1 + 3 * 2
    assert sum("resumed from" in line for line in logs2) == runs
    assert not any("| loss" in line for line in logs2)
    assert any("| loss" in line for line in logs)
    assert r2["combined_accuracy"] == r["combined_accuracy"]

    # A new generalist (other learning rate) makes the old specialists stale: refused.
    import shutil
    shutil.rmtree(tmp_path / "runs" / "generalist-16-s0")
    with pytest.raises(ValueError, match="extra.generalist"):
        se.run(_tiny(tmp_path, lr=2e-3), log=lambda _: None)


@pytest.mark.parametrize("overrides, match", [
    ({"subset_size": 26}, "subset_size"),
    ({"num_subsets": 27}, "num_subsets"),
    ({"special_fraction": 1.0}, "special_fraction"),
    ({"specialist_epochs": ()}, "specialist_epochs"),
    ({"seeds": (0, 0)}, "seeds"),
    ({"specialist_lr": float("nan")}, "specialist_lr"),
])
def test_bad_config_is_one_clear_error(overrides, match):
    with pytest.raises(ValueError, match=match):
        se.config_from("letter", **overrides).validate()


def test_unknown_dataset_and_setting():
    with pytest.raises(ValueError, match="unknown dataset"):
        se.run(se.config_from("cifar-100"))
    with pytest.raises(ValueError, match="unknown specialists settings"):
        se.config_from("letter", temperature=2.0)
