"""Forward stepwise selection with running sums: one hillclimb of Caruana et al. (2004).

The greedy step scores every candidate ensemble ``(S + P_m) / (k + 1)`` at once from the running
sum ``S`` of the members' predictions (SPEC §6.2-6.3), so one step costs a few passes over
``preds``; RMSE needs one matrix-vector product and binary accuracy two comparisons. A hillclimb
starts from the N best single models (sorted initialization) and keeps its whole trajectory.

Scores within a relative ``1e-12`` of the best count as ties, so rounding noise of the fast
formulas cannot change a choice. Ties go to the lowest model index (the smallest ensemble for the
best prefix), unless a random generator breaks them (``mode="autosklearn"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import MetricLike, batch_scores

_TIE_RTOL = 1e-12
_CHUNK_ELEMENTS = 1 << 22  # candidates evaluated per chunk, about 32 MB of float64


# ----------------------------------------------------------------------------------------------
# Candidate scoring with running sums
# ----------------------------------------------------------------------------------------------


class Scorer:
    """Objective (higher is better) of all candidate ensembles ``(S + P_m) / (k + 1)``."""

    def __init__(
        self, preds: np.ndarray, y: np.ndarray, n_classes: int, metric: MetricLike, sign: float
    ) -> None:
        self.preds = preds
        self.y = y
        self.n_classes = n_classes
        self.metric = metric
        self.sign = sign
        n_models = preds.shape[0]
        self.flat = preds.reshape(n_models, -1)
        self.chunk = max(1, _CHUNK_ELEMENTS // self.flat.shape[1])
        self.binary = preds.ndim == 2
        if metric == "rmse":
            target = y.astype(np.float64) if self.binary else np.eye(n_classes)[y]
            self.target = target.ravel()
            self.sum_squares = np.einsum("ij,ij->i", self.flat, self.flat)
        if metric == "accuracy" and self.binary:
            self.pos = y == 1
            self.preds_pos = np.ascontiguousarray(preds[:, self.pos])
            self.preds_neg = np.ascontiguousarray(preds[:, ~self.pos])

    def scores(self, p: np.ndarray) -> np.ndarray:
        """Natural-orientation scores of a batch of prediction arrays."""
        return batch_scores(self.metric, p, self.y, self.n_classes)

    def score(self, p: np.ndarray) -> float:
        return float(self.scores(p[None])[0])

    def candidates(self, total: np.ndarray, k: int) -> np.ndarray:
        """Objective of adding each model to an ensemble of ``k`` members summing to ``total``."""
        if self.metric == "rmse":
            # sum_d (P_md + R_d)^2 with R = S - (k+1) y, expanded so one gemv does the work.
            resid = total.ravel() - (k + 1) * self.target
            sse = self.sum_squares + 2.0 * (self.flat @ resid) + resid @ resid
            mse = np.maximum(sse, 0.0) / ((k + 1) ** 2 * resid.size)
            return self.sign * np.sqrt(mse)
        if self.metric == "accuracy" and self.binary:
            # (S + P) / (k + 1) > 0.5  <=>  P > 0.5 (k + 1) - S
            threshold = 0.5 * (k + 1) - total
            correct = np.count_nonzero(self.preds_pos > threshold[self.pos], axis=1)
            correct += np.count_nonzero(self.preds_neg <= threshold[~self.pos], axis=1)
            return self.sign * correct / self.y.size
        out = np.empty(self.preds.shape[0])
        for start in range(0, len(out), self.chunk):
            block = self.preds[start : start + self.chunk]
            if self.metric == "accuracy":
                labels = (block + total).argmax(axis=-1)
                out[start : start + len(block)] = (labels == self.y).mean(axis=1)
            else:
                out[start : start + len(block)] = self.scores((block + total) / (k + 1))
        return self.sign * out


def _first_best(objective: np.ndarray, rng: np.random.Generator | None = None) -> int:
    """Index of the best objective; ties within a relative 1e-12 go first, or random with rng."""
    best = np.max(objective)
    tied = np.flatnonzero(objective >= best - _TIE_RTOL * max(1.0, abs(best)))
    if rng is None or len(tied) == 1:
        return int(tied[0])
    return int(rng.choice(tied))


# ----------------------------------------------------------------------------------------------
# One hillclimb
# ----------------------------------------------------------------------------------------------


@dataclass
class Run:
    picks: np.ndarray  # model indices in the order added, the sorted initialization first
    trajectory: np.ndarray  # hillclimb score after the init and after each later pick
    init_size: int
    best_step: int  # index into trajectory of the returned ensemble


def hillclimb(
    scorer: Scorer,
    n_init: int | str,
    max_n_init: int,
    max_iter: int,
    replacement: bool,
    last_step: bool,
    tie_rng: np.random.Generator | None,
) -> Run:
    """Sorted initialization, then greedy forward selection; keep the whole trajectory."""
    preds = scorer.preds
    n_models = preds.shape[0]
    total = np.zeros(preds.shape[1:])
    picks: list[int] = []
    trajectory: list[float] = []

    init_size = 0
    if n_init == "auto" or n_init > 0:
        single = scorer.candidates(total, 0)
        order = np.argsort(-single, kind="stable")
        if n_init == "auto":
            top = order[: min(max_n_init, n_models)]
            sizes = np.arange(1, len(top) + 1).reshape((-1,) + (1,) * (preds.ndim - 1))
            averages = np.cumsum(preds[top], axis=0) / sizes
            init_size = _first_best(scorer.sign * scorer.scores(averages)) + 1
        else:
            init_size = int(n_init)
        picks.extend(int(m) for m in order[:init_size])
        total = preds[order[:init_size]].sum(axis=0)
        trajectory.append(scorer.score(total / init_size))

    used = np.zeros(n_models, dtype=bool)
    used[picks] = True
    for _ in range(max_iter):
        objective = scorer.candidates(total, len(picks))
        if not replacement:
            if used.all():
                break
            objective[used] = -np.inf
        pick = _first_best(objective, tie_rng)
        picks.append(pick)
        used[pick] = True
        total = total + preds[pick]
        trajectory.append(scorer.score(total / len(picks)))

    traj = np.asarray(trajectory)
    if last_step:
        best_step = len(traj) - 1
    else:
        best_step = _first_best(scorer.sign * traj)
    return Run(np.asarray(picks, dtype=np.int64), traj, init_size, best_step)


def prefix_weights(run: Run, n_models: int) -> np.ndarray:
    """Weights count / size of the ensemble at ``run.best_step``."""
    # trajectory[0] is the whole sorted initialization when there is one, else the first pick
    size = run.init_size + run.best_step if run.init_size > 0 else run.best_step + 1
    counts = np.bincount(run.picks[:size], minlength=n_models)
    return counts / size

