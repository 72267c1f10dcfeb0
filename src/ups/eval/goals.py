"""What each later stage must show to be worth keeping, checked on its numbers.

A stage that costs training time and sampling time is kept only for what it
measurably adds. The targets are fixed here, once; each check returns a
`Goal` whose text states the measured numbers whether the goal is met or not,
so the report (and a reader of its JSON) never has to guess:

- diffusion residual: ensemble CRPS <= 0.9 x the operator's MAE (its CRPS), and
  spread/skill within [0.7, 1.3]; and its ensemble-mean rollout nRMSE no worse
  than the operator's — sampling must not silently make the forecast worse;
- consistency student: CRPS within 5 % of the teacher's, with at least 5x fewer
  denoiser evaluations per draw (wall time is reported beside it);
- steady prior: closer to held-out long-time states than a Gaussian fit of the
  training states, by energy spectrum distance and by MMD.

Pure functions of plain dicts (the JSON's), tested on numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

CRPS_RATIO_GOAL = 0.9
SPREAD_SKILL_RANGE = (0.7, 1.3)
STUDENT_CRPS_TOLERANCE = 1.05
EVALS_SPEEDUP_GOAL = 5.0


@dataclass(frozen=True)
class Goal:
    stage: str
    name: str
    value: Optional[float]
    target: str
    met: bool
    text: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def _is_finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


def _calibration(ss: float) -> str:
    lo, hi = SPREAD_SKILL_RANGE
    if not _is_finite(ss):
        return "undefined: no spread or no error"
    return "over-confident" if ss < lo else "under-confident" if ss > hi else "calibrated"


def diffusion_goals(operator: dict[str, Any], teacher: dict[str, Any], stage: str = "diff_residual") -> list[Goal]:
    """`operator`, `teacher`: the ensemble methods' overall scores (crps, spread_skill, nrmse_of_mean)."""
    return [*calibration_goals(operator, teacher, stage), mean_rollout_goal(operator, teacher, stage, "the operator alone")]


def calibration_goals(operator: dict[str, Any], teacher: dict[str, Any], stage: str) -> list[Goal]:
    r = _ratio(teacher["crps"], operator["crps"])
    lo, hi = SPREAD_SKILL_RANGE
    ss = teacher["spread_skill"]
    ss_met = _is_finite(ss) and lo <= ss <= hi
    return [
        Goal(stage, "crps_vs_operator_mae", r, f"<= {CRPS_RATIO_GOAL}", r <= CRPS_RATIO_GOAL,
             f"ensemble CRPS {teacher['crps']:.4g} = {r:.3f} x the operator's MAE {operator['crps']:.4g} "
             f"(goal <= {CRPS_RATIO_GOAL})"),
        Goal(stage, "spread_skill", ss if _is_finite(ss) else None, f"in [{lo}, {hi}]", ss_met,
             f"spread/skill {ss:.3f} (goal within [{lo}, {hi}]; {_calibration(ss)})"),
    ]


def mean_rollout_goal(reference: dict[str, Any], sampled: dict[str, Any], stage: str, against: str) -> Goal:
    """The ensemble's mean rollout against a reference method's (the operator, or the teacher)."""
    worse = sampled["nrmse_of_mean"] > reference["nrmse_of_mean"]
    return Goal(stage, "mean_rollout_not_worse", _ratio(sampled["nrmse_of_mean"], reference["nrmse_of_mean"]),
                f"ensemble-mean rollout nRMSE no higher than {against}'s", not worse,
                f"sampling the residual makes the mean rollout {'WORSE' if worse else 'no worse'} than {against}: "
                f"ensemble-mean rollout nRMSE {sampled['nrmse_of_mean']:.4g} vs {reference['nrmse_of_mean']:.4g}")


def student_goals(teacher: dict[str, Any], student: dict[str, Any]) -> list[Goal]:
    """`teacher`, `student`: overall scores plus denoiser_evals_per_draw and seconds_per_draw."""
    stage = "consistency_distill"
    r = _ratio(student["crps"], teacher["crps"])
    speed = _ratio(teacher["denoiser_evals_per_draw"], student["denoiser_evals_per_draw"])
    wall = _ratio(teacher["seconds_per_draw"], student["seconds_per_draw"])
    return [
        Goal(stage, "crps_vs_teacher", r, f"<= {STUDENT_CRPS_TOLERANCE}", r <= STUDENT_CRPS_TOLERANCE,
             f"student CRPS {student['crps']:.4g} = {r:.3f} x the teacher's {teacher['crps']:.4g} "
             f"(goal within {round((STUDENT_CRPS_TOLERANCE - 1) * 100)} %)"),
        Goal(stage, "fewer_denoiser_evals", speed, f">= {EVALS_SPEEDUP_GOAL}", speed >= EVALS_SPEEDUP_GOAL,
             f"{student['denoiser_evals_per_draw']:.3g} denoiser evaluations per draw vs the teacher's "
             f"{teacher['denoiser_evals_per_draw']:.3g} ({speed:.2f}x fewer, goal >= {EVALS_SPEEDUP_GOAL:g}x); "
             f"wall time per draw {student['seconds_per_draw'] * 1e6:.3g} us vs {teacher['seconds_per_draw'] * 1e6:.3g} us "
             f"({wall:.2f}x faster)"),
        mean_rollout_goal(teacher, student, stage, "the teacher"),
    ]


def mean_and_std(row: dict[str, float], key: str) -> str:
    """A steady-prior row's metric as text: its mean over draws +- their std."""
    return f"{row[key]:.4g} +- {row.get(key + '_std', 0.0):.2g}"


def prior_goals(rows: dict[str, dict[str, float]]) -> list[Goal]:
    """`rows`: steady_prior / gaussian_fit / train_states -> spectrum_distance, mmd (means over
    draws), their `_std`, and `draws`. Better means a lower mean over the same number of draws."""
    p, g, t = rows["steady_prior"], rows["gaussian_fit"], rows["train_states"]
    out = []
    for key, label in (("spectrum_distance", "energy spectrum distance"), ("mmd", "MMD")):
        met = p[key] < g[key]
        out.append(Goal("steady_prior", f"{key}_vs_gaussian", _ratio(p[key], g[key]), "< 1 x the Gaussian fit's",
                        met, f"{label} to held-out long-time states {mean_and_std(p, key)} vs a Gaussian fit's "
                        f"{mean_and_std(g, key)} "
                        f"(mean +- std of {p.get('draws', 1)} draws; {'better' if met else 'NOT better'}; "
                        f"train states themselves: {t[key]:.4g})"))
    return out


def correction_goal(operator_rollout: float, corrected_rollout: float) -> Goal:
    """The deterministic correction (operator + the residual's mean) against the operator alone."""
    worse = corrected_rollout > operator_rollout
    return Goal("diff_residual", "mean_correction_not_worse", _ratio(corrected_rollout, operator_rollout),
                "rollout nRMSE no higher than the operator alone's", not worse,
                f"adding the residual's mean makes the rollout {'WORSE' if worse else 'no worse'} than the operator "
                f"alone: rollout nRMSE {corrected_rollout:.4g} vs {operator_rollout:.4g}")
