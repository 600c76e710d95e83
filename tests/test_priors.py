"""Tests for the automatic bias fix (SPEC §2.4), against independently computed values."""

import warnings

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from kdistill.distill.bias import (
    label_prior,
    match_prior,
    match_prior_single,
    mean_prediction,
    oracle_offset,
    teacher_prior,
)

METHODS = ["em", "newton"]


def teacher_logits(n: int = 2000, num_classes: int = 10, scale: float = 4.0, seed: int = 0):
    """Logits of a fairly confident teacher, and the labels it was built around."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    v = rng.normal(size=(n, num_classes))
    v[np.arange(n), y] += scale
    return v, y


def mean_kl(p: np.ndarray, z: np.ndarray, b: np.ndarray) -> float:
    """mean_x KL(p(x) || softmax(z(x) + b)), written out directly."""
    return float(np.mean(np.sum(p * (np.log(p) - log_softmax(z + b, axis=1)), axis=1)))


# ----------------------------------------------------------------------------- target priors


def test_label_prior_counts_and_smoothing():
    assert np.allclose(label_prior([0, 1, 1, 3], 4), [0.25, 0.5, 0.0, 0.25])
    assert np.allclose(label_prior([0, 1, 1, 3], 4, smoothing=1.0), [2 / 8, 3 / 8, 1 / 8, 2 / 8])


def test_teacher_prior_is_mean_prediction():
    v, _ = teacher_logits(n=50)
    p = softmax(v, axis=1)
    assert np.allclose(teacher_prior(p), p.mean(axis=0))
    assert np.allclose(teacher_prior(v, from_logits=True), p.mean(axis=0))


@pytest.mark.parametrize(
    "call",
    [
        lambda: label_prior([0, 4], 4),
        lambda: label_prior([0.5, 1.0], 4),
        lambda: teacher_prior([[0.5, 0.6], [0.5, 0.5]]),
        lambda: teacher_prior([[-0.5, 1.5]]),
    ],
)
def test_prior_helpers_reject_bad_input(call):
    with pytest.raises(ValueError):
        call()


# ----------------------------------------------------------------------------- match_prior


@pytest.mark.parametrize("method", METHODS)
def test_recovers_offset_of_omitted_class(method):
    # Student = teacher with class 3 pushed down by 4: the exact fix is +4 on class 3.
    v, _ = teacher_logits()
    z = v.copy()
    z[:, 3] -= 4.0
    pi = teacher_prior(v, from_logits=True)
    b = match_prior(z, pi, classes=[3], tol=1e-10, method=method)
    expected = np.zeros(10)
    expected[3] = 4.0
    assert np.allclose(b, expected, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_recovers_lowered_pair_and_all_class_gauge(method):
    # The "only 7s and 8s" case: both biases too high by 7.6.
    v, _ = teacher_logits(seed=1)
    z = v.copy()
    z[:, [7, 8]] += 7.6
    pi = teacher_prior(v, from_logits=True)
    b = match_prior(z, pi, classes=[7, 8], tol=1e-10, method=method)
    assert np.allclose(b[[7, 8]], -7.6, atol=1e-6)
    assert np.all(b[np.r_[0:7, 9]] == 0.0)
    # All classes: same answer up to a constant, centred to sum 0.
    b_all = match_prior(z, pi, tol=1e-10, method=method)
    expected = np.zeros(10)
    expected[[7, 8]] = -7.6
    assert abs(b_all.sum()) < 1e-9
    assert np.allclose(b_all, expected - expected.mean(), atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("classes", [None, [2], [0, 5, 9]])
def test_mean_prediction_matches_prior_after_fix(method, classes):
    z, _ = teacher_logits(n=1500, seed=2)
    pi = np.random.default_rng(3).dirichlet(np.full(10, 5.0))
    b = match_prior(z, pi, classes=classes, tol=1e-6, method=method)
    k = np.arange(10) if classes is None else np.asarray(classes)
    pihat = mean_prediction(z, b)
    # Stopping rule |log(pi/pihat)| < tol means a relative error below about tol.
    assert np.all(np.abs(pihat[k] / pi[k] - 1.0) < 2e-6)
    if classes is not None:
        rest = np.setdiff1d(np.arange(10), k)
        assert np.all(b[rest] == 0.0)


def test_em_and_newton_agree_on_confident_student():
    z, _ = teacher_logits(n=1000, scale=12.0, seed=4)
    z[:, 3] -= 6.0
    pi = np.full(10, 0.1)
    b_em = match_prior(z, pi, classes=[3], tol=1e-9, method="em", max_iter=50_000)
    b_nt = match_prior(z, pi, classes=[3], tol=1e-9, method="newton")
    assert abs(b_em[3] - b_nt[3]) < 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_single_class_bisection_agrees_with_em(method):
    z, _ = teacher_logits(n=1000, seed=5)
    z[:, 6] -= 3.0
    target = 0.13
    pi = np.full(10, (1 - target) / 9)
    pi[6] = target
    b = match_prior(z, pi, classes=[6], tol=1e-11, method=method)
    d = match_prior_single(z, target, 6)
    assert abs(b[6] - d) < 1e-7
    assert abs(mean_prediction(z, b)[6] - target) < 1e-9


def test_bisection_solves_its_equation():
    z, _ = teacher_logits(n=300, seed=6)
    d = match_prior_single(z, 0.4, 0)
    shifted = z.copy()
    shifted[:, 0] += d
    assert abs(softmax(shifted, axis=1)[:, 0].mean() - 0.4) < 1e-9


@pytest.mark.parametrize("method", METHODS)
def test_minimizes_mean_kl_to_teacher(method):
    # With pi = teacher mean, the fix is the best bias-only fit to the teacher (SPEC §2.4).
    rng = np.random.default_rng(7)
    v = rng.normal(scale=2.0, size=(400, 6))
    z = v + rng.normal(scale=1.5, size=v.shape) + np.array([0, 0, -3, 0, 1, 0])
    p = softmax(v, axis=1)
    b = match_prior(z, teacher_prior(p), tol=1e-10, method=method)

    def f(x):
        bb = np.r_[x, 0.0]
        q = softmax(z + bb, axis=1)
        return mean_kl(p, z, bb), (q.mean(axis=0) - p.mean(axis=0))[:-1]

    ref = minimize(f, np.zeros(5), jac=True, method="BFGS", options={"gtol": 1e-12})
    b_ref = np.r_[ref.x, 0.0]
    assert mean_kl(p, z, b) <= ref.fun + 1e-10
    assert np.allclose(b - b.mean(), b_ref - b_ref.mean(), atol=1e-5)


def test_subset_minimizes_restricted_objective():
    # For a subset K the fix minimizes mean logsumexp(z + b) - pi_K . b_K with b = 0 off K.
    rng = np.random.default_rng(8)
    z = rng.normal(scale=2.0, size=(500, 7))
    pi = rng.dirichlet(np.full(7, 3.0))
    k = np.array([1, 4])

    def f(x):
        bb = np.zeros(7)
        bb[k] = x
        lse = np.log(np.exp(z + bb).sum(axis=1))
        q = softmax(z + bb, axis=1)
        return lse.mean() - pi[k] @ x, q.mean(axis=0)[k] - pi[k]

    ref = minimize(f, np.zeros(2), jac=True, method="BFGS", options={"gtol": 1e-12})
    b = match_prior(z, pi, classes=k, tol=1e-10)
    assert np.allclose(b[k], ref.x, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_never_increases_objective(method):
    rng = np.random.default_rng(9)
    v = rng.normal(scale=3.0, size=(300, 5))
    z = v + rng.normal(size=v.shape)
    z[:, 0] -= 5.0
    p = softmax(v, axis=1)
    pi = teacher_prior(p)
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for iters in range(1, 15):
            values.append(mean_kl(p, z, match_prior(z, pi, max_iter=iters, method=method)))
    assert np.all(np.diff(values) <= 1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_warns_when_not_converged(method):
    z, _ = teacher_logits(n=200, seed=10)
    z[:, 0] -= 5.0
    with pytest.warns(RuntimeWarning, match="did not converge"):
        match_prior(z, np.full(10, 0.1), max_iter=1, method=method)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_prior": np.full(4, 0.3)}, "sum to 1"),
        ({"target_prior": [0.5, 0.5, 0.0, 0.0]}, "strictly positive"),
        ({"target_prior": [1.2, -0.2, 0.0, 0.0]}, "strictly positive"),
        ({"target_prior": np.full(3, 1 / 3)}, "shape"),
        ({"classes": [4]}, "out of range"),
        ({"classes": [-1]}, "out of range"),
        ({"classes": [1, 1]}, "duplicates"),
        ({"logits": np.full((3, 4), np.nan)}, "NaN"),
        ({"logits": np.zeros(4)}, "shape"),
        ({"method": "adam"}, "method"),
    ],
)
def test_match_prior_rejects_bad_input(kwargs, message):
    args = {"logits": np.zeros((3, 4)), "target_prior": np.full(4, 0.25)} | kwargs
    with pytest.raises(ValueError, match=message):
        match_prior(**args)


def test_single_rejects_bad_input():
    with pytest.raises(ValueError, match="between 0 and 1"):
        match_prior_single(np.zeros((3, 4)), 1.0, 0)
    with pytest.raises(ValueError, match="out of range"):
        match_prior_single(np.zeros((3, 4)), 0.5, 7)


# ----------------------------------------------------------------------------- oracle


def test_oracle_offset_hand_example():
    # Class 2 is under-predicted. Offsets in (1, 2.5] fix x1, (2.5, 3] also x2, and above 3
    # x3 (label 0; ties go to class 0) breaks. Best and closest to 0 on the 0.1 grid: 2.6.
    z = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -2.5], [0.0, 0.0, -3.0]])
    y = np.array([2, 2, 0])
    assert oracle_offset(z, y, [2]) == (pytest.approx(2.6), 1.0)


def test_oracle_offset_lowers_two_classes():
    # Classes 1 and 2 are 5 too high; an offset near -5 restores every label.
    rng = np.random.default_rng(11)
    v = rng.normal(size=(300, 4))
    y = v.argmax(axis=1)
    z = v.copy()
    z[:, [1, 2]] += 5.0
    offset, acc = oracle_offset(z, y, [1, 2], grid=np.round(np.arange(-100, 101) * 0.1, 10))
    assert acc == 1.0
    shifted = z.copy()
    shifted[:, [1, 2]] += offset
    assert np.all(shifted.argmax(axis=1) == y)
    assert -5.0 - 1.0 < offset < -5.0 + 1.0


def test_oracle_offset_rejects_bad_labels():
    with pytest.raises(ValueError, match="shape"):
        oracle_offset(np.zeros((3, 4)), [0, 1], [2])
    with pytest.raises(ValueError, match="out of range"):
        oracle_offset(np.zeros((3, 4)), [0, 1, 9], [2])
