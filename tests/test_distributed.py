"""Per-rank RNG states: 2 CPU processes (gloo) under torchrun, compared with an uninterrupted
2-process run (dropout, bit for bit)."""

import json
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import ddp_worker  # noqa: E402

from kdistill.distill.checkpoint import load_checkpoint  # noqa: E402
from kdistill.distill.trainer import train  # noqa: E402

pytestmark = pytest.mark.slow


def test_two_process_resume_restores_each_ranks_rng(tmp_path):
    """Dropout differs per rank: crashed in epoch 2 and resumed, every rank continues with its
    own RNG state and the weights equal an uninterrupted 2-process run bit for bit."""
    ddp_worker.launch([str(HERE / "ddp_worker.py"), str(tmp_path), "resume"])
    weights = torch.load(tmp_path / "resume_weights.pt")
    for name, w in weights["ref"].items():
        assert torch.equal(w, weights["resumed"][name]), name
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["crashed_at"] == 1 and r["resumed_from"] == 1 for r in ranks)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    states = [s["torch"] for s in ckpt["rng_state"]]
    assert ckpt["world_size"] == 2 and len(states) == 2 and not torch.equal(*states)
    # one process cannot continue two ranks' states
    with pytest.raises(ValueError, match="written by 2 process.* this run has 1"):
        train(ddp_worker.dropout_model(), ddp_worker.problem(), ddp_worker.config(epochs=3),
              teacher=ddp_worker.teacher(), augment=ddp_worker.Jitter(1),
              out_dir=tmp_path / "run", log=lambda s: None)
