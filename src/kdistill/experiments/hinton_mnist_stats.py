"""The hinton-mnist experiment's numbers over seeds: the headline cells (hard-label and distilled
student) and the width x temperature sweep, each as mean +- sd with the paired difference from
the hard-label student of the same seed. Input: the rows `common.fit_run` returns, one per
seed in seed order; output: plain JSON-able values for the report."""

from __future__ import annotations

from .seeds import best_on_validation, interval, mean_sd, paired

__all__ = ["headline", "sweep", "test_errors"]


def test_errors(row: dict, epoch: str = "last") -> float:
    """A run's test errors at its last epoch, or at the epoch its validation errors were lowest
    (`epoch="best_val"`, which needs a validation curve)."""
    if epoch == "last":
        return row["test_errors"]
    return best_on_validation(row["curve"], row["val_curve"])[0]


def _has_val(rows: list[dict]) -> bool:
    return all("val_curve" in r for r in rows)


def _cell(prefix: str, rows: list[dict]) -> dict:
    out = {}
    readings = ["last", "best_val"] if _has_val(rows) else ["last"]
    for epoch in readings:
        key = prefix if epoch == "last" else f"{prefix}_best_val"
        values = [test_errors(r, epoch) for r in rows]
        out[f"{key}_mean"], out[f"{key}_sd"] = mean_sd(values)
        out[f"{key}_per_seed"] = values
    if _has_val(rows):
        out[f"{prefix}_val_errors_mean"] = mean_sd([r["val_errors"] for r in rows])[0]
    return out


def _gap(student: float, distilled: float, teacher: float) -> float | None:
    gap = student - teacher
    return (student - distilled) / gap if gap > 0 else None


def headline(teacher_errors: float, students: list[dict], distilled: list[dict]) -> dict:
    """The table's three rows over seeds, and the share of the teacher-student gap recovered
    by distillation, per seed (paired: each seed's distilled student against its own
    hard-label student) with its mean and 95% interval."""
    out = {"student": students[0], "distilled": distilled[0],
           "student_errors": students[0]["test_errors"],
           "distilled_errors": distilled[0]["test_errors"],
           **_cell("student_errors", students), **_cell("distilled_errors", distilled)}
    readings = ["last", "best_val"] if _has_val(students + distilled) else ["last"]
    for epoch in readings:
        tag = "" if epoch == "last" else "_best_val"
        s = [test_errors(r, epoch) for r in students]
        d = [test_errors(r, epoch) for r in distilled]
        per_seed = [_gap(a, b, teacher_errors) for a, b in zip(s, d)]
        means = (out[f"student_errors{tag}_mean"], out[f"distilled_errors{tag}_mean"])
        out[f"gap_recovered{tag}"] = _gap(*means, teacher_errors)
        if any(g is None for g in per_seed):
            out[f"gap_recovered{tag}_mean"] = out[f"gap_recovered{tag}_interval"] = None
        else:
            out[f"gap_recovered{tag}_mean"], out[f"gap_recovered{tag}_sd"] = mean_sd(per_seed)
            out[f"gap_recovered{tag}_interval"] = interval(per_seed)
        out[f"gap_recovered{tag}_per_seed"] = per_seed
        out[f"distilled_minus_student{tag}"] = paired(d, s)
    return out


def sweep(hidden: list[int], temps: list[float], baselines: dict[int, list[dict]],
          cells: dict[tuple[int, float], list[dict]]) -> dict:
    """Per width and T: test errors (mean, sd, per seed), the paired difference from that
    width's hard-label students, and with a validation split the validation errors and the T
    they choose per width."""
    has_val = all(_has_val(rows) for rows in [*baselines.values(), *cells.values()])

    def grid(fn):
        return [[fn(cells[(h, t)]) if (h, t) in cells else None for t in temps]
                for h in hidden]

    out = {
        "hidden": hidden, "temperatures": temps,
        "errors": grid(lambda rows: mean_sd([r["test_errors"] for r in rows])[0]),
        "errors_sd": grid(lambda rows: mean_sd([r["test_errors"] for r in rows])[1]),
        "errors_per_seed": grid(lambda rows: [r["test_errors"] for r in rows]),
        "hard_label_errors": [mean_sd([r["test_errors"] for r in baselines[h]])[0]
                              for h in hidden],
        "hard_label_errors_sd": [mean_sd([r["test_errors"] for r in baselines[h]])[1]
                                 for h in hidden],
        "hard_label_errors_per_seed": [[r["test_errors"] for r in baselines[h]]
                                       for h in hidden],
    }
    out["minus_hard"] = [[paired([r["test_errors"] for r in cells[(h, t)]],
                                 [r["test_errors"] for r in baselines[h]])
                          if (h, t) in cells else None for t in temps] for h in hidden]
    if has_val:
        out["errors_best_val"] = grid(
            lambda rows: mean_sd([test_errors(r, "best_val") for r in rows])[0])
        out["val_errors"] = grid(lambda rows: mean_sd([r["val_errors"] for r in rows])[0])
        out["chosen_temperature"] = {
            str(h): min((t for t in temps if (h, t) in cells),
                        key=lambda t: (sum(r["val_errors"] for r in cells[(h, t)]), t))
            for h in hidden}
    return out
