"""Each method against an independent float64 numpy computation of its paper's equation, its
gradient by gradcheck, and the edge cases (a batch of one, a binary problem)."""

import numpy as np
import pytest
import torch

from kdistill.distill import methods
from kdistill.distill.adapters import Batch
from kdistill.distill.methods import Outputs


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_kl(p, q):
    """Row-wise KL(p || q) from probabilities, 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return inner.sum(axis=-1)


def np_ce(z, y):
    return -np_log_softmax(z)[np.arange(len(y)), y]


def case(n=6, k=5, seed=0):
    rng = np.random.default_rng(seed)
    z, v = rng.normal(size=(n, k)) * 2, rng.normal(size=(n, k)) * 3
    y = rng.integers(0, k, size=n)
    return z, v, y


def run(method, z, v, y, dtype=torch.float64, features=None):
    s = Outputs(torch.tensor(z, dtype=dtype), (features or {}).get("s", {}))
    t = Outputs(torch.tensor(v, dtype=dtype), (features or {}).get("t", {}))
    labels = None if y is None else torch.tensor(y)
    return {k: val.detach().numpy() for k, val in method(s, t, Batch(None, labels)).items()}


def test_registry_lists_and_validates():
    assert set(methods.available()) >= {"ce", "kd", "logit_matching", "dkd", "fitnets"}
    with pytest.raises(ValueError, match="unknown method 'kdd'"):
        methods.get("kdd")
    with pytest.raises(ValueError, match="has no parameter 'alpah'; its parameters: alpha"):
        methods.get("dkd", alpah=1.0)
    with pytest.raises(ValueError, match="needs student_layer, teacher_layer"):
        methods.get("fitnets")
    for bad in ({"temperature": 0}, {"temperature": float("nan")}, {"hard_weight": -1},
                {"temperature": True}, {"soft_weight": "x"}):
        with pytest.raises(ValueError, match="kd: "):
            methods.get("kd", **bad)
    with pytest.raises(ValueError, match="both 0"):
        methods.get("kd", soft_weight=0, hard_weight=0)
    assert methods.get("dkd", beta=2).describe() == {"name": "dkd", "alpha": 1.0, "beta": 2.0,
                                                     "temperature": 4.0, "hard_weight": 1.0}


def test_kd_is_hintons_equation():
    z, v, y = case()
    T = 3.0
    got = run(methods.get("kd", temperature=T, soft_weight=0.7, hard_weight=0.2), z, v, y)
    p, q = np.exp(np_log_softmax(v / T)), np.exp(np_log_softmax(z / T))
    np.testing.assert_allclose(got["soft"], 0.7 * T * T * np_kl(p, q), rtol=1e-10)
    np.testing.assert_allclose(got["hard"], 0.2 * np_ce(z, y), rtol=1e-10)
    # an unlabelled batch has no hard term
    assert set(run(methods.get("kd"), z, v, None)) == {"soft"}


def test_logit_standardization_matches_z_scores():
    z, v, y = case(seed=1)
    T = 2.0
    zs = (z - z.mean(1, keepdims=True)) / z.std(1, keepdims=True)
    vs = (v - v.mean(1, keepdims=True)) / v.std(1, keepdims=True)
    got = run(methods.get("kd", temperature=T, standardize=True, hard_weight=0), z, v, y)
    p, q = np.exp(np_log_softmax(vs / T)), np.exp(np_log_softmax(zs / T))
    np.testing.assert_allclose(got["soft"], T * T * np_kl(p, q), rtol=1e-6)
    # invariant to the teacher's scale and shift: that is the point of standardizing
    again = run(methods.get("kd", temperature=T, standardize=True, hard_weight=0), z,
                5 * v + 3, y)
    np.testing.assert_allclose(again["soft"], got["soft"], rtol=1e-6)


def np_dkd(z, v, y, T):
    """Zhao et al. 2022 written out with probabilities and column deletion."""
    ps, pt = np.exp(np_log_softmax(z / T)), np.exp(np_log_softmax(v / T))
    n = len(y)
    bs = np.stack([ps[np.arange(n), y], 1 - ps[np.arange(n), y]], 1)
    bt = np.stack([pt[np.arange(n), y], 1 - pt[np.arange(n), y]], 1)
    tckd = np_kl(bt, bs) * T * T
    nckd = []
    for i in range(n):
        keep = np.arange(z.shape[1]) != y[i]
        qs = np.exp(np_log_softmax(z[i, keep] / T))
        qt = np.exp(np_log_softmax(v[i, keep] / T))
        nckd.append(np_kl(qt[None], qs[None])[0] * T * T)
    return tckd, np.array(nckd)


def test_dkd_is_the_papers_decomposition():
    z, v, y = case(seed=2)
    T = 4.0
    got = run(methods.get("dkd", alpha=0.5, beta=3.0, temperature=T, hard_weight=1.0), z, v, y)
    tckd, nckd = np_dkd(z, v, y, T)
    np.testing.assert_allclose(got["tckd"], 0.5 * tckd, rtol=1e-8)
    np.testing.assert_allclose(got["nckd"], 3.0 * nckd, rtol=1e-8)
    np.testing.assert_allclose(got["hard"], np_ce(z, y), rtol=1e-10)
    # the paper's identity: KD = TCKD + (1 - p_t[target]) * NCKD
    kd = run(methods.get("kd", temperature=T, hard_weight=0), z, v, y)["soft"]
    pt_gt = np.exp(np_log_softmax(v / T))[np.arange(len(y)), y]
    np.testing.assert_allclose(kd, tckd + (1 - pt_gt) * nckd, rtol=1e-8)


def test_dkd_binary_and_saturated_teacher_stay_finite():
    z = np.array([[2.0, -1.0], [0.5, 0.4]])
    v = np.array([[300.0, -300.0], [-50.0, 60.0]])  # saturated: p is exactly 0 or 1
    y = np.array([0, 1])
    for dtype in (torch.float32, torch.float64):
        got = run(methods.get("dkd"), z, v, y, dtype=dtype)
        assert all(np.isfinite(val).all() for val in got.values())
        np.testing.assert_allclose(got["nckd"], 0.0, atol=1e-12)  # one non-target class


def test_logit_matching_is_half_mean_squared_centred_difference():
    z, v, y = case(seed=3)
    got = run(methods.get("logit_matching", hard_weight=0.5), z, v, y)
    d = (z - z.mean(1, keepdims=True)) - (v - v.mean(1, keepdims=True))
    np.testing.assert_allclose(got["soft"], (d ** 2).sum(1) / (2 * z.shape[1]), rtol=1e-10)
    np.testing.assert_allclose(got["hard"], 0.5 * np_ce(z, y), rtol=1e-10)


def fitnets_case(shape_s, shape_t, seed=4):
    rng = np.random.default_rng(seed)
    fs, ft = rng.normal(size=shape_s), rng.normal(size=shape_t)
    m = methods.get("fitnets", student_layer="s", teacher_layer="t", hint_weight=2.0,
                    hard_weight=0.0)
    feats = {"s": {"s": torch.tensor(fs)}, "t": {"t": torch.tensor(ft)}}
    z, v, y = case(n=shape_s[0], k=3, seed=seed)
    m.setup(Outputs(torch.tensor(z), feats["s"]), Outputs(torch.tensor(v), feats["t"]))
    m.double()
    return m, fs, ft, z, v, y, feats


def test_fitnets_hint_on_vectors_and_feature_maps():
    m, fs, ft, z, v, y, feats = fitnets_case((4, 6), (4, 9))
    w, b = m.regressor.weight.detach().numpy(), m.regressor.bias.detach().numpy()
    want = 2.0 * ((fs @ w.T + b - ft) ** 2).mean(axis=1)
    np.testing.assert_allclose(run(m, z, v, y, features=feats)["hint"], want, rtol=1e-10)
    # maps: a 1x1 convolution, the student's 8x8 map pooled to the teacher's 4x4
    m, fs, ft, z, v, y, feats = fitnets_case((3, 2, 8, 8), (3, 5, 4, 4))
    pooled = fs.reshape(3, 2, 4, 2, 4, 2).mean(axis=(3, 5))
    w = m.regressor.weight.detach().numpy()[:, :, 0, 0]
    r = np.einsum("oc,nchw->nohw", w, pooled) + m.regressor.bias.detach().numpy()[:, None, None]
    want = 2.0 * ((r - ft) ** 2).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(run(m, z, v, y, features=feats)["hint"], want, rtol=1e-10)


@pytest.mark.parametrize("name,params", [
    ("kd", {"temperature": 3.0}), ("kd", {"standardize": True}), ("dkd", {}),
    ("logit_matching", {"hard_weight": 0.3}), ("ce", {})])
def test_gradients_by_gradcheck(name, params):
    z, v, y = case(n=3, k=4, seed=5)
    method = methods.get(name, **params)
    teacher = Outputs(torch.tensor(v))
    labels = torch.tensor(y)

    def f(logits):
        terms = method(Outputs(logits), teacher, Batch(None, labels))
        return sum(t.sum() for t in terms.values())

    assert torch.autograd.gradcheck(f, (torch.tensor(z, requires_grad=True),))


def test_fitnets_gradients_reach_student_features_and_regressor():
    m, fs, ft, z, v, y, feats = fitnets_case((3, 4), (3, 5))
    teacher = Outputs(torch.tensor(v), feats["t"])

    def f(feature, weight):
        out = torch.func.functional_call(
            m, {"regressor.weight": weight, "regressor.bias": m.regressor.bias},
            (Outputs(torch.tensor(z), {"s": feature}), teacher, Batch(None, None)))
        return out["hint"].sum()

    args = (torch.tensor(fs, requires_grad=True),
            m.regressor.weight.detach().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(f, args)


@pytest.mark.parametrize("name", ["kd", "dkd", "logit_matching", "ce"])
@pytest.mark.parametrize("k", [2, 7])
def test_batch_of_one_and_binary_problems_are_finite(name, k):
    z, v, y = case(n=1, k=k, seed=6)
    got = run(methods.get(name), z, v, y, dtype=torch.float32)
    assert got and all(np.isfinite(val).all() and val.shape == (1,) for val in got.values())
