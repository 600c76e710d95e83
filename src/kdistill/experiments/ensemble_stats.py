"""The ensemble experiment's figures over seeds: each seed repeats the whole protocol (split,
members, students), so the distilled model is compared with the baseline, the hard-label
control and the ensemble of its own seed."""

from __future__ import annotations

from .seeds import mean_sd, mean_sd_interval, paired

__all__ = ["over_seeds"]

_CELLS = ("baseline_accuracy", "member_accuracy_mean", "ensemble_accuracy",
          "distilled_accuracy", "self_distilled_accuracy", "control_baseline_accuracy",
          "ensemble_nll", "distilled_nll", "cost_ratio")


def over_seeds(runs: list[dict]) -> dict:
    """Mean +- sd of each cell, the gain recovered per seed with its mean and 95% interval, and
    the paired differences of the distilled model from the single models of its seed."""
    out: dict = {}
    for key in _CELLS:
        values = [r[key] for r in runs]
        if None in values:
            continue
        out[f"{key}_mean"], out[f"{key}_sd"] = mean_sd(values)
    for key in ("gain_recovered", "gain_recovered_vs_member_mean"):
        values = [r[key] for r in runs]
        out[f"{key}_per_seed"] = values
        out[f"{key}_mean"], out[f"{key}_sd"], out[f"{key}_interval"] = mean_sd_interval(values)
    distilled = [r["distilled_accuracy"] for r in runs]
    out["distilled_minus"] = {
        other: paired(distilled, [r[f"{other}_accuracy"] for r in runs])
        for other in ("baseline", "control_baseline", "ensemble")
        if None not in [r[f"{other}_accuracy"] for r in runs]}
    if None not in [r["self_distilled_accuracy"] for r in runs]:
        out["self_distilled_minus_baseline"] = paired(
            [r["self_distilled_accuracy"] for r in runs], [r["baseline_accuracy"] for r in runs])
    out["temperature_per_seed"] = [r["temperature"] for r in runs]
    return out
