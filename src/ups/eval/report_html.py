"""The HTML page of an evaluation, rendered from the report's JSON dict and nothing else.

Reading only the dict is what makes "the JSON carries every number the page
shows" true by construction. Pictures are `<img>` elements naming the PNG files
written beside the page; each says (`data-json`) which JSON key holds its numbers.
"""

from __future__ import annotations

import html
from typing import Any, Iterable, Optional
from urllib.parse import quote

from ups import stages
from ups.eval.goodput_view import timeline_note

STAGES = stages.names()
ENSEMBLE_COLUMNS = (("crps", "CRPS"), ("crps_fair", "fair CRPS"), ("spread", "spread"), ("skill_rmse", "skill (RMSE)"),
                    ("spread_skill", "spread/skill"), ("nrmse_of_mean", "mean's rollout nRMSE"),
                    ("denoiser_evals_per_draw", "denoiser evals / draw"), ("seconds_per_draw", "s / draw"),
                    ("seconds_per_trajectory", "s / sampled trajectory"),
                    ("spread_inflation", "spread × (fitted on val)"))
STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
img{max-width:100%;height:auto;border:1px solid #eee;margin:6px 0}.note{color:#555;font-size:13px;max-width:60em}
.met{color:#176c2c;font-weight:600}.unmet{color:#b3261e;font-weight:600}section{margin-bottom:28px}"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def num(value: Any) -> str:
    """A number as the page shows it; null (NaN in the results) as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return esc(value)


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>\n{body}</table>"


def image(report: dict[str, Any], key: str) -> str:
    fig = report.get("figures", {}).get(key)
    if fig is None:
        return ""
    return (f'<figure id="fig-{esc(key)}"><img src="{esc(quote(fig["file"]))}" alt="{esc(fig["title"])}" '
            f'data-json="{esc(fig["numbers"])}"><figcaption class="note">{esc(fig["title"])} '
            f'(numbers: <code>{esc(fig["numbers"])}</code> in the JSON)</figcaption></figure>')


def goals_table(goals: list[dict[str, Any]], stage: Optional[str] = None) -> str:
    rows = [[esc(g["stage"]), esc(g["name"]), f'<span class="{"met" if g["met"] else "unmet"}">'
             f'{"met" if g["met"] else "NOT met"}</span>', esc(g["target"]), num(g["value"]), esc(g["text"])]
            for g in goals if stage is None or g["stage"] == stage]
    return table(["stage", "goal", "verdict", "target", "value", "measured"], rows) if rows else ""


def losses(report: dict[str, Any], stage: str) -> str:
    curves = report.get("loss_curves", {}).get(stage)
    if not curves:
        return '<p class="note">(no loss records for this stage in metrics.jsonl)</p>'
    rows = [[esc(kind), num(len(c["step"])), num(c["step"][-1]), num(c["loss"][-1]), num(min(c["loss"]))]
            for kind, c in curves.items()]
    return table(["loss", "records", "last step", "last", "lowest"], rows) + image(report, f"loss_{stage}")


def operator_section(report: dict[str, Any]) -> str:
    rows = [[esc(m), num(v["one_step_nrmse"]), num(v["rollout_nrmse"]), num(v["final_step_nrmse"])]
            for m, v in report["methods"].items()]
    return (table(["method", "one-step nRMSE", "rollout nRMSE", "final-step nRMSE"], rows)
            + f'<p class="note">{esc(report["metric_definition"])}.</p>' + image(report, "rollout")
            + image(report, "fields"))


# The stages sampled around the first stage's rollout (those reading it first), in pipeline
# order; the ensemble figure draws all of them, so it goes once, under the first one's section.
SAMPLED = tuple(s.name for s in stages.STAGES if s.upstream[:1] == (stages.STAGES[0].name,))


def ensemble_section(report: dict[str, Any], stage: str) -> str:
    ens = report.get("ensemble")
    if not ens or stage not in ens["methods"]:
        return '<p class="note">(not measured: no file of this stage beside the operator, or eval.ensemble_size=0)</p>'
    names = [*stages.get(stage).upstream, stage]  # the stage beside what it builds on
    rows = [[esc(n), num(ens["methods"][n]["members"])] + [num(ens["methods"][n].get(k)) for k, _ in ENSEMBLE_COLUMNS]
            for n in names if n in ens["methods"]]
    intro = (f'<p>{ens["samples"]} samples, {ens["members"]} sampled rollouts each, {ens["rollout_steps"]} steps, '
             f'on {esc(ens["device"])}. {esc(report["ensemble_definition"])}.</p>')
    return intro + table(["method", "members", *[label for _, label in ENSEMBLE_COLUMNS]], rows) + \
        (image(report, "ensemble") if stage == SAMPLED[0] else "")


def prior_section(report: dict[str, Any]) -> str:
    prior = report.get("steady_prior")
    if not prior:
        return '<p class="note">(not measured: no steady_prior.pt beside the operator)</p>'
    rows = [[esc(name), *(f'{num(r[k])} ± {num(r.get(k + "_std", 0.0))}' for k in ("spectrum_distance", "mmd")),
             str(r.get("draws", 1))] for name, r in prior["rows"].items()]
    return (f'<p>{prior["n_states"]} held-out long-time states (time index ≥ {prior["first_time"]}); MMD with a '
            f'Gaussian kernel of width {num(prior["mmd_bandwidth"])} (median pairwise distance of the held-out '
            f'states); spectrum distance = mean |log10 E(k) ratio| over k ≥ 1. <code>gaussian_fit</code>: mean and '
            f'covariance of the training long-time states; <code>train_states</code>: those states themselves '
            f'(the floor). A drawn row is the mean ± std over its draws.</p>'
            + table(["samples from", "spectrum distance", "MMD", "draws"], rows) + image(report, "prior"))


SECTION = {"operator": operator_section, "steady_prior": prior_section,
           "diff_residual": lambda r: ensemble_section(r, "diff_residual"),
           "consistency_distill": lambda r: ensemble_section(r, "consistency_distill")}


def headline(report: dict[str, Any]) -> str:
    s = report["summary"]
    verdict = "beats" if s["metric:nrmse"] < s["metric:nrmse_persistence"] else "does NOT beat"
    failed = [g for g in report.get("goals", []) if not g["met"]]
    goals = (f'<p class="unmet">{len(failed)} of {len(report["goals"])} goals NOT met:</p><ul>'
             + "".join(f"<li>{esc(g['stage'])}: {esc(g['text'])}</li>" for g in failed) + "</ul>") if failed else \
        ('<p class="met">Every goal checked is met.</p>' if report.get("goals") else "")
    return (f'<p>{report["samples"]} samples, {report["rollout_steps"]} rollout steps '
            f'(data.time_stride={report["time_stride"]}), created {esc(report["created_at"])}. The operator\'s '
            f'rollout nRMSE is <b>{num(s["metric:nrmse"])}</b>; persistence: {num(s["metric:nrmse_persistence"])} '
            f'— the operator {verdict} persistence.</p>' + goals + goals_table(report.get("goals", [])))


def protocol_section(report: dict[str, Any]) -> str:
    """PDEBench's protocol (given frames, autoregressive prediction), mean and median over samples."""
    pr = report.get("protocol")
    if not pr:
        return ""
    rows = [[esc(m), num(v["mean"]), num(v["median"]), num(v["final_frame_mean"])]
            for m, v in sorted(pr["methods"].items(), key=lambda kv: kv[1]["mean"])]
    return (f'<section id="protocol"><h2>PDEBench protocol</h2><p class="note">{pr["given"]} given frames, '
            f'{pr["predicted"]} predicted autoregressively (every {pr["time_stride"]}th frame), '
            f'{pr["samples"]} test trajectories; nRMSE per sample as PDEBench\'s metrics.py computes it.</p>'
            + table(["method", "mean nRMSE", "median nRMSE", "final-frame nRMSE (mean)"], rows) + "</section>")


def attempts_section(report: dict[str, Any]) -> str:
    """The training attempts' timeline ('' when the files came with no goodput record)."""
    note = timeline_note(report.get("goodput"))
    if not note:
        return ""
    return f'<section id="attempts"><h2>Training attempts</h2><p class="note">{esc(note)}</p>' \
           f'{image(report, "attempts")}</section>\n'


def render_html(report: dict[str, Any]) -> str:
    sections = "".join(f'<section id="stage-{stage}"><h2>{esc(stage)}</h2>{goals_table(report.get("goals", []), stage)}'
                       f'{SECTION[stage](report)}<h3>loss curves</h3>{losses(report, stage)}</section>'
                       for stage in STAGES)
    ckpt = [[esc(role), f"<code>{esc(f.get('path'))}</code>", esc(f.get("stage")), num(f.get("step")),
             f"<code>{esc(str(f.get('sha256', ''))[:16])}</code>"] for role, f in report.get("checkpoints", {}).items()]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ups evaluation — {esc(report['split'])}</title>
<style>{STYLE}</style></head><body>
<h1>Evaluation on the {esc(report['split'])} split</h1>
{headline(report)}
{protocol_section(report)}
{sections}
<h2>Checkpoints</h2>
{table(["role", "file", "stage", "step", "sha256"], ckpt)}
{attempts_section(report)}</body></html>
"""
