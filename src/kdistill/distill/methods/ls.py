"""The logit-standardization rows (Sun et al. 2024, "Logit Standardization in Knowledge
Distillation"): KD and DKD with `standardize=True` by default, so a league or a CLI run can
name them. Every other default is the parent's (the paper retunes the temperature and the
distillation weights per setting; pass them explicitly to reproduce a table)."""

from __future__ import annotations

from .dkd import DKD
from .kd import KD

__all__ = ["KDLS", "DKDLS"]


class KDLS(KD):
    name = "kd_ls"

    def __init__(self, temperature: float = 4.0, soft_weight: float = 1.0,
                 hard_weight: float = 0.1, standardize: bool = True) -> None:
        super().__init__(temperature, soft_weight, hard_weight, standardize)


class DKDLS(DKD):
    name = "dkd_ls"

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0,
                 hard_weight: float = 1.0, standardize: bool = True, warmup_steps: int = 0,
                 ) -> None:
        super().__init__(alpha, beta, temperature, hard_weight, standardize, warmup_steps)
