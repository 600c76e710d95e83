"""The soft-regularizer experiment's figures over seeds: each seed is one full repetition
(validation split, subset, initial weights), so every comparison is paired by seed."""

from __future__ import annotations

from .seeds import mean_sd, mean_sd_interval, paired

__all__ = ["over_seeds", "curve_point"]

_CELLS = ("full_data_accuracy", "hard_peak_accuracy", "hard_validation_stop_accuracy",
          "hard_final_accuracy", "soft_final_accuracy")


def _gap(r: dict, soft_key: str = "soft_final_accuracy",
         hard_key: str = "hard_peak_accuracy") -> float | None:
    gap = r["full_data_accuracy"] - r[hard_key]
    return (r[soft_key] - r[hard_key]) / gap if gap > 0 else None


def over_seeds(runs: list[dict]) -> dict:
    """Mean +- sd of every row, the gap recovered per seed (the paper's definition: from the
    hard-label peak) with its mean and 95% interval, the same from the validation-chosen
    stop, and the paired soft - hard differences."""
    out: dict = {}
    for key in _CELLS:
        out[f"{key}_mean"], out[f"{key}_sd"] = mean_sd([r[key] for r in runs])
    for tag, hard_key in (("", "hard_peak_accuracy"),
                          ("_from_validation_stop", "hard_validation_stop_accuracy")):
        gaps = [_gap(r, hard_key=hard_key) for r in runs]
        out[f"gap_recovered{tag}_per_seed"] = gaps
        (out[f"gap_recovered{tag}_mean"], out[f"gap_recovered{tag}_sd"],
         out[f"gap_recovered{tag}_interval"]) = mean_sd_interval(gaps)
    soft = [r["soft_final_accuracy"] for r in runs]
    out["soft_minus_hard_final"] = paired(soft, [r["hard_final_accuracy"] for r in runs])
    out["soft_minus_hard_validation_stop"] = paired(
        soft, [r["hard_validation_stop_accuracy"] for r in runs])
    out["temperature_per_seed"] = [r["temperature"] for r in runs]
    return out


def curve_point(fraction: float, runs: list[dict]) -> dict:
    """One point of the recovery-against-fraction curve."""
    s = over_seeds(runs)
    return {"fraction": fraction, "small_train_size": runs[0]["small_train_size"],
            "small_epochs": runs[0]["small_epochs"], "seeds": len(runs),
            **{k: s[k] for k in ("gap_recovered_mean", "gap_recovered_sd",
                                 "gap_recovered_interval", "gap_recovered_per_seed",
                                 "gap_recovered_from_validation_stop_mean",
                                 "soft_final_accuracy_mean", "soft_final_accuracy_sd",
                                 "hard_peak_accuracy_mean", "hard_final_accuracy_mean",
                                 "hard_validation_stop_accuracy_mean",
                                 "full_data_accuracy_mean", "temperature_per_seed")}}
