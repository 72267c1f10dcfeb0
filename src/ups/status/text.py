"""Print the dashboard's facts in the spec's sections, plus what a resumer needs to know.

Sections (as the spec's `show_training_status.py`): Training Stages, Pipeline
Status, WandB Run, Checkpoint Files. Added: for a running, interrupted or
failed stage its progress and the time since its last save; for each output
whether it still verifies against the digest recorded at completion; the
resumable states on disk; the command that continues the run.
"""

from __future__ import annotations

import shlex

from typing import Any, Optional

from ups.status.dashboard import parse_time
from ups.eval.goodput_view import render_lines as goodput_lines
from ups.resume.layout import STAGE_NAMES

RULE, THIN = "=" * 80, "-" * 80
ICONS = {"completed": "✅", "running": "🔄", "in_progress": "🔄", "interrupted": "⏸️", "stopped": "⚠️",
         "failed": "❌", "not_started": "⏸️"}
STATUS_WIDTH, CHECKPOINT_WIDTH = 16, 28
CHECKS = {"verified": ("✅", "verified"), "size-ok": ("✅", "size matches (sha256 not checked)"),
          "unchecked": ("✅", "present (not verified)"), "unrecorded": ("⚠️ ", "no digest recorded"),
          "altered": ("❌", "ALTERED"), "missing": ("❌", "MISSING (recorded at completion)"),
          "absent": ("❌", "not found")}


def format_timestamp(text: Optional[str]) -> str:
    dt = parse_time(text)
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "N/A"


def format_age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "unknown"
    s = int(seconds)
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s ago"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m ago"
    return f"{s // 86400}d {s % 86400 // 3600}h ago"


def format_size(size: Optional[int]) -> str:
    if size is None:
        return "?"
    return f"{size / 2**20:.1f} MB" if size >= 2**20 / 10 else f"{size / 1024:.1f} KB"


def render(facts: dict[str, Any]) -> str:
    lines = ["", RULE, "TRAINING PIPELINE STATUS", RULE, f"Checkpoint Directory: {facts['location']}"]
    lines += [f"⚠️  {w}" for w in facts["warnings"]]
    lines += _trainer(facts.get("trainer"))
    lines += ["", *_stages(facts), "", *_pipeline(facts.get("pipeline") or {})]
    if facts.get("wandb"):
        lines += ["", *_wandb(facts["wandb"])]
    lines += ["", *_files(facts), "", *goodput_lines(facts.get("goodput")), RULE, ""]
    return "\n".join(lines)


def _trainer(trainer: Optional[dict[str, Any]]) -> list[str]:
    if not trainer:
        return []
    if trainer.get("remote"):
        return ["Trainer:              unknown (a remote copy: its trainer's machine is not visible from here)"]
    if trainer.get("alive"):
        return [f"Trainer:              running (pid {trainer['pid']} on {trainer['host']})"]
    if trainer.get("alive") is None:
        return [f"Trainer:              lock held by pid {trainer['pid']} on {trainer['host']} (cannot check from here)"]
    return [f"Trainer:              none running (pid {trainer['pid']} died without releasing its lock)"]


def _stages(facts: dict[str, Any]) -> list[str]:
    lines = ["Training Stages:", THIN,
             f"{'Stage':<22} {'Status':<{STATUS_WIDTH}} {'Checkpoint':<{CHECKPOINT_WIDTH}} Completed", THIN]
    for name in STAGE_NAMES:
        st = facts["stages"][name]
        ckpt = st.get("checkpoint") or "N/A"
        lines.append(f"{name:<22} {status_cell(st['state'])} {ckpt:<{CHECKPOINT_WIDTH}} "
                     f"{format_timestamp(st.get('completed_at'))}")
    pipeline = facts.get("pipeline") or {}
    resume = continue_command(pipeline.get("config_path"), pipeline.get("config_overrides") or [],
                              facts.get("resume_from"))
    for name in STAGE_NAMES:
        lines += _progress(name, facts["stages"][name], resume)
        if facts["stages"][name].get("warning"):
            lines.append(f"  ⚠️  {name}: {facts['stages'][name]['warning']}")
    return lines


def continue_command(config_path: Optional[str], overrides: list[str], resume_from: Optional[str] = None) -> str:
    """The command that continues the run: its config and --set overrides, quoted for a POSIX shell.

    A remote copy continues on another machine: from that remote (`--resume-from URI`).
    """
    sets = [part for item in overrides for part in ("--set", str(item))]
    source = ["--resume-from", resume_from] if resume_from else ["--auto-resume"]
    args = ["python", "scripts/train.py", "--config", config_path or "CONFIG", "--stage", "all", *source]
    text = shlex.join(args + sets)
    return text if config_path else text.replace("CONFIG", "<config>", 1)


def status_cell(state: str) -> str:
    """Icon and word padded to STATUS_WIDTH terminal columns (an emoji icon takes two)."""
    return f"{ICONS.get(state, '?')} {state}" + " " * max(1, STATUS_WIDTH - 3 - len(state))


def _progress(name: str, st: dict[str, Any], resume: str) -> list[str]:
    """For an unfinished stage: how far it got, when it last saved, what happened."""
    if st["state"] in ("completed", "not_started"):
        return []
    out = [f"  {name}: step {st.get('step') or 0}/{st.get('total_steps') or '?'} "
           f"({st.get('epoch') or 0}/{st.get('total_epochs') or '?'} epochs done), started {format_timestamp(st.get('started_at'))}"]
    save = st.get("last_save")
    if save:
        out.append(f"    last save: step {save['step']} ({save['epoch']} epochs done), {format_age(save['seconds_ago'])} "
                   f"at {format_timestamp(save['at'])}")
    else:
        out.append("    last save: none yet (a rerun starts this stage over)")
    if st.get("interrupted_at"):
        out.append(f"    interrupted at {format_timestamp(st['interrupted_at'])} (stopped by a signal after saving)")
    if st["state"] == "stopped":
        out.append("    its trainer is gone without recording an interruption (crash, OOM kill or kill -9)")
    if st.get("error_message"):
        out.append(f"    error: {st['error_message']}")
    if st["state"] != "running":
        out.append(f"    continue with: {resume}")
    return out


def _eval_lines(label: str, result: Any, at: Optional[str]) -> list[str]:
    if not result:
        return [f"{label + ':':<26}❌ Not run"]
    nrmse = result.get("metric:nrmse", "N/A") if isinstance(result, dict) else "N/A"
    shown = f"{nrmse:.4g}" if isinstance(nrmse, float) else str(nrmse)
    out = [f"{label + ':':<26}✅ Run at {format_timestamp(at)}", f"  └─ NRMSE:               {shown}"]
    base = result.get("metric:nrmse_persistence") if isinstance(result, dict) else None
    if isinstance(base, float):
        out.append(f"  └─ persistence NRMSE:   {base:.4g}")
    return out


def _pipeline(p: dict[str, Any]) -> list[str]:
    lines = ["Pipeline Status:", THIN, f"{'Training Complete:':<26}{'✅ Yes' if p.get('trained') else '❌ No'}"]
    if p.get("trained_at"):
        lines.append(f"{'Training Completed At:':<26}{format_timestamp(p['trained_at'])}")
    if p.get("config_hash"):
        lines.append(f"{'Config Hash:':<26}{p['config_hash']}")
    lines += _eval_lines("Small Eval", p.get("last_small_eval"), p.get("last_small_eval_at"))
    lines += _eval_lines("Full Eval", p.get("last_full_eval"), p.get("last_full_eval_at"))
    return lines


def _wandb(w: dict[str, Any]) -> list[str]:
    lines = ["WandB Run:", THIN, f"{'Run ID:':<26}{w.get('id', 'N/A')}", f"{'Run Name:':<26}{w.get('name', 'N/A')}",
             f"{'Project:':<26}{w.get('project', 'N/A')}/{w.get('entity', 'N/A')}"]
    if w.get("mode"):
        lines.append(f"{'Mode:':<26}{w['mode']}")
    if w.get("url"):
        lines.append(f"{'URL:':<26}{w['url']}")
    return lines


def _files(facts: dict[str, Any]) -> list[str]:
    lines = ["Checkpoint Files:", THIN]
    for name in STAGE_NAMES:
        for fname, o in facts["stages"][name]["outputs"].items():
            icon, word = CHECKS[o["check"]]
            size = f"({format_size(o['size'])})" if o["size"] is not None else ""
            extra = f": {o['problem']}" if o.get("problem") else ""
            lines.append(f"  {icon} {fname:<30} {size:<12} {word}{extra}")
    states = [(f, s) for name in STAGE_NAMES for f, s in facts["stages"][name]["states_on_disk"].items()]
    if states:
        lines += ["", "Resumable States:", THIN]
        lines += [f"  {f:<40} ({format_size(s)})" for f, s in states]
    return lines
