"""Outputs that no recorded digest vouches for: check them before a stage is skipped.

A status file in the seed's schema (or one written through the bare StageTracker API)
marks a stage `completed` without the digests of its outputs. Such a stage is skipped
only once each of its files exists, loads as that stage's output and was written for
the fingerprint the config gives now; the caller then records their digests, so the
next resume verifies them like any others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

from ups.errors import CheckpointError, one_line


def unrecorded_output_problems(checkpoint_dir: Path, stage: str, names: Iterable[str],
                               fingerprint: Optional[str]) -> list[str]:
    """Why the stage's unrecorded outputs cannot be trusted (empty: they can)."""
    from ups.resume.files import load_output  # torch: only when such a stage is met

    problems = []
    for name in names:
        path = Path(checkpoint_dir) / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        try:
            obj: dict[str, Any] = load_output(path, stage)
        except CheckpointError as e:
            problems.append(f"{name} does not load ({one_line(e, limit=120)})")
            continue
        recorded = obj.get("fingerprint")
        if fingerprint is not None and recorded is not None and recorded != fingerprint:
            problems.append(f"{name} was written for a different config or upstream")
    return problems

