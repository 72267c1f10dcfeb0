"""Decide, for each stage, whether to skip it, continue it, or run it — and say why.

Pure policy over facts gathered elsewhere (status entry, verification of the
outputs on disk, the fingerprint the config now gives). Checks go cheap first,
each with its reason, in the manner of DVC's `changed_config() or
changed_inputs() or changed_outputs()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ups.identity import digest_of
from ups.errors import one_line

SKIP, CONTINUE, RUN, DISABLED = "skip", "continue", "run", "disabled"


@dataclass(frozen=True)
class StageFacts:
    """What is known about one stage before deciding."""

    name: str
    epochs: int
    status: str  # not_started | in_progress | completed | failed
    recorded_fingerprint: Optional[str]
    recorded_config: Optional[dict[str, Any]]
    config: dict[str, Any]  # the stage's flattened config now
    fingerprint: Optional[str]  # None while an upstream is about to rerun
    output_problems: tuple[str, ...] = ()  # why the recorded outputs do not verify
    has_digests: bool = True  # False: completed in the seed's schema; output_problems says if its files load
    saved_step: Optional[int] = None  # step of the resumable state recorded for this stage
    error_message: Optional[str] = None
    pending_upstream: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    stage: str
    action: str
    reason: str
    from_step: Optional[int] = None
    warnings: tuple[str, ...] = field(default=())
    record_digests: bool = False  # skipped on files checked now: record their digests


def fingerprint(config: dict[str, Any], upstream_digests: dict[str, dict[str, str]]) -> str:
    """A stage's identity: its config and the digests of the upstream files it reads."""
    return digest_of({"config": config, "upstream": upstream_digests})


def changed_keys(old: Optional[dict[str, Any]], new: dict[str, Any]) -> list[str]:
    """`key: old → new` for each flattened key that differs."""
    if old is None:
        return []
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key, "<unset>") != new.get(key, "<unset>"):
            out.append(f"{key}: {old.get(key, '<unset>')!r} → {new.get(key, '<unset>')!r}")
    return out


def decide(f: StageFacts, auto_resume: bool) -> Decision:
    if f.epochs <= 0:
        return Decision(f.name, DISABLED, "epochs<=0")
    if not auto_resume:
        return Decision(f.name, RUN, "fresh start (no --auto-resume)")
    if f.pending_upstream:
        return Decision(f.name, RUN, f"runs after upstream {_names(f.pending_upstream)} finishes training")
    if f.status == "completed":
        return _decide_completed(f)
    if f.status in ("in_progress", "failed"):
        return _decide_unfinished(f)
    return Decision(f.name, RUN, "not started yet")


def _decide_completed(f: StageFacts) -> Decision:
    if f.output_problems:
        return Decision(f.name, RUN, "completed, but " + "; ".join(f.output_problems))
    if not f.has_digests:
        # The status alone proves nothing: output_problems came from loading the files.
        warn = (f"{f.name}: completed without recorded digests (written by an older tool or the bare "
                "StageTracker API); its files exist and load, recording their digests now")
        return Decision(f.name, SKIP, "completed (no recorded digests; files checked, digests recorded now)",
                        warnings=(warn,), record_digests=True)
    stale = _staleness(f)
    if stale:
        return Decision(f.name, RUN, "completed, but " + stale)
    return Decision(f.name, SKIP, "completed, outputs verified")


def _decide_unfinished(f: StageFacts) -> Decision:
    was = "interrupted" if f.status == "in_progress" else f"failed ({_short(f.error_message)})"
    if f.saved_step is None:
        return Decision(f.name, RUN, f"{was} before any state was saved; starting over")
    stale = _staleness(f)
    if stale:
        return Decision(f.name, RUN, f"{was}, but its saved state is stale: {stale}; starting over")
    return Decision(f.name, CONTINUE, f"{was}; continuing from step {f.saved_step}", from_step=f.saved_step)


def _staleness(f: StageFacts) -> str:
    """Why the recorded fingerprint no longer matches, or '' when it does (or none was recorded)."""
    if f.recorded_fingerprint is None or f.recorded_fingerprint == f.fingerprint:
        return ""
    keys = changed_keys(f.recorded_config, f.config)
    if keys:
        shown = ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
        return f"config changed: {shown}"
    return "upstream outputs changed"


def _names(stages: tuple[str, ...]) -> str:
    return ", ".join(f"'{s}'" for s in stages)


def _short(text: Optional[str], limit: int = 80) -> str:
    return one_line(text or "", limit=limit) or "error"
