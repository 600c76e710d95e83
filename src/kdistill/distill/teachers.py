"""Teachers: any nn.Module or callable returning logits, run frozen; and a logit cache on disk.

Running the teacher once over the transfer set and storing its logits removes the teacher's
forward pass from every student epoch. The cache is keyed by a fingerprint of the teacher's
weights, the inputs and the transform, and is rebuilt (never silently reused) when any of them
changes. With augmentation the teacher must see the student's augmented input, so the trainer
runs it online instead (SPEC 1.6 pitfall 5).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import nn

from .adapters import logits_of, to_device

__all__ = [
    "Teacher",
    "COMBINE_RULES",
    "combine_members",
    "EnsembleTeacher",
    "run_teacher",
    "fingerprint_module",
    "fingerprint_tensor",
]

Teacher = nn.Module | Callable[[torch.Tensor], torch.Tensor]


COMBINE_RULES = ("arith_prob", "geo_logit")


def combine_members(member_logits: torch.Tensor | list[torch.Tensor], temperature: float = 1.0,
                    combine: str = "arith_prob") -> torch.Tensor:
    """Logits whose softmax at T is the ensemble's distribution at T (Hinton et al. 2015 sec. 1).

    arith_prob: the arithmetic mean of the members' probabilities at T, returned as
        T * log(mean_m softmax(v_m / T)); it depends on T, so an ensemble's cache is per T.
    geo_logit: the normalized geometric mean of the probabilities, i.e. the mean of the logits.
    """
    if combine not in COMBINE_RULES:
        raise ValueError(f"combine must be one of {COMBINE_RULES}, got {combine!r}")
    if isinstance(member_logits, (list, tuple)):
        shapes = {tuple(v.shape) for v in member_logits}
        if len(shapes) != 1:
            raise ValueError(f"ensemble members disagree on their output shape: {sorted(shapes)}"
                             " (the number of classes must match)")
        member_logits = torch.stack(list(member_logits))
    v = member_logits.float()
    if combine == "geo_logit":
        return v.mean(dim=0)
    t = float(temperature)
    if not t > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    log_p = torch.log_softmax(v / t, dim=-1)
    return t * (torch.logsumexp(log_p, dim=0) - torch.log(torch.tensor(float(v.shape[0]))))


class EnsembleTeacher(nn.Module):
    """Several trained members as one teacher. The rule and T are buffers, so they are part of
    the fingerprint that keys the logit cache."""

    def __init__(self, members: list[nn.Module], combine: str = "arith_prob",
                 temperature: float = 1.0) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {COMBINE_RULES}, got {combine!r}")
        self.members = nn.ModuleList(members)
        self.combine = combine
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer("combine_code", torch.tensor(COMBINE_RULES.index(combine)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return combine_members([m(x) for m in self.members], float(self.temperature),
                               self.combine)


def run_teacher(
    teacher: Teacher,
    x: torch.Tensor,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    progress: bool = False,
    logits_key=None,
) -> torch.Tensor:
    """Teacher logits for all of `x` as float32 on the CPU: eval mode (a dropout net acts as its
    mean network), no autograd, in batches; the module's train/eval mode is restored after."""
    was_training = teacher.training if isinstance(teacher, nn.Module) else None
    if isinstance(teacher, nn.Module):
        teacher.eval()
        first = next(teacher.parameters(), None)
        if first is not None:  # inputs go where the weights are
            device = first.device
    chunks = []
    try:
        with torch.no_grad():
            starts = range(0, len(x), batch_size)
            if progress:
                from tqdm import tqdm
                starts = tqdm(starts, desc="teacher", unit="batch", leave=False)
            for i in starts:
                out = logits_of(teacher(to_device(x[i:i + batch_size], device)), logits_key)
                chunks.append(out.float().cpu())
    finally:
        if was_training:
            teacher.train()
    if not chunks:
        raise ValueError("cannot run a teacher on an empty data set")
    return torch.cat(chunks)


def fingerprint_tensor(t: torch.Tensor) -> str:
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    t = t.detach().cpu().contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint_module(module: nn.Module) -> str:
    """SHA-256 over the class name and every parameter and buffer (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(fingerprint_tensor(tensor).encode())
    return h.hexdigest()
