import sys
from pathlib import Path

import pytest
import torch

from kdistill.distill import methods
from kdistill.distill.augment import Jitter
from kdistill.distill.checkpoint import load_checkpoint
from kdistill.distill.data import ArrayDataset
from kdistill.distill.models import MLP
from kdistill.distill.teachers import run_teacher
from kdistill.distill.trainer import TrainConfig, TrainingDiverged, evaluate, train

QUIET = {"log": lambda s: None}


def cfg(**kw):
    base = dict(epochs=4, batch_size=16, optimizer="sgd", lr=0.05, seed=0, progress=False,
                device="cpu")
    return TrainConfig(**{**base, **kw})


def student(seed=1, **kw):
    torch.manual_seed(seed)
    return MLP(16, 3, (32,), **kw)


def test_plain_training_learns_and_reports_metrics(blobs):
    result = train(student(), blobs, cfg(epochs=5), val_data=blobs, **QUIET)
    assert result.final["val_accuracy"] > 0.95 and "test_accuracy" not in result.final
    assert len(result.history) == 5
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    m = evaluate(result.model, blobs)
    assert m["errors"] == result.final["val_errors"] and 0 <= m["ece"] <= 1 and m["nll"] > 0


def test_distilled_student_matches_its_teacher(blobs):
    teacher = train(student(seed=5), blobs, cfg(epochs=6), **QUIET).model
    logits = run_teacher(teacher, blobs.x)
    unlabelled = ArrayDataset(blobs.x, None, 3, name="transfer")
    s = train(student(), unlabelled, cfg(epochs=8), method=methods.get("kd", temperature=4.0),
              teacher_logits=logits, **QUIET).model
    agree = (run_teacher(s, blobs.x).argmax(1) == logits.argmax(1)).float().mean()
    assert float(agree) > 0.95


def test_online_teacher_sees_the_jittered_batch(blobs):
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(len(x), 3)

    train(student(), blobs, cfg(epochs=1), augment=Jitter(1), teacher=Recorder(),
          method=methods.get("kd", hard_weight=0.5), **QUIET)
    batches = seen[1:]  # the first call is the class-count probe on two raw examples
    assert len(batches) == 10  # 150 examples / 16 per batch
    assert all(len(b) == 16 for b in batches[:-1]) and len(batches[-1]) == 6
    # jitter shifted the teacher's inputs: zero borders appear where pixels moved in
    assert sum(int((b == 0).sum()) for b in batches) > 100


class FixedTeacher(torch.nn.Module):
    def __init__(self, crash_at: int | None = None, in_features: int = 16):
        super().__init__()
        torch.manual_seed(123)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, 3))
        self.crash_at, self.calls = crash_at, 0

    def forward(self, x):
        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at:
            raise KeyboardInterrupt  # the run is killed mid-epoch
        return self.net(x) * 3


def dropout_student(seed=1):
    torch.manual_seed(seed)
    return MLP(16, 3, (32,), input_dropout=0.1, hidden_dropout=0.3)


def test_resume_is_bit_identical(blobs, tmp_path):
    """Dropout, jitter, shuffling, momentum and the lr schedule all continue exactly."""
    config = cfg(epochs=4, momentum=0.9)
    kw = {"augment": Jitter(1), "method": methods.get("kd", temperature=2.0, hard_weight=0.5),
          **QUIET}
    ref = train(dropout_student(), blobs, config, teacher=FixedTeacher(),
                out_dir=tmp_path / "ref", **kw)
    with pytest.raises(KeyboardInterrupt):  # 10 steps per epoch: call 25 is inside epoch 3
        train(dropout_student(), blobs, config, teacher=FixedTeacher(crash_at=25),
              out_dir=tmp_path / "run", **kw)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2
    resumed = train(dropout_student(seed=99), blobs, config, teacher=FixedTeacher(),
                    out_dir=tmp_path / "run", **kw)
    assert resumed.resumed_from_epoch == 2
    ref_state, got_state = ref.model.state_dict(), resumed.model.state_dict()
    for name in ref_state:
        assert torch.equal(ref_state[name], got_state[name]), name
    assert [r["train_loss"] for r in ref.history] == [r["train_loss"] for r in resumed.history]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert set(ckpt) >= {"model_state", "optimizer_state", "scheduler_state", "rng_state",
                         "epoch", "config", "history"}


def test_resume_refuses_a_different_config(blobs, tmp_path):
    train(student(), blobs, cfg(epochs=1), out_dir=tmp_path, **QUIET)
    with pytest.raises(ValueError, match="different run .config.lr"):
        train(student(), blobs, cfg(epochs=1, lr=0.01), out_dir=tmp_path, **QUIET)
    with pytest.raises(ValueError, match="different run .extra.teacher"):
        train(student(), blobs, cfg(epochs=1), out_dir=tmp_path, extra={"teacher": "abc"},
              **QUIET)
    spec = {"name": "mlp", "hidden": [32]}
    train(student(), blobs, cfg(epochs=1), out_dir=tmp_path / "s", model_spec=spec, **QUIET)
    with pytest.raises(ValueError, match="different run .model_spec"):
        train(student(), blobs, cfg(epochs=1), out_dir=tmp_path / "s",
              model_spec={**spec, "hidden_dropout": 0.2}, **QUIET)
    # a finished run resumes to the same result without training again
    again = train(student(), blobs, cfg(epochs=1), out_dir=tmp_path, **QUIET)
    assert again.resumed_from_epoch == 1 and len(again.history) == 1


def test_nan_loss_stops_at_once_and_keeps_last_good_checkpoint(blobs, tmp_path):
    class NaNAfter(FixedTeacher):
        def forward(self, x):
            out = super().forward(x)
            return out * float("nan") if self.calls > 15 else out

    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 5 \(the teacher's logits"):
        train(student(), blobs, cfg(epochs=5), teacher=NaNAfter(),
              method=methods.get("kd", temperature=20.0), out_dir=tmp_path, **QUIET)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model_state"].values())


def test_exploding_lr_is_caught_and_clipping_prevents_it(blobs):
    big = ArrayDataset(blobs.x * 1e3, blobs.y, 3, name="big")
    with pytest.raises(TrainingDiverged, match="epoch 1, step"):
        train(student(), big, cfg(epochs=3, lr=50.0), **QUIET)
    ok = train(student(), big, cfg(epochs=1, lr=0.01, grad_clip=1.0), **QUIET)
    assert ok.final["train_loss"] == ok.final["train_loss"]  # finite, no NaN


def test_bad_setups_are_rejected_before_training(blobs):
    logits = torch.zeros(len(blobs), 3)
    with pytest.raises(ValueError, match="augmented inputs"):
        train(student(), blobs, cfg(), augment=Jitter(1), teacher_logits=logits, **QUIET)
    with pytest.raises(ValueError, match="class-count mismatch"):
        train(student(), blobs, cfg(), teacher_logits=torch.zeros(len(blobs), 4), **QUIET)
    with pytest.raises(ValueError, match="NaN"):
        train(student(), blobs, cfg(), teacher_logits=logits / 0 * 0, **QUIET)
    with pytest.raises(ValueError, match="rows"):
        train(student(), blobs, cfg(), teacher_logits=logits[:5], **QUIET)
    with pytest.raises(ValueError, match="temperature"):
        train(student(), blobs, cfg(), method=methods.get("kd", temperature=0),
              teacher_logits=logits, **QUIET)
    with pytest.raises(ValueError, match="student outputs 3 classes"):
        train(student(), ArrayDataset(blobs.x, blobs.y, 5), cfg(), **QUIET)


def test_dataloader_input(blobs):
    ds = torch.utils.data.TensorDataset(blobs.x, blobs.y)
    loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True)
    result = train(student(), loader, cfg(epochs=5), eval_sets={"test": blobs}, **QUIET)
    assert result.final["test_accuracy"] > 0.95


def test_dataloader_with_cached_logits_needs_an_index(blobs):
    logits = torch.zeros(len(blobs), 3)
    logits[torch.arange(len(blobs)), blobs.y] = 5.0  # a confident, correct teacher
    indexed = torch.utils.data.TensorDataset(blobs.x, blobs.y, torch.arange(len(blobs)))
    loader = torch.utils.data.DataLoader(indexed, batch_size=16, shuffle=True)
    result = train(student(), loader, cfg(epochs=5),
                   method=methods.get("kd", hard_weight=0.0, temperature=2.0),
                   teacher_logits=logits, eval_sets={"test": blobs}, **QUIET)
    assert result.final["test_accuracy"] > 0.95
    plain = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(blobs.x, blobs.y),
                                        batch_size=16)
    with pytest.raises(ValueError, match="index"):
        train(student(), plain, cfg(epochs=1), teacher_logits=logits, **QUIET)


def test_two_process_ddp_matches_one_process(tmp_path):
    """torchrun, 2 CPU processes (gloo): same final weights as one process, same global batch."""
    sys.path.insert(0, str(Path(__file__).parent))
    import ddp_worker

    single = train(ddp_worker.fresh_model(), ddp_worker.problem(), ddp_worker.config(),
                   augment=Jitter(1), **QUIET)
    ddp_worker.launch([str(Path(__file__).parent / "ddp_worker.py"), str(tmp_path)],
                      done_dir=str(tmp_path))
    ddp = torch.load(tmp_path / "ddp_weights.pt")
    for name, w in single.model.state_dict().items():
        assert torch.allclose(w, ddp[name], atol=1e-5), name
    # only rank 0 wrote, and its checkpoint is complete
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2
