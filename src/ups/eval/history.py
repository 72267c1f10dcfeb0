"""Training and validation loss curves per stage, read from a run's `metrics.jsonl`.

The log is the record training leaves in `checkpoint_dir` (trimmed on resume, so
it reads like an uninterrupted run). A line that is not a loss record — a torn
last line of a killed run, a record of another kind — is skipped, not fatal: a
report about the weights must not fail over the log.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ups.resume.layout import STAGE_NAMES

Curves = dict[str, dict[str, dict[str, list[float]]]]  # stage -> kind (train/val) -> {"step", "loss"}


def loss_curves(path: Path) -> Curves:
    """{stage: {kind: {"step": [...], "loss": [...]}}} in the file's order; {} if there is no file."""
    path = Path(path)
    if not path.is_file():
        return {}
    curves: Curves = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            stage, kind, step, loss = rec["stage"], rec["kind"], int(rec["step"]), float(rec["loss"])
        except (ValueError, KeyError, TypeError):
            continue
        if not math.isfinite(loss):
            continue
        series = curves.setdefault(stage, {}).setdefault(kind, {"step": [], "loss": []})
        series["step"].append(step)
        series["loss"].append(loss)
    order = {s: i for i, s in enumerate(STAGE_NAMES)}
    return dict(sorted(curves.items(), key=lambda kv: order.get(kv[0], len(order))))


def last_loss(curves: Curves, stage: str, kind: str) -> float:
    series = curves.get(stage, {}).get(kind)
    return series["loss"][-1] if series and series["loss"] else math.nan
