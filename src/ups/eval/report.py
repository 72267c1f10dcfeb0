"""Write an evaluation as PREFIX.json (everything), PREFIX.csv (the curves), PREFIX.html and its PNGs.

The page is for looking at: a verdict per stage, then per stage its numbers,
its pictures and its loss curves. The pictures are matplotlib PNGs written
beside the HTML (`PREFIX_<figure>.png`, referenced by relative name, so the
folder can be moved or attached as a whole); nothing is loaded from the
network. The page is rendered from the report's JSON dict alone, so every
number it shows is in PREFIX.json. Files are written atomically, like
checkpoints: the PNGs first and the HTML last, so a page never points at a
picture that is not there yet.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Optional

from ups.eval.evaluation import EvalResult, summary
from ups.eval.figures import build_figures, field_panels, rollout_curves
from ups.eval.later_stages import LaterStages, later_dict, later_summary
from ups.eval.report_html import render_html
from ups.resume.atomic import atomic_write_bytes
from ups.resume.tracker import utc_now

REPORT_FORMAT = "ups.eval_report/2"
METRIC_DEFINITION = ("nRMSE = ||pred - true||_2 / ||true||_2 over space, per sample and time (PDEBench), "
                     "averaged over samples; rollout nRMSE averages the per-step curve over the steps; "
                     "one-step nRMSE averages over every (sample, start time) pair")
ENSEMBLE_DEFINITION = ("CRPS per grid point of u with the ensemble as the forecast distribution, averaged over "
                       "points, samples and rollout steps (one member: CRPS = MAE); spread/skill = "
                       "sqrt((M+1)/M * mean ensemble variance) / RMSE of the ensemble mean (1 = calibrated)")


def report_dict(result: EvalResult, files: dict[str, Any], context: dict[str, Any],
                later: Optional[LaterStages] = None) -> dict[str, Any]:
    later = later or LaterStages()
    return {
        "format": REPORT_FORMAT, "created_at": utc_now(), "metric_definition": METRIC_DEFINITION,
        "ensemble_definition": ENSEMBLE_DEFINITION,
        **context, "checkpoints": files, "summary": {**summary(result), **later_summary(later)},
        "split": result.split, "samples": result.n_samples, "rollout_steps": result.rollout_steps,
        "time_stride": result.time_stride, "times": result.times, "x": result.x,
        "methods": {m: {"one_step_nrmse": result.one_step[m], "rollout_nrmse": result.rollout(m),
                        "final_step_nrmse": result.curves[m][-1], "curve": result.curves[m]}
                    for m in result.methods},
        "rollout_curves": rollout_curves(result, later),
        "sample_fields": field_panels(result, later),
        **later_dict(later),
    }


def figure_paths(prefix: Path, report: dict[str, Any]) -> dict[str, Path]:
    return {f"png:{key}": prefix.with_name(fig["file"]) for key, fig in report.get("figures", {}).items()}


def write_reports(prefix: str | Path, result: EvalResult, report: dict[str, Any],
                  later: Optional[LaterStages] = None) -> dict[str, Path]:
    """The PNGs, PREFIX.json, PREFIX.csv and PREFIX.html; returns their paths.

    Adds `figures` (key -> file, title, where its numbers are) to `report` first,
    so the JSON says which picture shows which of its numbers.
    """
    prefix = Path(prefix)
    figures = build_figures(result, later or LaterStages(), report["sample_fields"], report.get("goodput"))
    report["figures"] = {f.key: {"file": f.file_name(prefix), "title": f.title, "numbers": f.json_key}
                         for f in figures}
    paths = {ext: prefix.with_name(prefix.name + f".{ext}") for ext in ("json", "csv", "html")}
    pngs = figure_paths(prefix, report)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for fig in figures:
        atomic_write_bytes(pngs[f"png:{fig.key}"], fig.png)
    atomic_write_bytes(paths["json"], (json.dumps(jsonable(report), indent=2) + "\n").encode())
    atomic_write_bytes(paths["csv"], curves_csv(result).encode())
    atomic_write_bytes(paths["html"], render_html(jsonable(report)).encode())
    return {**paths, **pngs}


def jsonable(obj: Any) -> Any:
    """NaN / inf become null: strict JSON readers (browsers, jq) reject them. Tuples become lists."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def curves_csv(result: EvalResult) -> str:
    """One row per rollout step: step, time, then each method's mean nRMSE."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "time", *[f"nrmse_{m}" for m in result.methods]])
    for k in range(result.rollout_steps):
        w.writerow([k + 1, f"{result.times[k]:.6g}", *[f"{result.curves[m][k]:.6g}" for m in result.methods]])
    return buf.getvalue()
