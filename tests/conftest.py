import os

import pytest
import torch

# One thread per test process: the suite's models are tiny, and two processes fighting over two
# cores with spinning BLAS threads is far slower than one thread each.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def blobs():
    """A small, easy 3-class problem as 1x4x4 'images' (learnable in a few epochs)."""
    from kdistill.distill.data import ArrayDataset

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=g) * 2
    y = torch.arange(150) % 3
    x = centers[y] + 0.5 * torch.randn(150, 16, generator=g)
    return ArrayDataset(x.view(150, 1, 4, 4), y, 3, ["a", "b", "c"], "blobs")
