"""Evaluating specialists as the paper's Tables 3 and 4 do (Hinton et al. 2015 sec. 5): the
combination after each specialist's dustbin correction, the conditional accuracy on covered
examples, and the change in correct answers by how many subsets cover the true class. numpy
only."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import specialist_combine as spc
from . import specialists as sp

__all__ = ["combine_with_specialists", "conditional_accuracy", "gain_by_covering"]


def combine_with_specialists(generalist_probs: np.ndarray, specialist_probs: list[np.ndarray],
                             subsets: list[np.ndarray], natural_fractions: Sequence[float],
                             special_fraction: float = 0.5, literal: bool = False,
                             correct: bool = True) -> np.ndarray:
    """SPEC §4.4 with top_n = 1, after each specialist's dustbin correction.

    The correction (exact by default, the paper's wording with literal=True, none with
    correct=False) is added to the dustbin logit, done here in probability space: the dustbin
    probability is multiplied by exp(correction) and the row renormalized, which is the same.
    natural_fractions[m]: subset m's share of the training labels.
    """
    corrected = []
    for p, f in zip(specialist_probs, natural_fractions, strict=True):
        q = np.array(p, dtype=np.float64)
        if correct:
            q[:, -1] *= math.exp(sp.dustbin_correction(f, special_fraction, literal))
            q /= q.sum(axis=1, keepdims=True)
        corrected.append(q)
    return spc.combine(generalist_probs, corrected, subsets, top_n=1)


def conditional_accuracy(probs: np.ndarray, labels: np.ndarray,
                         subsets: list[np.ndarray]) -> tuple[int, int]:
    """(correct, count) over the examples whose true class is in at least one subset, each
    predicted as the argmax of `probs` restricted to the union of the subsets holding its true
    class (our reading of the paper's Table 3 "conditional test accuracy")."""
    num_classes = probs.shape[1]
    member = np.zeros((len(subsets), num_classes), dtype=bool)
    for m, s in enumerate(subsets):
        member[m, s] = True
    holding = member[:, labels].T            # (n, M): subset m holds example i's class
    allowed = (holding.astype(np.int64) @ member.astype(np.int64)) > 0  # (n, C)
    covered = allowed.any(axis=1)
    pred = np.where(allowed, probs, -np.inf).argmax(axis=1)
    return int((pred == labels)[covered].sum()), int(covered.sum())


def gain_by_covering(generalist_probs: np.ndarray, combined_probs: np.ndarray,
                     labels: np.ndarray, subsets: list[np.ndarray]) -> list[dict]:
    """The paper's Table 4: per number of subsets covering the true class, the examples, the
    change in top-1 correct (combined minus generalist) and the relative accuracy change
    (that change over the generalist's correct count)."""
    cover = spc.covering_counts(labels, subsets, generalist_probs.shape[1])
    g_ok = generalist_probs.argmax(axis=1) == labels
    c_ok = combined_probs.argmax(axis=1) == labels
    rows = []
    for k in range(int(cover.max()) + 1):
        mask = cover == k
        base = int(g_ok[mask].sum())
        delta = int(c_ok[mask].sum()) - base
        rows.append({"covering": k, "examples": int(mask.sum()), "generalist_correct": base,
                     "delta_correct": delta, "relative_change": delta / base if base else None})
    return rows
