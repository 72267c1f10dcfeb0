"""What interruptions cost a pipeline run: the accounting record and its summary, as pure functions.

A pipeline run is one or more *attempts* (processes), on one machine or several.
The record lives in `stage_status.json` under `details.goodput` (additive: the
seed's schema is untouched), so it travels wherever the status goes, the remote
copy included, and a fresh machine continues the same record. Each attempt is
written while it runs (a heartbeat, and at every stage boundary and exit), so an
attempt that was killed without a word (SIGKILL, OOM killer, lost machine) is
still in the record: the next attempt finds it `running` and calls it `killed`.

Per attempt: wall time (process start to its last record), start-up (process
start to its first finished step: the restart cost when it resumed), step time
(the training steps, save waits excluded), the time the training thread was
blocked by saves, background upload time, and where it got to. Per interruption:
how it ended (`killed`, `sigterm`, `sigint`, `failure`), whether the run went on
on another machine (`relaunch`: an outbid or lost instance replaced), and the
work redone after it (the steps between the last durable state and where the
attempt got, in steps and seconds of that attempt's step time). For a killed
attempt "where it got" is its last heartbeat, so the redone work is a lower bound
by at most one heartbeat interval.

goodput = (step time − redone step time) ÷ wall time of all attempts.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

GOODPUT_KEY = "goodput"  # under `details` in stage_status.json
RECORD_VERSION = 1
RUNNING, COMPLETED, KILLED, SIGTERM, SIGINT, FAILURE = "running", "completed", "killed", "sigterm", "sigint", "failure"
INTERRUPTION_KINDS = (KILLED, SIGTERM, SIGINT, FAILURE)
# A person's Ctrl-C is not the machine failing: it does not feed the MTBF.
FAILURE_KINDS = (KILLED, SIGTERM, FAILURE)
RELAUNCH = "relaunch"


def empty_record() -> dict[str, Any]:
    return {"version": RECORD_VERSION, "attempts": [], "interruptions": []}


def valid_record(raw: Any) -> dict[str, Any]:
    """The record as stored, or a fresh one if it is missing or not one we can read."""
    if not isinstance(raw, dict) or raw.get("version") != RECORD_VERSION:
        return empty_record()
    if not isinstance(raw.get("attempts"), list) or not isinstance(raw.get("interruptions"), list):
        return empty_record()
    return copy.deepcopy(raw)


def new_attempt(number: int, *, host: str, pid: int, started_at: str) -> dict[str, Any]:
    return {
        "attempt": number, "host": host, "pid": pid, "started_at": started_at, "last_seen_at": started_at,
        "end": RUNNING, "wall_s": 0.0, "startup_s": None, "step_s": 0.0, "steps": 0, "save_blocked_s": 0.0,
        "saves": 0, "periodic_save_s": 0.0, "periodic_saves": 0, "upload_s": 0.0,
        "stages": {}, "at": None, "resumed": None,
    }


def close_unfinished(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Attempts still `running` ended without a word: mark them `killed`. Returns the new interruptions."""
    added = []
    for attempt in record["attempts"]:
        if attempt["end"] == RUNNING:
            attempt["end"] = KILLED
            added.append(interruption_of(attempt))
    record["interruptions"].extend(added)
    return added


def interruption_of(attempt: dict[str, Any]) -> dict[str, Any]:
    return {"attempt": attempt["attempt"], "kind": attempt["end"], "at": attempt["last_seen_at"],
            "reached": attempt.get("at"), "relaunch": False, "recomputed_steps": None, "recomputed_s": None,
            "restart_s": None}


def begin_attempt(record: dict[str, Any], *, host: str, pid: int, started_at: str) -> dict[str, Any]:
    """Close what the last attempts left open, then append this one; an interruption followed by a
    start on another machine is a relaunch (an outbid or lost instance replaced)."""
    close_unfinished(record)
    previous = record["attempts"][-1] if record["attempts"] else None
    if previous is not None and previous["host"] != host:
        for item in record["interruptions"]:
            if item["attempt"] == previous["attempt"]:
                item["relaunch"] = True
    attempt = new_attempt(len(record["attempts"]) + 1, host=host, pid=pid, started_at=started_at)
    record["attempts"].append(attempt)
    return attempt


def end_attempt(record: dict[str, Any], attempt: dict[str, Any], end: str) -> None:
    attempt["end"] = end
    if end in INTERRUPTION_KINDS:
        record["interruptions"].append(interruption_of(attempt))


def settle_recomputation(record: dict[str, Any], stage: str, resumed_step: int, restart_s: float) -> None:
    """This attempt resumed `stage` at `resumed_step`: price the interruptions that left work there."""
    by_number = {a["attempt"]: a for a in record["attempts"]}
    for item in record["interruptions"]:
        reached = item.get("reached") or {}
        if item["recomputed_steps"] is not None or reached.get("stage") != stage:
            continue
        steps = max(0, int(reached.get("step") or 0) - resumed_step)
        item["recomputed_steps"] = steps
        item["recomputed_s"] = steps * mean_step_s(by_number.get(item["attempt"]), stage)
        item["restart_s"] = restart_s


def mean_step_s(attempt: Optional[dict[str, Any]], stage: str) -> float:
    own = ((attempt or {}).get("stages") or {}).get(stage) or {}
    if own.get("steps"):
        return own["step_s"] / own["steps"]
    if attempt and attempt.get("steps"):
        return attempt["step_s"] / attempt["steps"]
    return 0.0


def failures(record: dict[str, Any]) -> int:
    return sum(1 for item in record["interruptions"] if item["kind"] in FAILURE_KINDS)


def exposure_s(record: dict[str, Any]) -> float:
    return sum(float(a.get("wall_s") or 0.0) for a in record["attempts"])


def save_cost_s(record: dict[str, Any], current: Optional[dict[str, Any]] = None) -> Optional[float]:
    """Mean blocking seconds per periodic save: this attempt's own once it has one (its machine's disk
    and model), else the whole run's; None before any periodic save was measured."""
    for group in ([current] if current else []) + [record["attempts"]]:
        attempts = group if isinstance(group, list) else [group]
        n = sum(a.get("periodic_saves") or 0 for a in attempts)
        if n:
            return sum(a.get("periodic_save_s") or 0.0 for a in attempts) / n
    return None


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """The totals a dashboard shows: goodput and where the rest of the wall time went."""
    attempts, items = record["attempts"], record["interruptions"]
    wall = exposure_s(record)
    step = sum(a["step_s"] for a in attempts)
    recomputed = sum(i["recomputed_s"] or 0.0 for i in items)
    startup = sum(a["startup_s"] or 0.0 for a in attempts)
    restart = sum(a["startup_s"] or 0.0 for a in attempts[1:])
    blocked = sum(a["save_blocked_s"] for a in attempts)
    counts = {kind: sum(1 for i in items if i["kind"] == kind) for kind in INTERRUPTION_KINDS}
    counts[RELAUNCH] = sum(1 for i in items if i.get("relaunch"))
    useful = max(0.0, step - recomputed)
    return {
        "goodput": useful / wall if wall > 0 else None,
        "wall_s": wall, "useful_s": useful, "step_s": step,
        "recomputed_s": recomputed, "recomputed_steps": sum(i["recomputed_steps"] or 0 for i in items),
        "startup_s": startup, "restart_s": restart, "save_blocked_s": blocked,
        "other_s": max(0.0, wall - step - startup - blocked),
        "upload_s": sum(a.get("upload_s") or 0.0 for a in attempts),
        "attempts": len(attempts), "interruptions": counts,
        "save_cost_s": save_cost_s(record),
    }
