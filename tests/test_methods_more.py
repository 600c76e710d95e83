"""DIST, AT, PKT, SP, RKD, CRD and the logit-standardized KD/DKD rows, each against an
independent float64 numpy computation of its paper's equation, its gradient by gradcheck, the
edge cases (a batch of one, a binary problem), its parameter checks, and one epoch through
train() on MLPs."""

import itertools
import math

import numpy as np
import pytest
import torch
from test_methods import case, np_ce, np_dkd, np_log_softmax

from kdistill.distill import methods
from kdistill.distill.adapters import Batch
from kdistill.distill.checkpoint import load_checkpoint
from kdistill.distill.methods import Outputs
from kdistill.distill.methods.crd import crd_nce, sample_negatives
from kdistill.distill.methods.rkd import rkd_angle, rkd_distance
from kdistill.distill.models import MLP
from kdistill.distill.trainer import TrainConfig, train


def outputs(z, v, fs=None, ft=None, dtype=torch.float64):
    def tensor(a):
        return a if isinstance(a, torch.Tensor) else torch.tensor(a, dtype=dtype)

    feats = [{} if f is None else {k: tensor(a) for k, a in f.items()} for f in (fs, ft)]
    return Outputs(tensor(z), feats[0]), Outputs(tensor(v), feats[1])


def run(method, z, v, y, fs=None, ft=None, index=None, dtype=torch.float64):
    s, t = outputs(z, v, fs, ft, dtype)
    batch = Batch(None, None if y is None else torch.tensor(y),
                  None if index is None else torch.as_tensor(index))
    return {k: val.detach().numpy() for k, val in method(s, t, batch).items()}


def unit(a, axis=-1):
    return a / np.linalg.norm(a, axis=axis, keepdims=True)


def softmax(a):
    return np.exp(np_log_softmax(a))


def huber(d):
    d = np.abs(d)
    return np.where(d <= 1, 0.5 * d * d, d - 0.5)


# ---- DIST -----------------------------------------------------------------------------------

def test_dist_is_one_minus_pearson_between_classes_and_between_examples():
    z, v, y = case(n=6, k=5, seed=10)
    T = 2.0
    got = run(methods.get("dist", beta=0.5, gamma=3.0, temperature=T), z, v, y)
    p, q = softmax(z / T), softmax(v / T)
    inter = np.array([1 - np.corrcoef(p[i], q[i])[0, 1] for i in range(len(p))])
    intra = np.mean([1 - np.corrcoef(p[:, j], q[:, j])[0, 1] for j in range(p.shape[1])])
    np.testing.assert_allclose(got["inter"], 0.5 * T * T * inter, rtol=1e-10)
    np.testing.assert_allclose(got["intra"], 3.0 * T * T * intra, rtol=1e-10)
    np.testing.assert_allclose(got["hard"], np_ce(z, y), rtol=1e-10)
    assert got["inter"].shape == (6,) and got["intra"].shape == ()
    # the defaults: the paper's ImageNet setting
    assert methods.get("dist").describe() == {"name": "dist", "beta": 1.0, "gamma": 1.0,
                                              "temperature": 1.0, "hard_weight": 1.0}
    one = run(methods.get("dist"), z[:1], v[:1], y[:1])
    assert one["intra"] == 0.0 and np.isfinite(one["inter"]).all()


# ---- AT -------------------------------------------------------------------------------------

def test_at_matches_normalized_attention_maps_with_pooling():
    rng = np.random.default_rng(11)
    fs1, ft1 = rng.normal(size=(3, 2, 8, 8)), rng.normal(size=(3, 5, 4, 4))  # pooled 8 -> 4
    fs2, ft2 = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))              # vectors
    z, v, y = case(n=3, k=4, seed=11)
    m = methods.get("at", student_layer=["s1", "s2"], teacher_layer=["t1", "t2"], beta=10.0)
    got = run(m, z, v, y, {"s1": fs1, "s2": fs2}, {"t1": ft1, "t2": ft2})
    qs1 = (fs1 ** 2).mean(1).reshape(3, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(3, -1)
    qt1 = (ft1 ** 2).mean(1).reshape(3, -1)
    pair1 = ((unit(qs1) - unit(qt1)) ** 2).mean(1)
    pair2 = ((unit(fs2 ** 2) - unit(ft2 ** 2)) ** 2).mean(1)
    np.testing.assert_allclose(got["at"], 5.0 * (pair1 + pair2), rtol=1e-10)
    np.testing.assert_allclose(got["hard"], np_ce(z, y), rtol=1e-10)
    # the teacher's map may be the larger one too
    back = run(methods.get("at", student_layer="t", teacher_layer="s", beta=10.0), z, v, y,
               {"t": ft1}, {"s": fs1})
    np.testing.assert_allclose(back["at"], 5.0 * pair1, rtol=1e-10)
    assert methods.get("at", student_layer="a", teacher_layer="b").describe()["student_layer"] \
        == ["a"]


# ---- PKT ------------------------------------------------------------------------------------

def np_conditional(f):
    f = unit(f.reshape(len(f), -1))
    k = (f @ f.T + 1) / 2
    n = len(f)
    return np.array([[k[i, j] / sum(k[i, m] for m in range(n) if m != i) if j != i else 0.0
                      for j in range(n)] for i in range(n)])


def test_pkt_is_kl_between_cosine_conditional_probabilities():
    rng = np.random.default_rng(12)
    fs, ft = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 7))   # different widths
    z, v, y = case(n=5, k=3, seed=12)
    got = run(methods.get("pkt", student_layer="s", teacher_layer="t", weight=2.0), z, v, y,
              {"s": fs}, {"t": ft})
    ps, pt = np_conditional(fs), np_conditional(ft)
    off = ~np.eye(5, dtype=bool)
    want = 2.0 * (pt[off] * np.log(pt[off] / ps[off])).sum() / 5
    np.testing.assert_allclose(got["pkt"], want, rtol=1e-5)   # the paper's eps 1e-7 in logs
    assert got["pkt"].shape == ()
    # identical features: nothing to transfer
    same = run(methods.get("pkt", student_layer="s", teacher_layer="t"), z, v, y, {"s": ft},
               {"t": ft})
    np.testing.assert_allclose(same["pkt"], 0.0, atol=1e-12)


# ---- SP -------------------------------------------------------------------------------------

def test_sp_is_the_frobenius_distance_of_row_normalized_gram_matrices():
    rng = np.random.default_rng(13)
    fs, ft = rng.normal(size=(4, 3, 2, 2)), rng.normal(size=(4, 5))
    z, v, y = case(n=4, k=3, seed=13)
    got = run(methods.get("sp", student_layer="s", teacher_layer="t", gamma=7.0), z, v, y,
              {"s": fs}, {"t": ft})
    f = fs.reshape(4, -1)
    gs, gt = unit(f @ f.T), unit(ft @ ft.T)
    np.testing.assert_allclose(got["sp"], 7.0 * ((gs - gt) ** 2).sum() / 16, rtol=1e-10)
    assert methods.get("sp", student_layer="a", teacher_layer="b").gamma == 3000.0


# ---- RKD ------------------------------------------------------------------------------------

def np_rkd(s, t):
    n = len(s)

    def dist(x):
        d = {(i, j): np.linalg.norm(x[i] - x[j]) for i in range(n) for j in range(n) if i != j}
        mu = np.mean(list(d.values()))
        return {k: val / mu for k, val in d.items()}

    def angles(x):
        out = {}
        for i, j, k in itertools.permutations(range(n), 3):
            out[i, j, k] = unit(x[i] - x[j]) @ unit(x[k] - x[j])
        return out

    ds, dt = dist(s), dist(t)
    as_, at = angles(s), angles(t)
    return (np.mean([huber(ds[k] - dt[k]) for k in ds]),
            np.mean([huber(as_[k] - at[k]) for k in as_]))


def test_rkd_distance_and_angle_on_embeddings_and_on_logits():
    rng = np.random.default_rng(14)
    fs, ft = rng.normal(size=(5, 4)), 3 * rng.normal(size=(5, 6))
    z, v, y = case(n=5, k=3, seed=14)
    got = run(methods.get("rkd", student_layer="s", teacher_layer="t"), z, v, y,
              {"s": fs}, {"t": ft})
    d, a = np_rkd(fs, ft)
    np.testing.assert_allclose(got["rkd_distance"], 25.0 * d, rtol=1e-10)
    np.testing.assert_allclose(got["rkd_angle"], 50.0 * a, rtol=1e-10)
    # no layer named: the logits
    got = run(methods.get("rkd", distance_weight=1.0, angle_weight=2.0), z, v, y)
    d, a = np_rkd(z, v)
    np.testing.assert_allclose(got["rkd_distance"], d, rtol=1e-10)
    np.testing.assert_allclose(got["rkd_angle"], 2.0 * a, rtol=1e-10)
    assert methods.get("rkd").student_layers() == []
    # coincident embeddings: finite
    fs[1] = fs[0]
    got = run(methods.get("rkd", student_layer="s", teacher_layer="t"), z, v, y,
              {"s": fs}, {"t": ft})
    assert all(np.isfinite(val).all() for val in got.values())


# ---- CRD ------------------------------------------------------------------------------------

def np_nce(anchor, positive, bank, negatives, tau, m, z=None):
    scores = np.concatenate([(anchor * positive).sum(1, keepdims=True),
                             np.einsum("nkd,nd->nk", bank[negatives], anchor)], 1)
    e = np.exp(scores / tau)
    if z is None:
        z = e.mean() * m
    p = e / z
    c = negatives.shape[1] / m
    return -(np.log(p[:, 0] / (p[:, 0] + c)) + np.log(c / (p[:, 1:] + c)).sum(1)), z


@pytest.mark.parametrize("m", [12, 4000])   # all scores then pick; gathered rows
def test_crd_nce_helper_is_the_papers_nce_with_given_negatives(m):
    rng = np.random.default_rng(15)
    n, d, k = 4, 3, 5
    anchor, positive = unit(rng.normal(size=(n, d))), unit(rng.normal(size=(n, d)))
    bank = unit(rng.normal(size=(m, d)))
    index = torch.tensor([0, 3, 7, 11])
    negatives = sample_negatives(index, k, m, torch.Generator().manual_seed(1))
    assert not (negatives == index[:, None]).any() and negatives.max() < m
    args = [torch.tensor(a) for a in (anchor, positive, bank)] + [negatives]
    got, z = crd_nce(*args, 0.2, m)
    want, wz = np_nce(anchor, positive, bank, negatives.numpy(), 0.2, m)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    np.testing.assert_allclose(float(z), wz, rtol=1e-10)
    again, _ = crd_nce(*args, 0.2, m, z=3.0)
    np.testing.assert_allclose(again.numpy(), np_nce(anchor, positive, bank, negatives.numpy(),
                                                     0.2, m, z=3.0)[0], rtol=1e-10)

    def f(a):
        return crd_nce(a, args[1], args[2], negatives, 0.2, m, z=3.0)[0].sum()

    assert torch.autograd.gradcheck(f, (args[0].clone().requires_grad_(True),))


def test_sample_negatives_cover_every_other_example():
    index = torch.tensor([2])
    r = sample_negatives(index, 4000, 5, torch.Generator().manual_seed(0))
    assert set(r.flatten().tolist()) == {0, 1, 3, 4}


def crd_case(n=4, m=10, seed=16, k=6):
    rng = np.random.default_rng(seed)
    fs, ft = rng.normal(size=(n, 2, 3)), rng.normal(size=(n, 5))
    z, v, y = case(n=n, k=3, seed=seed)
    method = methods.get("crd", student_layer="s", teacher_layer="t", num_examples=m,
                         feat_dim=4, num_negatives=k, temperature=0.5)
    s, t = outputs(z, v, {"s": fs}, {"t": ft})
    method.setup(s, t)
    method.double()
    return method, fs, ft, z, v, y


def test_crd_method_estimates_z_once_and_moves_the_banks():
    method, fs, ft, z, v, y = crd_case()
    index = np.array([1, 4, 5, 9])
    ws, bs = (p.detach().numpy() for p in method.embed_s.parameters())
    wt, bt = (p.detach().numpy() for p in method.embed_t.parameters())
    es, et = unit(fs.reshape(4, -1) @ ws.T + bs), unit(ft @ wt.T + bt)
    banks = method.student_bank.numpy().copy(), method.teacher_bank.numpy().copy()
    torch.manual_seed(5)
    neg = sample_negatives(torch.tensor(index), 6, 10).numpy()
    torch.manual_seed(5)
    got = run(method, z, v, y, {"s": fs}, {"t": ft}, index=index)
    nce_s, zs = np_nce(es, et, banks[1], neg, 0.5, 10)
    nce_t, zt = np_nce(et, es, banks[0], neg, 0.5, 10)
    np.testing.assert_allclose(got["crd"], 0.8 * (nce_s + nce_t), rtol=1e-10)
    np.testing.assert_allclose(got["hard"], np_ce(z, y), rtol=1e-10)
    np.testing.assert_allclose([float(method.student_z), float(method.teacher_z)], [zs, zt],
                               rtol=1e-10)
    np.testing.assert_allclose(method.student_bank.numpy()[index],
                               unit(0.5 * banks[0][index] + 0.5 * es), rtol=1e-10)
    np.testing.assert_allclose(method.teacher_bank.numpy()[index],
                               unit(0.5 * banks[1][index] + 0.5 * et), rtol=1e-10)
    untouched = np.setdiff1d(np.arange(10), index)
    assert np.array_equal(method.student_bank.numpy()[untouched], banks[0][untouched])
    # the second batch keeps the first batch's Z
    new_banks = method.student_bank.numpy().copy(), method.teacher_bank.numpy().copy()
    torch.manual_seed(6)
    neg = sample_negatives(torch.tensor(index), 6, 10).numpy()
    torch.manual_seed(6)
    got = run(method, z, v, y, {"s": fs}, {"t": ft}, index=index)
    want = (np_nce(es, et, new_banks[1], neg, 0.5, 10, zs)[0]
            + np_nce(et, es, new_banks[0], neg, 0.5, 10, zt)[0])
    np.testing.assert_allclose(got["crd"], 0.8 * want, rtol=1e-10)


def test_crd_refuses_batches_without_an_index_in_one_line():
    method, fs, ft, z, v, y = crd_case()
    with pytest.raises(ValueError, match=r"^crd: batches must carry each example's index[^\n]*$"):
        run(method, z, v, y, {"s": fs}, {"t": ft})
    with pytest.raises(ValueError, match="crd: an index of 10 is outside the data set of "
                                         "num_examples=10"):
        run(method, z, v, y, {"s": fs}, {"t": ft}, index=[0, 1, 2, 10])


# ---- KD / DKD with logit standardization ----------------------------------------------------

def zscore(a):
    return (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)


def test_dkd_standardized_is_dkd_of_z_scores_and_the_ls_rows_default_to_it():
    z, v, y = case(seed=17)
    got = run(methods.get("dkd", standardize=True, temperature=2.0), z, v, y)
    tckd, nckd = np_dkd(zscore(z), zscore(v), y, 2.0)
    np.testing.assert_allclose(got["tckd"], tckd, rtol=1e-6)
    np.testing.assert_allclose(got["nckd"], 8.0 * nckd, rtol=1e-6)
    np.testing.assert_allclose(got["hard"], np_ce(z, y), rtol=1e-10)   # raw logits
    ls = run(methods.get("dkd_ls", temperature=2.0), z, v, y)
    assert all(np.array_equal(ls[k], got[k]) for k in got)
    assert methods.get("dkd_ls").describe() == {
        "name": "dkd_ls", "alpha": 1.0, "beta": 8.0, "temperature": 4.0, "hard_weight": 1.0,
        "standardize": True}
    kd = run(methods.get("kd", standardize=True), z, v, y)
    kd_ls = run(methods.get("kd_ls"), z, v, y)
    assert all(np.array_equal(kd_ls[k], kd[k]) for k in kd)
    assert methods.get("kd_ls").describe()["name"] == "kd_ls"
    assert methods.get("dkd").standardize is False


# ---- every method: gradients, edge cases, parameter checks ----------------------------------

FEATURE_METHODS = {
    "dist": {},
    "at": {"student_layer": "s", "teacher_layer": "t"},
    "pkt": {"student_layer": "s", "teacher_layer": "t"},
    "sp": {"student_layer": "s", "teacher_layer": "t"},
    "rkd": {"student_layer": "s", "teacher_layer": "t"},
    "crd": {"student_layer": "s", "teacher_layer": "t", "num_examples": 8, "feat_dim": 4,
            "num_negatives": 5},
    "kd_ls": {},
    "dkd_ls": {},
}


def built(name, n, k, seed=18, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    z, v, y = case(n=n, k=k, seed=seed)
    fs, ft = {"s": rng.normal(size=(n, 2, 4, 4))}, {"t": rng.normal(size=(n, 3, 2, 2))}
    method = methods.get(name, **FEATURE_METHODS[name])
    s, t = outputs(z, v, fs, ft, dtype)
    method.setup(s, t)
    method.to(dtype)
    return method, z, v, y, fs, ft, s, t


@pytest.mark.parametrize("name", sorted(FEATURE_METHODS))
def test_gradients_by_gradcheck(name):
    method, z, v, y, fs, ft, s, t = built(name, n=4, k=3)
    batch = Batch(None, torch.tensor(y), torch.tensor([0, 2, 5, 7]))
    if name == "crd":
        method(s, t, batch)      # the first batch fixes Z; eval mode: the banks stay put
        method.eval()

    def f(logits, feature):
        torch.manual_seed(0)     # CRD draws the same negatives on every call
        terms = method(Outputs(logits, {"s": feature}), t, batch)
        return sum(val.sum() for val in terms.values())

    args = (torch.tensor(z, requires_grad=True), torch.tensor(fs["s"], requires_grad=True))
    assert torch.autograd.gradcheck(f, args)


@pytest.mark.parametrize("name", sorted(FEATURE_METHODS))
@pytest.mark.parametrize("n,k", [(1, 2), (1, 7), (4, 2)])
def test_batch_of_one_and_binary_problems_are_finite(name, n, k):
    method, z, v, y, fs, ft, *_ = built(name, n=n, k=k, dtype=torch.float32)
    got = run(method, z, v, y, fs, ft, index=np.arange(n), dtype=torch.float32)
    assert got and all(np.isfinite(val).all() and val.shape in ((), (n,))
                       for val in got.values())
    assert all(val.dtype == np.float32 for val in got.values())


LAYERS = {"student_layer": "s", "teacher_layer": "t"}


@pytest.mark.parametrize("name,bad,words", [
    ("dist", {"beta": -1}, "dist: beta must be"),
    ("dist", {"temperature": 0}, "dist: temperature must be"),
    ("dist", {"beta": 0, "gamma": 0, "hard_weight": 0}, "dist: beta, gamma and hard_weight"),
    ("at", {**LAYERS, "beta": float("nan")}, "at: beta must be finite"),
    ("at", {**LAYERS, "p": 0}, "at: p must be"),
    ("at", {"student_layer": ["a", "b"], "teacher_layer": "t"}, "at: 2 student layers but 1"),
    ("at", {"student_layer": [], "teacher_layer": "t"}, "at: student_layer must name"),
    ("at", {"student_layer": ["a", 3], "teacher_layer": ["b", "c"]},
     "at: student_layer must name a module, got 3"),
    ("pkt", {**LAYERS, "weight": "x"}, "pkt: weight must be a number"),
    ("pkt", {"student_layer": "", "teacher_layer": "t"}, "pkt: student_layer must name"),
    ("sp", {**LAYERS, "gamma": -3}, "sp: gamma must be"),
    ("sp", {**LAYERS, "gamma": 0, "hard_weight": 0}, "sp: gamma and hard_weight are both 0"),
    ("rkd", {"student_layer": "s"}, "rkd: teacher_layer must name"),
    ("rkd", {"angle_weight": True}, "rkd: angle_weight must be a number"),
    ("crd", {**LAYERS, "num_examples": 1}, "crd: num_examples must be an integer >= 2"),
    ("crd", {**LAYERS, "num_examples": 10.0}, "crd: num_examples must be an integer"),
    ("crd", {**LAYERS, "num_examples": 10, "momentum": 1}, "crd: momentum must lie in"),
    ("crd", {**LAYERS, "num_examples": 10, "temperature": -1}, "crd: temperature must be"),
    ("crd", {**LAYERS, "num_examples": 10, "num_negatives": 0}, "crd: num_negatives must"),
    ("dkd", {"standardize": 1}, "dkd: standardize must be true or false"),
    ("dkd_ls", {"beta": -1}, "dkd_ls: beta must be"),
    ("kd_ls", {"temperature": 0}, "kd_ls: temperature must be"),
])
def test_parameters_are_validated_in_one_line(name, bad, words):
    with pytest.raises(ValueError, match=f"^{words}[^\n]*$"):
        methods.get(name, **bad)


def test_crd_needs_num_examples():
    with pytest.raises(ValueError, match="method 'crd' needs num_examples"):
        methods.get("crd", **LAYERS)


# ---- end to end -----------------------------------------------------------------------------

@pytest.fixture
def mlps():
    torch.manual_seed(5)
    teacher = MLP(16, 3, (24,))
    torch.manual_seed(1)
    return teacher, MLP(16, 3, (32,))


E2E = {
    "dist": {}, "kd_ls": {}, "dkd_ls": {}, "rkd": {},
    "at": {"student_layer": "hidden_layers.0", "teacher_layer": "hidden_layers.0"},
    "pkt": {"student_layer": "hidden_layers.0", "teacher_layer": "hidden_layers.0"},
    "sp": {"student_layer": "hidden_layers.0", "teacher_layer": "hidden_layers.0"},
    "crd": {"student_layer": "hidden_layers.0", "teacher_layer": "hidden_layers.0"},
}


@pytest.mark.parametrize("name", sorted(E2E))
def test_each_method_trains_one_epoch_through_train(name, blobs, mlps, tmp_path):
    teacher, student = mlps
    params = dict(E2E[name], **({"num_examples": len(blobs)} if name == "crd" else {}))
    cfg = TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=1e-2, seed=0,
                      progress=False, device="cpu")
    res = train(student, blobs, cfg, teacher=teacher, method=methods.get(name, **params),
                out_dir=tmp_path, log=lambda s: None)
    row = res.history[-1]
    assert math.isfinite(row["train_loss"]) and "train_hard" in row
    if name == "crd":
        ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
        state = ckpt["method_state"]
        assert state["student_bank"].shape == (len(blobs), 128)
        assert float(state["student_z"]) > 0 and "embed_s.weight" in state
        assert ckpt["method"]["num_examples"] == len(blobs)


def test_dkd_identity_without_standardize_is_unchanged():
    """A DKD run from before the option resumes: its describe() has no `standardize`."""
    assert "standardize" not in methods.get("dkd").describe()
    assert methods.get("dkd", standardize=True).describe()["standardize"] is True


def test_rkd_in_float32_on_a_realistic_batch_matches_materialized_differences_in_float64():
    # the Gram-matrix form (O(n^2 D)) against the direct one over (n, n, D) difference vectors,
    # on ReLU features with a duplicated row (coincident: distance 0, cosines 0)
    torch.manual_seed(0)
    s, t = torch.relu(torch.randn(48, 300)) + 5.0, torch.randn(48, 16)
    s[7] = s[3]

    def reference(x):
        x = x.double()
        diff = x.unsqueeze(0) - x.unsqueeze(1)                      # [j, i] = x_i - x_j
        norm = diff.norm(dim=-1)
        off = ~torch.eye(len(x), dtype=torch.bool)
        d = norm[off] / norm[off].mean()
        e = torch.where(norm.unsqueeze(-1) > 0, diff / norm.clamp_min(1e-300).unsqueeze(-1), 0)
        eye = torch.eye(len(x), dtype=torch.bool)
        keep = ~(eye.unsqueeze(2) | eye.unsqueeze(1) | eye.unsqueeze(0))
        return d, torch.einsum("jid,jkd->jik", e, e)[keep]

    (ds, as_), (dt, at) = reference(s), reference(t)
    huber = torch.nn.functional.smooth_l1_loss
    np.testing.assert_allclose(rkd_distance(s, t).item(), huber(ds, dt).item(), rtol=1e-5)
    np.testing.assert_allclose(rkd_angle(s, t).item(), huber(as_, at).item(), rtol=1e-5)


def test_dkd_warmup_ramps_the_distillation_terms_by_training_steps_and_checkpoints_the_count():
    z, v, y = case(seed=4)
    full = run(methods.get("dkd", temperature=2.0), z, v, y)
    warm = methods.get("dkd", temperature=2.0, warmup_steps=4)
    for k in (1, 2, 3, 4, 5):       # step k weighs the DKD terms min(k / 4, 1); CE is untouched
        got = run(warm, z, v, y)
        for term in ("tckd", "nckd"):
            np.testing.assert_allclose(got[term], min(k / 4, 1) * full[term], rtol=1e-12)
        np.testing.assert_allclose(got["hard"], full["hard"], rtol=1e-12)
    assert int(warm.steps_done) == 5
    again = methods.get("dkd", temperature=2.0, warmup_steps=4)
    again.load_state_dict(warm.state_dict())           # a resumed run continues the ramp
    assert int(again.steps_done) == 5
    warm.eval()
    run(warm, z, v, y)                                  # evaluation steps do not count
    with torch.no_grad():
        warm.train()
        run(warm, z, v, y)
    assert int(warm.steps_done) == 5
    assert warm.describe()["warmup_steps"] == 4 and methods.get("dkd_ls", warmup_steps=2
                                                                ).describe()["warmup_steps"] == 2
    assert "warmup_steps" not in methods.get("dkd").describe()     # old runs keep their identity
    assert methods.get("dkd").state_dict() == {}
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="warmup_steps must be an integer >= 0"):
            methods.get("dkd", warmup_steps=bad)
