"""Goodput for people: the dashboard's section, its JSON facts, and the report's timeline of attempts.

Everything is read from the record in the status file (`details.goodput`, see
`ups.resume.goodput`), so it works on a local directory, a copy or the remote
store, and on a directory a trainer is writing right now. The report's timeline of
attempts is a matplotlib PNG like its other figures (`timeline_bars` gives the
numbers, `ups.eval.plots.attempts_png` draws them).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from ups.resume import goodput as gp
from ups.resume.layout import STATUS_FILE


def goodput_facts(status: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The summary and the per-attempt rows the dashboard prints (None: nothing recorded yet)."""
    raw = (status.get("details") or {}).get(gp.GOODPUT_KEY)
    if raw is None:
        return None
    record = gp.valid_record(raw)
    if not record["attempts"]:
        return None
    keys = ("attempt", "host", "started_at", "end", "wall_s", "startup_s", "step_s", "steps", "save_blocked_s",
            "upload_s", "resumed", "at")
    return {**gp.summarize(record), "timeline": [{k: a.get(k) for k in keys} for a in record["attempts"]],
            "interruption_list": record["interruptions"]}


def read_record(checkpoint_dir: Path) -> Optional[dict[str, Any]]:
    """The record of a local checkpoint directory, for the evaluation report (None when absent)."""
    import json

    try:
        status = json.loads((Path(checkpoint_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    raw = (status.get("details") or {}).get(gp.GOODPUT_KEY) if isinstance(status, dict) else None
    return gp.valid_record(raw) if raw is not None else None


def render_lines(facts: Optional[dict[str, Any]]) -> list[str]:
    """The dashboard's GOODPUT section."""
    if not facts:
        return ["GOODPUT", "-" * 80, "  (no attempt recorded yet)"]
    value = "n/a" if facts["goodput"] is None else f"{facts['goodput']:.1%}"
    kinds = ", ".join(f"{n} {k}" for k, n in facts["interruptions"].items() if n) or "none"
    cost = facts.get("save_cost_s")
    lines = ["GOODPUT", "-" * 80,
             f"  {value} of {_s(facts['wall_s'])} over {facts['attempts']} attempt(s) was useful training "
             f"({_s(facts['useful_s'])})",
             f"  interruptions: {kinds}",
             f"  lost: redone work {_s(facts['recomputed_s'])} ({facts['recomputed_steps']} steps), "
             f"start-ups {_s(facts['startup_s'])} (restarts {_s(facts['restart_s'])}), "
             f"blocked by saves {_s(facts['save_blocked_s'])}, other {_s(facts['other_s'])}",
             f"  uploads (in the background): {_s(facts['upload_s'])}"
             + (f"; mean blocking cost of a save {cost * 1000:.1f} ms" if cost is not None else "")]
    for a in facts["timeline"]:
        where = f"{a['at']['stage']} step {a['at']['step']}" if a.get("at") else "no step"
        lines.append(f"  #{a['attempt']:<3} {a['end']:<10} {_s(a['wall_s']):>9}  start-up "
                     f"{_s(a['startup_s'] or 0):>8}  steps {a['steps']:>6} ({_s(a['step_s'])})  reached {where}")
    return lines


def timeline_bars(record: Optional[dict[str, Any]]) -> list[dict[str, Any]]:
    """One bar per attempt on a shared clock (seconds from the first start): its label, start,
    segments (start-up, steps, saves, other) and how it ended. A gap between bars is time
    with no process running, e.g. a replacement machine being found. [] when none."""
    if not record or not record.get("attempts"):
        return []
    attempts = record["attempts"]
    starts = [_epoch(a["started_at"]) for a in attempts]
    t0 = min(starts)
    return [{"label": f"#{a['attempt']} {a.get('host', '')}"[:16], "start_s": start - t0,
             "segments": dict(_segments(a)), "end": a.get("end", "?")} for a, start in zip(attempts, starts)]


def timeline_note(record: Optional[dict[str, Any]]) -> str:
    """The sentence under the report's timeline ('' when nothing is recorded)."""
    if not record or not record.get("attempts"):
        return ""
    s = gp.summarize(record)
    value = "n/a" if s["goodput"] is None else f"{s['goodput']:.1%}"
    return (f"Goodput {value}: {s['useful_s']:.1f} s of useful training in {s['wall_s']:.1f} s over "
            f"{s['attempts']} attempt(s). Bars: start-up, steps, saves, other; the label says how each "
            "attempt ended.")


def _segments(a: dict[str, Any]) -> list[tuple[str, float]]:
    wall = float(a.get("wall_s") or 0.0)
    startup, steps, saves = (float(a.get(k) or 0.0) for k in ("startup_s", "step_s", "save_blocked_s"))
    return [("startup", startup), ("steps", steps), ("saves", saves),
            ("other", max(0.0, wall - startup - steps - saves))]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


def _s(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"
