"""Write an evaluation as PREFIX.json (everything), PREFIX.csv (the curves), PREFIX.html (to look at).

The HTML page is self-contained: its plots are inline SVG (`ups.eval.svg`), its
style is inline, it loads nothing — it opens offline and can be mailed or
attached to a W&B run as is. Files are written atomically, like checkpoints.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from ups.eval.evaluation import CORRECTED, OPERATOR, PERSISTENCE, EvalResult, summary
from ups.eval.goodput_view import timeline_section
from ups.eval.svg import Series, line_chart
from ups.resume.atomic import atomic_write_bytes
from ups.resume.tracker import utc_now

REPORT_FORMAT = "ups.eval_report/1"
METRIC_DEFINITION = ("nRMSE = ||pred - true||_2 / ||true||_2 over space, per sample and time (PDEBench), "
                     "averaged over samples; rollout nRMSE averages the per-step curve over the steps; "
                     "one-step nRMSE averages over every (sample, start time) pair")
FIELD_METHODS = (OPERATOR, CORRECTED)  # persistence is a flat copy of u(0): not worth a line per panel


def report_dict(result: EvalResult, files: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": REPORT_FORMAT, "created_at": utc_now(), "metric_definition": METRIC_DEFINITION,
        **context, "checkpoints": files, "summary": summary(result),
        "split": result.split, "samples": result.n_samples, "rollout_steps": result.rollout_steps,
        "time_stride": result.time_stride, "times": result.times,
        "methods": {m: {"one_step_nrmse": result.one_step[m], "rollout_nrmse": result.rollout(m),
                        "final_step_nrmse": result.curves[m][-1], "curve": result.curves[m]}
                    for m in result.methods},
    }


def write_reports(prefix: str | Path, result: EvalResult, report: dict[str, Any]) -> dict[str, Path]:
    """PREFIX.json, PREFIX.csv and PREFIX.html; returns their paths."""
    prefix = Path(prefix)
    paths = {ext: prefix.with_name(prefix.name + f".{ext}") for ext in ("json", "csv", "html")}
    atomic_write_bytes(paths["json"], (json.dumps(_jsonable(report), indent=2) + "\n").encode())
    atomic_write_bytes(paths["csv"], curves_csv(result).encode())
    atomic_write_bytes(paths["html"], render_html(result, report).encode())
    return paths


def _jsonable(obj: Any) -> Any:
    """NaN / inf become null: strict JSON readers (browsers, jq) reject them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def curves_csv(result: EvalResult) -> str:
    """One row per rollout step: step, time, then each method's mean nRMSE."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "time", *[f"nrmse_{m}" for m in result.methods]])
    for k in range(result.rollout_steps):
        w.writerow([k + 1, f"{result.times[k]:.6g}", *[f"{result.curves[m][k]:.6g}" for m in result.methods]])
    return buf.getvalue()


def error_chart(result: EvalResult) -> str:
    steps = list(range(1, result.rollout_steps + 1))
    series = [Series(m, steps, result.curves[m], dashed=(m == PERSISTENCE)) for m in result.methods]
    return line_chart(series, "Rollout error vs step (log scale)", "rollout step", "nRMSE", log_y=True)


def field_charts(result: EvalResult) -> list[str]:
    charts = []
    for s in result.samples:
        for k in s.steps:
            series = [Series("true", result.x, s.true[k], dashed=True)]
            series += [Series(m, result.x, s.pred[m][k]) for m in FIELD_METHODS if m in s.pred]
            t = result.times[k - 1]
            charts.append(line_chart(series, f"sample {s.index}, step {k} (t = {t:.3g})", "x", "u",
                                     width=380, height=260))
    return charts


def _summary_rows(result: EvalResult) -> str:
    rows = []
    for m in result.methods:
        rows.append(f"<tr><td>{html.escape(m)}</td><td>{result.one_step[m]:.4g}</td>"
                    f"<td>{result.rollout(m):.4g}</td><td>{result.curves[m][-1]:.4g}</td></tr>")
    return "\n".join(rows)


def _checkpoint_rows(report: dict[str, Any]) -> str:
    rows = []
    for role, f in report.get("checkpoints", {}).items():
        rows.append(f"<tr><td>{html.escape(role)}</td><td><code>{html.escape(str(f.get('path')))}</code></td>"
                    f"<td>{html.escape(str(f.get('stage')))}</td><td>{f.get('step')}</td>"
                    f"<td><code>{html.escape(str(f.get('sha256', ''))[:16])}</code></td></tr>")
    return "\n".join(rows)


STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
.fields{display:flex;flex-wrap:wrap;gap:8px}.note{color:#555;font-size:13px;max-width:60em}"""


def render_html(result: EvalResult, report: dict[str, Any]) -> str:
    s = report["summary"]
    verdict = ("beats" if s["metric:nrmse"] < s["metric:nrmse_persistence"] else "does NOT beat")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ups evaluation — {html.escape(result.split)}</title>
<style>{STYLE}</style></head><body>
<h1>Evaluation on the {html.escape(result.split)} split</h1>
<p>{result.n_samples} samples, {result.rollout_steps} rollout steps (data.time_stride={result.time_stride}),
created {html.escape(report['created_at'])}. The operator's rollout nRMSE is
<b>{s['metric:nrmse']:.4g}</b>; persistence: {s['metric:nrmse_persistence']:.4g} — the operator {verdict} persistence.</p>
<table><tr><th>method</th><th>one-step nRMSE</th><th>rollout nRMSE</th><th>final-step nRMSE</th></tr>
{_summary_rows(result)}</table>
<p class="note">{html.escape(METRIC_DEFINITION)}.</p>
<h2>Error vs rollout step</h2>
<div id="error-vs-step">{error_chart(result)}</div>
<h2>Predicted vs true fields</h2>
<div id="fields" class="fields">{''.join(field_charts(result)) or '<p>(eval.plot_samples is 0)</p>'}</div>
<h2>Checkpoints</h2>
<table><tr><th>role</th><th>file</th><th>stage</th><th>step</th><th>sha256</th></tr>
{_checkpoint_rows(report)}</table>
{timeline_section(report.get("goodput"))}</body></html>
"""
