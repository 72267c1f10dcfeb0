"""Which pictures a report has, and the numbers behind each — kept apart from how they are drawn.

Each `Figure` names its PNG file (beside the HTML), its title, the JSON key that
holds the numbers it plots, and its bytes. The numbers come from the results
only; `ups.eval.plots` draws them. The HTML page embeds the figures by file name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ups.eval import plots
from ups.eval.ensemble import OPERATOR as ENSEMBLE_OPERATOR
from ups.eval.evaluation import CORRECTED, OPERATOR, EvalResult
from ups.eval.goals import SPREAD_SKILL_RANGE
from ups.eval.goodput_view import timeline_bars
from ups.eval.later_stages import LaterStages

FIELD_METHODS = (OPERATOR, CORRECTED)  # persistence is a flat copy of u(0): not worth a line per panel
MODEL_METHODS = (OPERATOR, CORRECTED)  # every other deterministic method is a baseline


@dataclass(frozen=True)
class Figure:
    key: str  # file suffix and HTML anchor
    title: str
    json_key: str  # where in the report's JSON its numbers are
    png: bytes

    def file_name(self, prefix: Path) -> str:
        return f"{prefix.name}_{self.key}.png"


def rollout_curves(result: EvalResult, later: LaterStages) -> dict[str, list[float]]:
    """Deterministic methods' nRMSE curves, then each ensemble's mean (same rollout steps)."""
    curves = {m: result.curves[m] for m in result.methods}
    ens = later.ensemble
    if ens is not None:
        for name, stats in ens.methods.items():
            if name != ENSEMBLE_OPERATOR:  # say so when the ensembles saw fewer samples than the lines beside them
                fewer = f" ({ens.n_samples} samples)" if ens.n_samples != result.n_samples else ""
                curves[f"{name} ensemble mean{fewer}"] = stats.curves["nrmse_of_mean"]
    return curves


def field_panels(result: EvalResult, later: LaterStages) -> list[dict[str, Any]]:
    """One panel per plotted (sample, step): truth, operator lines, ensemble mean +- std bands."""
    spread = {s.index: s for s in later.ensemble.samples} if later.ensemble else {}
    panels = []
    for s in result.samples:
        e = spread.get(s.index)
        for k in s.steps:
            bands = {}
            if e is not None:
                bands = {name: (e.mean[name][k], e.std[name][k]) for name in e.mean if name != ENSEMBLE_OPERATOR}
            panels.append({"index": s.index, "step": k, "time": result.times[k - 1], "true": s.true[k],
                           "lines": {m: s.pred[m][k] for m in FIELD_METHODS if m in s.pred}, "bands": bands})
    return panels


def build_figures(result: EvalResult, later: LaterStages, panels: list[dict[str, Any]],
                  goodput: Optional[dict[str, Any]] = None) -> list[Figure]:
    """Every picture of the report; `goodput` is the record of the attempts that trained the files."""
    baselines = [m for m in result.methods if m not in MODEL_METHODS]
    figs = [Figure("rollout", "Rollout error vs step, with baselines (log scale)", "rollout_curves",
                   plots.rollout_png(rollout_curves(result, later), baselines, "nRMSE per rollout step"))]
    if panels:
        figs.append(Figure("fields", "Sample fields: truth, predictions, ensemble mean +- 2 std", "sample_fields",
                           plots.fields_png(result.x, panels, result.times)))
    if later.ensemble is not None:
        methods = {name: m.curves for name, m in later.ensemble.methods.items()}
        figs.append(Figure("ensemble", "CRPS and spread/skill per rollout step", "ensemble.methods",
                           plots.ensemble_png(methods, SPREAD_SKILL_RANGE)))
    if later.prior is not None:
        figs.append(Figure("prior", "Steady prior: energy spectra and samples beside held-out states",
                           "steady_prior", plots.prior_png(result.x, later.prior.spectra, later.prior.examples)))
    for stage, curves in later.losses.items():
        figs.append(Figure(f"loss_{stage}", f"{stage}: training and validation loss",
                           f"loss_curves.{stage}", plots.losses_png(stage, curves)))
    bars = timeline_bars(goodput)
    if bars:
        figs.append(Figure("attempts", "Training attempts: start-up, steps, saves and other time of each",
                           "goodput.attempts", plots.attempts_png(bars)))
    return figs


def find(figures: list[Figure], key: str) -> Optional[Figure]:
    return next((f for f in figures if f.key == key), None)
