"""A small training run that can be killed with SIGKILL at a chosen moment, for the fault
tests and benchmarks/fault_injection.py. Not a test module itself.

    python fault_worker.py OUT MODE     MODE: none | epoch:N (after checkpoint N is written)
                                        | write:N (halfway through writing checkpoint N)
                                        | step:N (at the N-th training step)
"""

import os
import signal
import sys

import torch

from kdistill.distill.augment import Jitter
from kdistill.distill.callbacks import Callback
from kdistill.distill.data import ArrayDataset
from kdistill.distill.models import MLP
from kdistill.distill.trainer import TrainConfig, train

STEPS_PER_EPOCH, EPOCHS = 8, 4
SAVE = torch.save  # the final weights are saved with this, never with a patched save


def problem() -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(120, 1, 6, 6, generator=g)
    return ArrayDataset(x, x.view(120, -1)[:, :3].argmax(1), 3, name="kill-problem")


def config() -> TrainConfig:
    return TrainConfig(epochs=EPOCHS, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.9,
                       seed=3, progress=False, device="cpu")


def model() -> MLP:
    torch.manual_seed(11)
    return MLP(36, 3, (16,), hidden_dropout=0.3)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfterEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, row, m) -> None:
        if row["epoch"] == self.epoch:
            die()


def kill_mid_write(n: int) -> None:
    """Checkpoint n is written half, then the process dies inside the atomic write."""
    import kdistill.distill.checkpoint as ck

    real, calls = ck.torch.save, []

    def half_then_die(obj, f, *args, **kwargs):
        if not str(f).endswith(".tmp"):  # torch.distributed pickles objects with it too
            return real(obj, f, *args, **kwargs)
        calls.append(1)
        real(obj, f, *args, **kwargs)
        if len(calls) == n:
            with open(f, "r+b") as fh:
                fh.truncate(os.path.getsize(f) // 2)
            die()

    ck.torch.save = half_then_die


def main(out: str, mode: str) -> None:
    """Under torchrun (WORLD_SIZE > 1) the run is distributed and rank 0 is the one killed;
    torchrun then stops the other rank."""
    torch.set_num_threads(1)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("gloo")
    rank = int(os.environ.get("RANK", "0"))
    kind, _, arg = mode.partition(":")
    kind = kind if rank == 0 else "none"
    net, callbacks = model(), []
    if kind == "epoch":
        callbacks.append(KillAfterEpoch(int(arg)))
    elif kind == "write":
        kill_mid_write(int(arg))
    elif kind == "step":
        calls = []

        def count(_module, _inputs):
            if net.training:
                calls.append(1)
                if len(calls) == int(arg):
                    die()
        net.register_forward_pre_hook(count)
    result = train(net, problem(), config(), augment=Jitter(1), out_dir=out,
                   callbacks=callbacks, log=lambda s: None)
    if rank == 0:
        SAVE(result.model.state_dict(), os.path.join(out, "final.pt"))
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
