"""Epoch callbacks: called on rank 0 after every epoch's evaluation and checkpoint, with the
epoch's row of metrics (the same dict that goes into the history)."""

from __future__ import annotations

import numbers
import os

from torch import nn

__all__ = ["Callback", "TensorBoardCallback"]


class Callback:
    """Override what you need; the trainer calls these on rank 0 only."""

    def on_epoch_end(self, row: dict, model: nn.Module) -> None:
        pass

    def on_train_end(self, history: list[dict], model: nn.Module) -> None:
        pass


class TensorBoardCallback(Callback):
    """Every numeric field of each epoch's row as a TensorBoard scalar (`pip install
    tensorboard`, the `tensorboard` extra), step = epoch."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("TensorBoardCallback needs the tensorboard package: pip install "
                             "'kdistill[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def on_epoch_end(self, row: dict, model: nn.Module) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.writer.add_scalar(key, float(value), global_step=int(row["epoch"]))
        self.writer.flush()

    def on_train_end(self, history: list[dict], model: nn.Module) -> None:
        self.writer.close()
