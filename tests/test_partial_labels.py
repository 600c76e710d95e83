"""Partially labelled transfer sets: label -1 (UNLABELLED) with ArrayDataset(partial_labels=True).

Every expected value here is computed independently (math / float64 by hand), not by the code
under test."""

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from kdistill.distill import methods
from kdistill.distill.auto import stratified_split
from kdistill.distill.batches import TrainBatch
from kdistill.distill.cache import fingerprint_training_data
from kdistill.distill.data import UNLABELLED, ArrayDataset
from kdistill.distill.losses import distillation_loss, soft_target_loss
from kdistill.distill.methods.base import Method, Outputs
from kdistill.distill.methods.dkd import dkd_target, dkd_terms
from kdistill.distill.metrics import classification_metrics
from kdistill.distill.models import MLP
from kdistill.distill.teachers import run_teacher
from kdistill.distill.trainer import TrainConfig, evaluate, train

QUIET = {"log": lambda s: None}


def cfg(**kw):
    base = dict(epochs=2, batch_size=16, optimizer="sgd", lr=0.05, seed=0, progress=False,
                device="cpu")
    return TrainConfig(**{**base, **kw})


def student(seed=1):
    torch.manual_seed(seed)
    return MLP(16, 3, (32,))


def partial(data, every=3):
    """`data` with every `every`-th example labelled, the rest UNLABELLED."""
    y = data.y.clone()
    keep = torch.arange(len(y)) % every == 0
    y[~keep] = UNLABELLED
    return ArrayDataset(data.x, y, data.num_classes, data.class_names, data.name + "-partial",
                        partial_labels=True), keep


def batch(labels):
    labels = None if labels is None else torch.tensor(labels)
    return TrainBatch(None, labels, None, None, 0 if labels is None else len(labels))


Z = [[1.0, -0.5, 0.25], [0.0, 2.0, -1.0], [-1.5, 0.5, 0.5], [0.3, 0.1, -0.2]]
V = [[2.0, 0.0, -1.0], [-0.5, 0.5, 1.5], [0.0, 1.0, 0.0], [1.0, -1.0, 0.5]]
LABELS = [2, UNLABELLED, 0, UNLABELLED]


def _log_softmax(row, t=1.0):
    m = max(r / t for r in row)
    lse = m + math.log(sum(math.exp(r / t - m) for r in row))
    return [r / t - lse for r in row]


def _hand_kd(temperature, soft_weight, hard_weight):
    """Per-row soft and hard terms of KD on Z, V, LABELS, in Python floats."""
    t = temperature
    soft, hard = [], []
    for z, v, y in zip(Z, V, LABELS):
        lq, lp = _log_softmax(z, t), _log_softmax(v, t)
        soft.append(soft_weight * t * t * sum(math.exp(a) * (a - b) for a, b in zip(lp, lq)))
        hard.append(0.0 if y == UNLABELLED else -hard_weight * _log_softmax(z)[y])
    return soft, hard


# ----------------------------------------------------------------------------- the convention

def test_minus_one_is_refused_without_the_opt_in():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"\[0, 2\].*-1.*partial_labels=True"):
        ArrayDataset(x, [0, UNLABELLED, 1, 2], 3)
    ok = ArrayDataset(x, [0, UNLABELLED, 1, 2], 3, partial_labels=True)
    assert ok.n_labelled == 3 and ok.subset([1, 2]).partial_labels
    assert ok.subset([1, 2]).n_labelled == 1
    with pytest.raises(ValueError, match=r"\[-1, 2\]"):
        ArrayDataset(x, [0, -2, 1, 2], 3, partial_labels=True)
    with pytest.raises(ValueError, match="needs labels"):
        ArrayDataset(x, None, 3, partial_labels=True)
    with pytest.raises(ValueError, match="true or false"):
        ArrayDataset(x, [0, 1, 1, 2], 3, partial_labels=1)


def test_the_opt_in_and_the_mask_enter_the_training_data_fingerprint(blobs):
    half, _ = partial(blobs)
    same_bytes = ArrayDataset(blobs.x, blobs.y, 3, partial_labels=True)
    fps = {fingerprint_training_data(d) for d in (blobs, half, same_bytes)}
    assert len(fps) == 3
    plain_again = ArrayDataset(blobs.x.clone(), blobs.y.clone(), 3)
    assert fingerprint_training_data(plain_again) == fingerprint_training_data(blobs)


def test_resume_refuses_a_checkpoint_of_the_fully_labelled_run(blobs, tmp_path):
    train(student(), blobs, cfg(epochs=1), out_dir=tmp_path, **QUIET)
    half, _ = partial(blobs)
    with pytest.raises(ValueError, match="different run.*data"):
        train(student(), half, cfg(epochs=1), out_dir=tmp_path, **QUIET)


# ----------------------------------------------------------------------------- the loss terms

def test_kd_on_a_half_labelled_batch_matches_a_hand_computation():
    z = torch.tensor(Z, dtype=torch.float64)
    v = torch.tensor(V, dtype=torch.float64)
    kd = methods.get("kd", temperature=2.0, soft_weight=0.7, hard_weight=0.3)
    terms = kd(Outputs(z), Outputs(v), batch(LABELS))
    soft, hard = _hand_kd(2.0, 0.7, 0.3)
    assert terms["soft"].dtype == torch.float64
    torch.testing.assert_close(terms["soft"], torch.tensor(soft, dtype=torch.float64),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms["hard"], torch.tensor(hard, dtype=torch.float64),
                               rtol=1e-12, atol=1e-12)
    assert terms["hard"][1] == 0 and terms["hard"][3] == 0
    # the batch loss: per-example terms summed over all four rows, divided by four
    total = sum(float(t.sum()) for t in terms.values()) / 4
    assert total == pytest.approx((sum(soft) + sum(hard)) / 4, rel=1e-12)
    # distillation_loss (the public function) agrees
    loss = distillation_loss(z, v, torch.tensor(LABELS), temperature=2.0, soft_weight=0.7,
                             hard_weight=0.3)
    assert float(loss) == pytest.approx(total, rel=1e-12)


def test_partial_kd_passes_gradcheck():
    v = torch.tensor(V, dtype=torch.float64)
    kd = methods.get("kd", temperature=3.0, hard_weight=0.5)
    b = batch(LABELS)

    def loss(z):
        terms = kd(Outputs(z), Outputs(v), b)
        return sum(t.sum() for t in terms.values()) / len(z)

    z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss, (z,))
    # no hard-term gradient on the unlabelled rows: it equals the soft term's alone there
    g_all, = torch.autograd.grad(loss(z), z)
    soft_only = torch.autograd.grad(
        soft_target_loss(z, v, 3.0, "none").sum() / 4, z)[0]
    torch.testing.assert_close(g_all[[1, 3]], soft_only[[1, 3]], rtol=1e-12, atol=1e-15)
    assert not torch.allclose(g_all[[0, 2]], soft_only[[0, 2]])


def test_dkd_target_is_the_label_where_there_is_one_and_the_teacher_top_class_elsewhere():
    v = torch.tensor(V, dtype=torch.float64)   # teacher's top classes: 0, 2, 1, 0
    target = dkd_target(torch.tensor(LABELS), v)
    assert target.tolist() == [2, 2, 0, 0]
    assert dkd_target(None, v).tolist() == [0, 2, 1, 0]
    z = torch.tensor(Z, dtype=torch.float64)
    dkd = methods.get("dkd", alpha=1.0, beta=2.0, temperature=2.0, hard_weight=0.5)
    terms = dkd(Outputs(z), Outputs(v), batch(LABELS))
    # each row on its own, labelled or not, gives the same terms as in the mixed batch
    for i, y in enumerate(LABELS):
        alone = dkd(Outputs(z[i:i + 1]), Outputs(v[i:i + 1]),
                    batch(None if y == UNLABELLED else [y]))
        for k in ("tckd", "nckd"):
            torch.testing.assert_close(terms[k][i:i + 1], alone[k], rtol=1e-12, atol=1e-12)
        if y == UNLABELLED:
            assert terms["hard"][i] == 0
        else:
            assert float(terms["hard"][i]) == pytest.approx(-0.5 * _log_softmax(Z[i])[y],
                                                            rel=1e-12)
    tckd, _ = dkd_terms(z, v, torch.tensor([2, 2, 0, 0]), 2.0)
    torch.testing.assert_close(terms["tckd"], tckd)


@pytest.mark.parametrize("name, params", [
    ("ce", {"label_smoothing": 0.1}), ("logit_matching", {"hard_weight": 1.0}),
    ("dist", {}), ("kd", {"soft_weight": 0.0, "hard_weight": 1.0}),
])
def test_hard_terms_are_zero_on_unlabelled_rows_and_never_nan(name, params):
    z = torch.tensor(Z, requires_grad=True)
    v = Outputs(torch.tensor(V))
    m = methods.get(name, **params)
    terms = m(Outputs(z), v, batch(LABELS))
    assert terms["hard"][1] == 0 and terms["hard"][3] == 0 and terms["hard"][0] > 0
    none = m(Outputs(z), v, batch([UNLABELLED] * 4))["hard"]
    assert torch.equal(none, torch.zeros(4))
    g, = torch.autograd.grad(none.sum(), z)
    assert torch.equal(g, torch.zeros_like(g))


def test_classification_metrics_count_labelled_rows_only():
    logits = torch.tensor(Z)
    m = classification_metrics(logits, torch.tensor(LABELS))
    ref = classification_metrics(logits[[0, 2]], torch.tensor([2, 0]))
    assert m == ref and m["n"] == 2
    with pytest.raises(ValueError, match="unlabelled"):
        classification_metrics(logits, torch.full((4,), UNLABELLED))


# ----------------------------------------------------------------------------- training

class HandKD(Method):
    """KD with the hard term written out: -log softmax(z)[y] times a 0/1 mask looked up by
    each example's index in the fully labelled set."""

    name = "hand_kd"

    def __init__(self, mask: torch.Tensor, temperature: float, hard_weight: float) -> None:
        super().__init__()
        self.mask, self.t, self.w = mask, temperature, hard_weight

    def forward(self, student, teacher, b):
        soft = soft_target_loss(student.logits, teacher.logits, self.t, "none")
        log_p = torch.log_softmax(student.logits.float(), dim=-1)
        nll = -log_p.gather(1, b.labels[:, None]).squeeze(1)
        return {"soft": soft, "hard": self.w * nll * self.mask[b.index].float()}


def test_training_on_a_partial_set_equals_the_hard_term_by_hand(blobs):
    torch.manual_seed(5)
    teacher = MLP(16, 3, (32,))
    logits = run_teacher(teacher, blobs.x) * 3
    half, keep = partial(blobs)
    a = train(student(), half, cfg(), method=methods.get("kd", temperature=2.0, hard_weight=0.5),
              teacher_logits=logits, **QUIET)
    b = train(student(), blobs, cfg(), method=HandKD(keep, 2.0, 0.5), teacher_logits=logits,
              **QUIET)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    ha, hb = a.history[-1], b.history[-1]
    assert ha["train_hard"] == pytest.approx(hb["train_hard"], rel=1e-5)
    assert ha["train_soft"] == pytest.approx(hb["train_soft"], rel=1e-5)


@pytest.mark.parametrize("name", ["kd", "dkd", "ce"])
def test_an_all_labelled_partial_set_trains_bit_identically(blobs, name):
    logits = None if name == "ce" else run_teacher(student(seed=9), blobs.x)
    flagged = ArrayDataset(blobs.x, blobs.y, 3, partial_labels=True)
    runs = [train(student(), d, cfg(), method=name, teacher_logits=logits, **QUIET)
            for d in (blobs, flagged)]
    for pa, pb in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(pa, pb)
    drop = [[{k: v for k, v in row.items() if k != "seconds"} for row in r.history]
            for r in runs]
    assert drop[0] == drop[1]


def test_kdistill_train_takes_a_partial_set_and_ce_refuses_one_without_labels(blobs):
    import kdistill

    half, _ = partial(blobs)
    res = kdistill.train(student(), half, cfg(), method="ce", val_data=blobs, **QUIET)
    assert math.isfinite(res.final["train_loss"]) and res.final["val_n"] == 150
    none = ArrayDataset(blobs.x, torch.full((150,), UNLABELLED), 3, partial_labels=True)
    with pytest.raises(ValueError, match="no labelled example.*'ce'"):
        kdistill.train(student(), none, cfg(), **QUIET)
    # distilling from it is fine: the soft term alone
    logits = run_teacher(student(seed=3), blobs.x)
    res = kdistill.train(student(), none, cfg(epochs=1), teacher_logits=logits, **QUIET)
    assert res.final["train_hard"] == 0.0


def test_evaluation_refuses_a_partially_labelled_set(blobs):
    half, _ = partial(blobs)
    model = student()
    with pytest.raises(ValueError, match="must be fully labelled"):
        evaluate(model, half)
    with pytest.raises(ValueError, match="must be fully labelled"):
        train(student(), blobs, cfg(epochs=1), val_data=half, **QUIET)
    loader = DataLoader(TensorDataset(half.x, half.y), batch_size=50)
    with pytest.raises(ValueError, match="must be fully labelled"):
        evaluate(model, loader)
    flagged_full = ArrayDataset(blobs.x, blobs.y, 3, partial_labels=True)
    assert evaluate(model, flagged_full) == evaluate(model, blobs)


def test_a_dataloader_with_minus_one_labels_gets_a_clear_error(blobs):
    half, _ = partial(blobs)
    loader = DataLoader(TensorDataset(half.x, half.y), batch_size=50)
    with pytest.raises(ValueError, match="partial_labels=True"):
        train(student(), loader, cfg(epochs=1), **QUIET)


def test_auto_validation_split_holds_out_labelled_examples_only(blobs):
    half, keep = partial(blobs, every=2)   # 25 labelled examples of each class
    fit, val = stratified_split(half, 15, seed=0)
    assert len(val) == 15 and bool(keep[val].all())
    assert torch.equal(torch.sort(torch.cat([fit, val])).values, torch.arange(150))
    assert torch.bincount(half.y[val], minlength=3).tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="exceeds the 75 labelled"):
        stratified_split(half, 76, seed=0)
    # a fully labelled set splits exactly as before the option existed
    flagged = ArrayDataset(blobs.x, blobs.y, 3, partial_labels=True)
    for a, b in zip(stratified_split(flagged, 15, 0), stratified_split(blobs, 15, 0)):
        assert torch.equal(a, b)
