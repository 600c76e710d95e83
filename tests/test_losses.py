import math

import pytest
import torch
import torch.nn.functional as F

from kdistill.distill.losses import (
    distillation_loss,
    log_softmax_t,
    logit_matching_loss,
    soft_target_loss,
    softmax_t,
)


def hand_softmax(z, T):
    e = [math.exp(v / T) for v in z]
    s = sum(e)
    return [v / s for v in e]


def hand_kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_softmax_temperature_matches_hand_values():
    z = [1.0, 2.0, 3.0]
    for T in (0.5, 1.0, 2.0, 20.0):
        got = softmax_t(torch.tensor([z]), T)[0].tolist()
        assert got == pytest.approx(hand_softmax(z, T), abs=1e-7)
    # high T flattens towards uniform, low T sharpens towards one-hot
    assert softmax_t(torch.tensor([z]), 1e4)[0].tolist() == pytest.approx([1 / 3] * 3, abs=1e-4)
    assert softmax_t(torch.tensor([z]), 0.01)[0, 2] > 0.999
    assert log_softmax_t(torch.tensor([z]), 2.0).exp().tolist()[0] == pytest.approx(
        hand_softmax(z, 2.0), abs=1e-7)


def test_soft_loss_is_T_squared_forward_kl_with_batchmean():
    z = [[0.5, -1.0, 2.0, 0.1], [1.0, 1.0, -2.0, 0.0]]
    v = [[2.0, 0.0, 1.0, -1.0], [0.0, 3.0, 1.0, 0.5]]
    T = 3.0
    forward = [hand_kl(hand_softmax(vi, T), hand_softmax(zi, T)) for zi, vi in zip(z, v)]
    reverse = [hand_kl(hand_softmax(zi, T), hand_softmax(vi, T)) for zi, vi in zip(z, v)]
    got = soft_target_loss(torch.tensor(z), torch.tensor(v), T)
    assert float(got) == pytest.approx(T * T * sum(forward) / 2, rel=1e-5)
    # not the reverse KL (swapped kl_div arguments) ...
    assert float(got) != pytest.approx(T * T * sum(reverse) / 2, rel=1e-3)
    # ... and not torch's "mean", which also divides by the number of classes
    wrong_mean = F.kl_div(log_softmax_t(torch.tensor(z), T), softmax_t(torch.tensor(v), T),
                          reduction="sum") / (2 * 4) * T * T  # what reduction="mean" computes
    assert float(got) == pytest.approx(4 * float(wrong_mean), rel=1e-6)
    per = soft_target_loss(torch.tensor(z), torch.tensor(v), T, reduction="none")
    assert per.tolist() == pytest.approx([T * T * f for f in forward], rel=1e-5)


def test_temperature_applies_to_both_sides():
    z = torch.randn(5, 10)
    for T in (1.0, 4.0, 20.0):
        assert float(soft_target_loss(z, z.clone(), T)) == pytest.approx(0.0, abs=1e-6)
    # softmax is shift-invariant, so a constant offset is still a perfect match
    assert float(soft_target_loss(z, z + 3.0, 5.0)) == pytest.approx(0.0, abs=1e-6)


def test_gradient_identity_q_minus_p_over_T():
    torch.manual_seed(0)
    z = torch.randn(4, 10, requires_grad=True)
    v = torch.randn(4, 10)
    T = 4.0
    loss = soft_target_loss(z, v, T)  # T^2 * KL, batchmean
    loss.backward()
    q, p = softmax_t(z.detach(), T), softmax_t(v, T)
    # d(H(p, q_T))/dz = (q - p) / T; the T^2 factor and the batch mean scale it
    expected = T * T * (q - p) / T / z.shape[0]
    assert torch.allclose(z.grad, expected, atol=1e-7)


def test_T_squared_keeps_gradient_scale_roughly_constant():
    torch.manual_seed(0)
    z0, v = torch.randn(2000, 10), torch.randn(2000, 10)
    scaled, unscaled = [], []
    for T in (2.0, 5.0, 10.0, 20.0):
        z = z0.clone().requires_grad_(True)
        soft_target_loss(z, v, T, reduction="sum").backward()
        scaled.append(float(z.grad.abs().mean()))
        unscaled.append(scaled[-1] / T**2)
    assert max(scaled) / min(scaled) < 1.1
    # and it tends to the logit-matching gradient (z - v) / N of zero-meaned logits (SPEC 1.4)
    zc, vc = z0 - z0.mean(1, keepdim=True), v - v.mean(1, keepdim=True)
    limit = float(((zc - vc) / 10).abs().mean())
    assert scaled[-1] == pytest.approx(limit, rel=0.03)
    assert unscaled[0] / unscaled[-1] > 80  # without T^2 it falls as 1/T^2


def test_high_temperature_gradient_is_logit_matching():
    torch.manual_seed(1)
    z0, v = torch.randn(64, 10) * 3, torch.randn(64, 10) * 3 + 1.0
    z = z0.clone().requires_grad_(True)
    soft_target_loss(z, v, 1000.0).backward()
    g_kd = z.grad.clone()
    z = z0.clone().requires_grad_(True)
    logit_matching_loss(z, v).backward()
    rel = (g_kd - z.grad).abs().max() / z.grad.abs().max()
    assert float(rel) < 0.01


def test_logit_matching_hand_value_and_shift_invariance():
    z = torch.tensor([[1.0, 2.0, 3.0]])
    v = torch.tensor([[0.0, 0.0, 3.0]])
    zc, vc = [-1.0, 0.0, 1.0], [-1.0, -1.0, 2.0]
    expected = sum((a - b) ** 2 for a, b in zip(zc, vc)) / (2 * 3)
    assert float(logit_matching_loss(z, v)) == pytest.approx(expected)
    assert float(logit_matching_loss(z + 5, v - 2)) == pytest.approx(expected)


def test_soft_term_in_fp32_even_for_half_inputs():
    torch.manual_seed(0)
    z, v = torch.randn(8, 10), torch.randn(8, 10)
    ref = soft_target_loss(z.half().float(), v.half().float(), 20.0)
    got = soft_target_loss(z.half(), v.half(), 20.0)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(ref), rel=1e-6)
    # in half precision the tempered probabilities lose the differences
    naive = (F.softmax(v.half() / 20, -1) * (F.log_softmax(v.half() / 20, -1)
             - F.log_softmax(z.half() / 20, -1))).sum(-1).mean() * 400
    assert abs(float(naive) - float(ref)) > 1e-4 * abs(float(ref))


def test_teacher_logits_get_no_gradient():
    z = torch.randn(3, 5, requires_grad=True)
    v = torch.randn(3, 5, requires_grad=True)
    soft_target_loss(z, v, 2.0).backward()
    assert v.grad is None and z.grad is not None


def test_distillation_loss_combines_soft_and_hard_terms():
    torch.manual_seed(0)
    z, v = torch.randn(6, 4), torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    T = 5.0
    soft = float(soft_target_loss(z, v, T))
    hard = float(F.cross_entropy(z, y))  # at T = 1, no T^2
    got = distillation_loss(z, v, y, temperature=T, soft_weight=1.0, hard_weight=0.5)
    assert float(got) == pytest.approx(soft + 0.5 * hard, rel=1e-6)
    # unlabelled transfer set: soft term only
    assert float(distillation_loss(z, v, None, temperature=T)) == pytest.approx(soft, rel=1e-6)
    # no teacher: plain cross-entropy
    assert float(distillation_loss(z, None, y, soft_weight=0, hard_weight=1)) == \
        pytest.approx(hard, rel=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"soft_weight": -0.1}, "soft_weight"),
    ({"hard_weight": float("inf")}, "hard_weight"),
    ({"soft_weight": 0.0, "hard_weight": 0.0}, "both 0"),
])
def test_bad_parameters_are_rejected(kwargs, match):
    z, v, y = torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1])
    args = {"temperature": 2.0, "soft_weight": 1.0, "hard_weight": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        distillation_loss(z, v, y, **args)


def test_class_count_mismatch_is_rejected():
    with pytest.raises(ValueError, match="number of classes"):
        soft_target_loss(torch.randn(2, 10), torch.randn(2, 9), 2.0)


@pytest.mark.parametrize("T", [1.0, 20.0, 100.0, 1000.0])
def test_logged_soft_term_matches_float64_at_high_temperature(T):
    """The T^2-scaled KL from float32 logits within 1e-3 relative of a float64 reference."""
    g = torch.Generator().manual_seed(0)
    z, v = torch.randn(256, 10, generator=g) * 3, torch.randn(256, 10, generator=g) * 5
    got = soft_target_loss(z, v, T)
    assert got.dtype == torch.float32
    p = torch.softmax(v.double() / T, -1)
    ref = (p * (torch.log_softmax(v.double() / T, -1) - torch.log_softmax(z.double() / T, -1))
           ).sum(-1).mean() * T * T
    assert float(got) > 0
    assert abs(float(got) - float(ref)) <= 1e-3 * float(ref)
