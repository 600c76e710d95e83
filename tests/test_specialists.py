"""Tests for the specialist algorithms (SPEC §4), against independently computed values."""

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import softmax

from kdistill.distill.specialist_combine import (
    active_specialists,
    combination_objective,
    combine,
    covering_counts,
)
from kdistill.distill.specialists import (
    correct_dustbin,
    dustbin_correction,
    find_confusable_subsets,
    group_probs,
    prediction_covariance,
    specialist_label_map,
    specialist_sample,
    to_specialist_labels,
)

# ----------------------------------------------------------------------------- helpers


def random_case(subsets, n=6, num_classes=12, seed=0, scale=2.0):
    """A generalist distribution and one distribution per specialist (subset + dustbin)."""
    rng = np.random.default_rng(seed)
    pg = softmax(rng.normal(scale=scale, size=(n, num_classes)), axis=1)
    pms = [softmax(rng.normal(scale=scale, size=(n, len(s) + 1)), axis=1) for s in subsets]
    return pg, pms


def objective_and_grad(z, pg, pms, subsets):
    """One example: objective of SPEC §4.4 in logits z and its gradient (SPEC's formula,
    sum over models of q_c (1 - p_j(c) / Q_j(c))), written from scratch."""
    q = softmax(z)
    value = float(np.sum(pg * np.log(pg / q)))
    grad = q - pg
    for pm, s in zip(pms, subsets, strict=True):
        outside = np.setdiff1d(np.arange(len(z)), s)
        grouped = np.r_[q[s], q[outside].sum()]
        value += float(np.sum(pm * np.log(pm / grouped)))
        ratio = np.empty(len(z))
        ratio[s] = pm[:-1] / q[s]
        ratio[outside] = pm[-1] / grouped[-1]
        grad += q * (1.0 - ratio)
    return value, grad


def reference_minimizer(pg_row, pm_rows, subsets):
    """Slow reference: BFGS on the logits of q, one example at a time."""
    res = minimize(objective_and_grad, np.log(pg_row), args=(pg_row, pm_rows, subsets),
                   jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": 10_000})
    return softmax(res.x), res.fun


# ----------------------------------------------------------------------------- combination


def test_fixed_point_matches_bfgs_on_logits():
    subsets = [np.array([0, 1, 2, 3, 4]), np.array([3, 4, 5, 6, 7, 8]), np.array([9, 10])]
    pg, pms = random_case(subsets, n=8, seed=1)
    active = np.ones((8, 3), dtype=bool)
    active[2, 1] = active[5, 0] = active[5, 2] = False
    q = combine(pg, pms, subsets, active=active, tol=1e-13)
    values = combination_objective(q, pg, pms, subsets, active=active)
    for i in range(8):
        on = np.flatnonzero(active[i])
        q_ref, f_ref = reference_minimizer(pg[i], [pms[m][i] for m in on],
                                           [subsets[m] for m in on])
        assert values[i] <= f_ref + 1e-10
        assert abs(values[i] - f_ref) < 1e-9
        assert np.max(np.abs(q[i] - q_ref)) < 1e-5


def test_fixed_point_matches_plain_gradient_descent():
    # SPEC §4.4's toy check: N = 12, two overlapping specialists, plain GD on z.
    subsets = [np.array([0, 1, 2, 3, 4, 5]), np.array([4, 5, 6, 7])]
    pg, pms = random_case(subsets, n=1, seed=2)
    z = np.log(pg[0])
    for _ in range(5_000):
        z -= 1.0 * objective_and_grad(z, pg[0], [pm[0] for pm in pms], subsets)[1]
    q = combine(pg, pms, subsets, active=np.ones((1, 2), dtype=bool), tol=1e-14)
    f_gd = objective_and_grad(z, pg[0], [pm[0] for pm in pms], subsets)[0]
    f_em = combination_objective(q, pg, pms, subsets, active=np.ones((1, 2), dtype=bool))[0]
    assert abs(f_em - f_gd) < 1e-9
    assert np.max(np.abs(q[0] - softmax(z))) < 1e-6


@pytest.mark.parametrize("method", ["newton", "em"])
def test_one_specialist_closed_form(method):
    # Derived by hand from the fixed point with one active specialist: subset classes get
    # (p_g + p_m) / 2; the dustbin gets the mean of the two models' outside mass, split like the
    # generalist: q_c = p_g_c (A + d) / (2 A), A = p_g's mass outside S, d = p_m's dustbin.
    subset = np.array([1, 4, 5])
    outside = np.array([0, 2, 3, 6])
    pg = np.array([[0.05, 0.3, 0.1, 0.05, 0.2, 0.2, 0.1]])
    pm = np.array([[0.1, 0.2, 0.3, 0.4]])
    q = combine(pg, [pm], [subset], active=np.ones((1, 1), dtype=bool), method=method)
    expected = np.zeros(7)
    expected[subset] = (pg[0, subset] + pm[0, :3]) / 2
    a_out, d = pg[0, outside].sum(), pm[0, 3]
    expected[outside] = pg[0, outside] * (a_out + d) / (2 * a_out)
    assert np.allclose(q[0], expected, atol=1e-9)


def test_newton_solves_conflict_that_stalls_plain_iteration():
    # The generalist is sure of a subset class, the specialist of its dustbin: the plain update
    # contracts by d / (A + d) ~ 1 - 1e-9 per step, so its steps are tiny and it stops far from
    # the answer (the dustbin split stays near its even start). Newton solves it outright.
    subset = np.array([0, 1])
    pg = np.array([[1.0 - 1.5e-9, 0.0, 1e-9, 5e-10]])
    pm = np.array([[0.05, 0.05, 0.9]])
    q = combine(pg, [pm], [subset], active=np.ones((1, 1), dtype=bool), tol=1e-12)
    a_out, d = 1.5e-9, 0.9
    expected = np.r_[(pg[0, :2] + pm[0, :2]) / 2, pg[0, 2:] * (a_out + d) / (2 * a_out)]
    assert np.allclose(q[0], expected, rtol=1e-6, atol=1e-12)
    q_em = combine(pg, [pm], [subset], active=np.ones((1, 1), dtype=bool), method="em")
    assert abs(q_em[0, 2] - expected[2]) > 0.05


def test_exact_zeros_outside_subset():
    # p_g has no mass outside the subset but the specialist does: by hand, q_0 minimizes
    # -log q0 - 0.5 log q0 - 0.5 log(1 - q0), so q_0 = 0.75; the rest may split in any way.
    pg = np.array([[1.0, 0.0, 0.0]])
    pm = np.array([[0.5, 0.5]])
    q = combine(pg, [pm], [np.array([0])])
    assert q[0, 0] == pytest.approx(0.75)
    assert q.sum() == pytest.approx(1.0)


def test_newton_and_plain_iteration_agree():
    subsets = [np.array([0, 1, 2, 3]), np.array([2, 3, 4, 5, 6]), np.array([6, 7, 8]),
               np.array([1, 8, 9])]
    pg, pms = random_case(subsets, n=60, num_classes=11, seed=12, scale=2.5)
    q_newton = combine(pg, pms, subsets, top_n=2, tol=1e-13)
    q_em = combine(pg, pms, subsets, top_n=2, tol=1e-13, method="em", max_iter=100_000)
    assert np.max(np.abs(q_newton - q_em)) < 1e-8


def test_gradient_vanishes_at_fixed_point():
    subsets = [np.array([1, 3, 5]), np.array([5, 6]), np.array([0, 2, 3, 7])]
    pg, pms = random_case(subsets, n=5, num_classes=9, seed=3, scale=3.0)
    q = combine(pg, pms, subsets, active=np.ones((5, 3), dtype=bool), tol=1e-14)
    for i in range(5):
        grad = objective_and_grad(np.log(q[i]), pg[i], [pm[i] for pm in pms], subsets)[1]
        assert np.max(np.abs(grad)) < 1e-9


def test_no_active_specialist_returns_generalist():
    subsets = [np.array([0, 1]), np.array([2, 3, 4])]
    pg, pms = random_case(subsets, n=4, num_classes=6, seed=4)
    q = combine(pg, pms, subsets, active=np.zeros((4, 2), dtype=bool))
    assert np.array_equal(q, pg / pg.sum(axis=1, keepdims=True))
    assert np.allclose(combine(pg, [], []), pg, atol=1e-15)


def test_full_coverage_gives_arithmetic_mean():
    # Every model covers every class (dustbin empty, zero mass): q is the mean distribution.
    rng = np.random.default_rng(5)
    pg = softmax(rng.normal(size=(7, 5)), axis=1)
    full = [np.arange(5)] * 3
    pms = [np.c_[softmax(rng.normal(size=(7, 5)), axis=1), np.zeros(7)] for _ in full]
    q = combine(pg, pms, full, active=np.ones((7, 3), dtype=bool))
    assert np.allclose(q, (pg + sum(pm[:, :5] for pm in pms)) / 4, atol=1e-14)


def test_objective_never_increases():
    subsets = [np.array([0, 1, 2]), np.array([2, 3, 4, 5]), np.array([5, 6, 7, 8])]
    pg, pms = random_case(subsets, n=10, num_classes=10, seed=6, scale=3.0)
    active = np.ones((10, 3), dtype=bool)
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for iters in range(1, 30):
            q = combine(pg, pms, subsets, active=active, max_iter=iters)
            assert np.allclose(q.sum(axis=1), 1.0)
            values.append(combination_objective(q, pg, pms, subsets, active=active))
    assert np.all(np.diff(np.asarray(values), axis=0) <= 1e-12)


def test_batch_equals_one_example_at_a_time_and_ignores_inactive_rows():
    subsets = [np.array([0, 1, 2]), np.array([2, 3]), np.array([6, 7])]
    pg, pms = random_case(subsets, n=12, num_classes=8, seed=7)
    active = active_specialists(pg, subsets, top_n=2)
    q = combine(pg, pms, subsets, top_n=2, tol=1e-13)
    for i in range(12):
        q_i = combine(pg[i:i + 1], [pm[i:i + 1] for pm in pms], subsets,
                      active=active[i:i + 1], tol=1e-13)
        assert np.allclose(q[i], q_i[0], atol=1e-12)
    # Rows where a specialist is inactive do not matter.
    scrambled = [pm.copy() for pm in pms]
    for m, pm in enumerate(scrambled):
        pm[~active[:, m]] = pm[~active[:, m]][:, ::-1]
    assert np.allclose(combine(pg, scrambled, subsets, top_n=2, tol=1e-13), q, atol=1e-12)


def test_active_specialists_by_hand():
    pg = np.array([[0.5, 0.3, 0.1, 0.1],
                   [0.1, 0.2, 0.3, 0.4],
                   [0.25, 0.25, 0.25, 0.25]])
    subsets = [np.array([0, 2]), np.array([1, 3]), np.array([3])]
    assert active_specialists(pg, subsets).tolist() == [
        [True, False, False], [False, True, True], [True, False, False]]
    assert active_specialists(pg, subsets, top_n=2).tolist() == [
        [True, True, False], [True, True, True], [True, True, False]]


def test_combination_rejects_bad_input():
    subsets = [np.array([0, 1])]
    pg, pms = random_case(subsets, n=3, num_classes=4, seed=8)
    with pytest.raises(ValueError, match="3 columns"):
        combine(pg, [pms[0][:, :2] / pms[0][:, :2].sum(1, keepdims=True)], subsets)
    with pytest.raises(ValueError, match="rows"):
        combine(pg, [pms[0][:2]], subsets)
    with pytest.raises(ValueError, match="out of range"):
        combine(pg, pms, [np.array([0, 4])])
    with pytest.raises(ValueError, match="2 specialist outputs for 1"):
        combine(pg, pms * 2, subsets)
    with pytest.raises(ValueError, match="active must have shape"):
        combine(pg, pms, subsets, active=np.ones((3, 2), dtype=bool))
    with pytest.raises(ValueError, match="sum to 1"):
        combine(2.0 * pg, pms, subsets)
    with pytest.raises(ValueError, match="dustbin"):
        combine(pg, [softmax(np.zeros((3, 5)), axis=1)], [np.arange(4)])


# ----------------------------------------------------------------------------- dustbin


def test_dustbin_correction_values():
    # SPEC §4.3: f = 0.01 gives exact log(99) = 4.595 and literal log(50) = 3.912.
    assert dustbin_correction(0.01) == pytest.approx(4.59512, abs=1e-5)
    assert dustbin_correction(0.01, literal=True) == pytest.approx(3.91202, abs=1e-5)
    assert dustbin_correction(0.1) == pytest.approx(math.log(9.0))
    assert dustbin_correction(0.1, literal=True) == pytest.approx(math.log(5.0))
    # Training fraction r = 0.25: log(9 * 0.25 / 0.75) = log 3; literal log(0.25 / 0.1).
    assert dustbin_correction(0.1, special_fraction=0.25) == pytest.approx(math.log(3.0))
    assert dustbin_correction(0.1, 0.25, literal=True) == pytest.approx(math.log(2.5))


def test_dustbin_correction_restores_natural_posterior_by_hand():
    # 4 classes with natural prior (0.05, 0.05, 0.45, 0.45); the specialist covers {0, 1}, so
    # f = 0.1. Trained half/half, its priors are (0.25, 0.25) and 0.25 each for classes 2 and 3.
    # For likelihoods p(x|c) = (0.2, 0.1, 0.3, 0.4):
    #   trained posterior   ~ (0.25*0.2, 0.25*0.1, 0.25*0.3 + 0.25*0.4) = (0.05, 0.025, 0.175)
    #   natural posterior   ~ (0.05*0.2, 0.05*0.1, 0.45*0.3 + 0.45*0.4) = (0.01, 0.005, 0.315)
    trained = np.log([[0.05, 0.025, 0.175]])
    corrected = correct_dustbin(trained, dustbin_correction(0.1))
    assert np.allclose(softmax(corrected, axis=1), np.array([[0.01, 0.005, 0.315]]) / 0.33)
    assert np.array_equal(corrected[:, :2], trained[:, :2])
    # The paper's literal variant under-corrects by log(2 (1 - f)) = log(1.8).
    literal = correct_dustbin(trained, dustbin_correction(0.1, literal=True))
    assert corrected[0, 2] - literal[0, 2] == pytest.approx(math.log(1.8))


@pytest.mark.parametrize("args", [(0.0,), (1.0,), (0.1, 1.0), (0.1, 0.0), (-0.2,)])
def test_dustbin_correction_rejects_bad_fractions(args):
    with pytest.raises(ValueError):
        dustbin_correction(*args)


# ----------------------------------------------------------------------------- label space


def test_label_map_and_labels():
    assert specialist_label_map([5, 2], 6).tolist() == [2, 2, 1, 2, 2, 0]
    assert to_specialist_labels([0, 2, 5, 5, 3], [5, 2], 6).tolist() == [2, 1, 0, 0, 2]
    with pytest.raises(ValueError, match="out of range"):
        to_specialist_labels([0, 6], [5, 2], 6)
    with pytest.raises(ValueError, match="duplicate"):
        specialist_label_map([2, 2], 6)


def test_group_probs_by_hand():
    p = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    assert np.allclose(group_probs(p, [3, 1]), [[0.4, 0.2, 0.4], [0.1, 0.1, 0.8]])


def test_specialist_sample_is_half_from_subset():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 10, 1000)
    subset = np.array([2, 7])
    idx = specialist_sample(y, subset, 10, seed=1)
    special = np.isin(y, subset)
    assert np.sum(special[idx]) == special.sum() == len(idx) // 2
    assert np.unique(idx).size == idx.size  # enough of both: no repeats
    idx2 = specialist_sample(y, subset, 10, num_samples=300, special_fraction=0.25, seed=1)
    assert len(idx2) == 300 and np.sum(special[idx2]) == 75
    assert np.array_equal(idx, specialist_sample(y, subset, 10, seed=1))
    with pytest.raises(ValueError, match="inside and outside"):
        specialist_sample(np.array([2, 7, 2]), subset, 10)


def test_covering_counts():
    subsets = [np.array([0, 1]), np.array([1, 2]), np.array([1, 3])]
    assert covering_counts([0, 1, 2, 3, 4], subsets, 5).tolist() == [1, 3, 1, 1, 0]


# ----------------------------------------------------------------------------- clustering


GROUPS = [[0, 1, 2], [3, 4, 5, 6], [7, 8], [9, 10, 11]]


def planted_probs(n=3000, seed=10):
    """A generalist that confuses classes within each planted group and no others."""
    rng = np.random.default_rng(seed)
    num_classes = sum(len(g) for g in GROUPS)
    y = rng.integers(0, num_classes, n)
    group_of = np.empty(num_classes, dtype=int)
    for j, g in enumerate(GROUPS):
        group_of[g] = j
    logits = rng.normal(scale=0.5, size=(n, num_classes))
    same_group = group_of[None, :] == group_of[y][:, None]
    logits += np.where(same_group, 4.0 + rng.normal(scale=1.0, size=logits.shape), 0.0)
    logits[np.arange(n), y] += 1.5
    return softmax(logits, axis=1)


def test_covariance_matches_numpy():
    p = planted_probs(n=200)
    assert np.allclose(prediction_covariance(p), np.cov(p, rowvar=False))


def test_clustering_recovers_planted_groups():
    subsets = find_confusable_subsets(planted_probs(), num_subsets=4, seed=0)
    assert [s.tolist() for s in subsets] == GROUPS


def test_overlapping_subsets_extend_planted_groups():
    subsets = find_confusable_subsets(planted_probs(), num_subsets=4, subset_size=4, seed=0)
    assert len(subsets) == 4
    assert all(len(s) == 4 for s in subsets)
    for g in GROUPS:  # each planted group lies inside one of the subsets
        assert any(set(g) <= set(s.tolist()) for s in subsets)
    counts = covering_counts(np.arange(12), subsets, 12)
    assert counts.min() >= 1 and counts.max() >= 2  # every class covered, some twice


def test_clustering_rejects_bad_sizes():
    p = planted_probs(n=100)
    with pytest.raises(ValueError, match="subset_size"):
        find_confusable_subsets(p, 3, subset_size=13)
    with pytest.raises(ValueError, match="subset_size"):
        find_confusable_subsets(p, 3, subset_size=12)
    with pytest.raises(ValueError, match="num_subsets"):
        find_confusable_subsets(p, 13)
    with pytest.raises(ValueError, match="NaN"):
        find_confusable_subsets(np.full((4, 3), np.nan), 2)
