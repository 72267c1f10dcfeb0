"""Measure the stages after the operator, and say whether each earns its place.

`evaluate` scores the operator (and the residual's mean as a correction). This
module adds what the sampling stages are for: ensembles of sampled rollouts for
the diffusion residual and its consistency student (`ups.eval.ensemble`), the
steady prior against held-out long-time states (`ups.eval.prior`), each stage's
loss curves from `metrics.jsonl` (`ups.eval.history`), and the verdicts
(`ups.eval.goals`). A stage whose file is absent is simply not measured; the
report lists what was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ups.config import Config
from ups.data.pdebench import FieldSplit
from ups.eval.ensemble import OPERATOR as ENSEMBLE_OPERATOR
from ups.eval.ensemble import STUDENT, TEACHER, EnsembleResult, evaluate_ensembles
from ups.eval.evaluation import CORRECTED, OPERATOR, EvalResult
from ups.errors import ConfigError
from ups.eval.goals import Goal, correction_goal, diffusion_goals, mean_rollout_goal, prior_goals, student_goals
from ups.eval.history import Curves, loss_curves
from ups.eval.loading import Models, Sampler
from ups.eval.prior import PriorResult, evaluate_prior

PRIOR = "steady_prior"


@dataclass
class LaterStages:
    ensemble: Optional[EnsembleResult] = None
    prior: Optional[PriorResult] = None
    losses: Curves = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)

    def failed(self) -> list[Goal]:
        return [g for g in self.goals if not g.met]


def evaluate_later_stages(cfg: Config, models: Models, samplers: dict[str, Sampler], data: FieldSplit,
                          open_split: Callable[[str], FieldSplit], device: torch.device, metrics_path: Path,
                          result: EvalResult) -> LaterStages:
    """Ensembles on `data` (spreads calibrated on `val` with `eval.calibrate_spread`), the prior
    against `data`'s long-time states (and the train split's), goals."""
    later = LaterStages(losses=loss_curves(metrics_path))
    if cfg.eval.calibrate_spread and cfg.eval.ensemble_size:
        if data.split == "val":
            raise ConfigError("eval.calibrate_spread fits the spread on the val split: evaluate on another "
                              "split (eval.split: test), or turn it off")
        val = open_split("val")
        try:
            later.ensemble = evaluate_ensembles(cfg, models, samplers, data, device, calibration=val)
        finally:
            val.close()
    else:
        later.ensemble = evaluate_ensembles(cfg, models, samplers, data, device)
    if PRIOR in samplers:
        train = open_split("train")
        try:
            later.prior = evaluate_prior(cfg, models, samplers[PRIOR], data, train, device)
        finally:
            train.close()
    later.goals = stage_goals(result, later)
    return later


def stage_goals(result: EvalResult, later: LaterStages) -> list[Goal]:
    goals: list[Goal] = []
    if CORRECTED in result.curves:
        goals.append(correction_goal(result.rollout(OPERATOR), result.rollout(CORRECTED)))
    ens = later.ensemble
    if ens is not None:
        scores = {name: m.as_dict() for name, m in ens.methods.items()}
        if TEACHER in scores:
            goals += diffusion_goals(scores[ENSEMBLE_OPERATOR], scores[TEACHER])
        if STUDENT in scores:
            if TEACHER in scores:
                goals += student_goals(scores[TEACHER], scores[STUDENT])
            goals.append(mean_rollout_goal(scores[ENSEMBLE_OPERATOR], scores[STUDENT], STUDENT, "the operator alone"))
    if later.prior is not None:
        goals += prior_goals(later.prior.rows)
    return goals


def later_dict(later: LaterStages) -> dict[str, Any]:
    """The JSON of everything this module measured (the page shows nothing that is not here)."""
    out: dict[str, Any] = {"loss_curves": later.losses, "goals": [g.as_dict() for g in later.goals]}
    ens = later.ensemble
    if ens is not None:
        out["ensemble"] = {
            "samples": ens.n_samples, "members": ens.members, "rollout_steps": ens.rollout_steps,
            "device": ens.device, "methods": {name: m.as_dict() for name, m in ens.methods.items()},
        }
    if later.prior is not None:
        out["steady_prior"] = later.prior.as_dict()
    return out


def later_summary(later: LaterStages) -> dict[str, Any]:
    """Headline numbers of the later stages, keyed like `summary`'s (they travel into metadata.json)."""
    out: dict[str, Any] = {}
    if later.ensemble is not None:
        for name, m in later.ensemble.methods.items():
            out[f"metric:crps_{name}"] = m.overall["crps"]
            if name != ENSEMBLE_OPERATOR:
                out[f"metric:spread_skill_{name}"] = m.overall["spread_skill"]
                out[f"metric:nrmse_ensemble_mean_{name}"] = m.overall["nrmse_of_mean"]
    if later.prior is not None:
        for name, row in later.prior.rows.items():
            out[f"metric:mmd_{name}"] = row["mmd"]
            out[f"metric:spectrum_distance_{name}"] = row["spectrum_distance"]
    if later.goals:
        out.update(goals_met=sum(g.met for g in later.goals), goals_total=len(later.goals))
    return out
