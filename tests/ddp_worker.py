"""Run under torchrun (2 processes, gloo): train the same student as test_training's single-
process run and save rank 0's final weights. Not a test module itself."""

import sys

import torch
import torch.distributed as dist

from kdistill.distill.augment import Jitter
from kdistill.distill.data import ArrayDataset
from kdistill.distill.models import MLP
from kdistill.distill.trainer import TrainConfig, train


def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(100, 1, 6, 6, generator=g)
    y = (x.view(100, -1)[:, :3].argmax(1))
    return ArrayDataset(x, y, 3, name="ddp-problem")


def config():
    return TrainConfig(epochs=2, batch_size=32, optimizer="sgd", lr=0.1, momentum=0.9,
                       seed=3, progress=False, device="cpu")


def fresh_model():
    torch.manual_seed(11)
    return MLP(36, 3, (16,))


if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    result = train(fresh_model(), problem(), config(), augment=Jitter(1),
                   out_dir=sys.argv[1] + "/run",
                   log=lambda s: None)
    if dist.get_rank() == 0:
        torch.save(result.model.state_dict(), sys.argv[1] + "/ddp_weights.pt")
    dist.destroy_process_group()
