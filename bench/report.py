"""One result row, and the two files a harness run leaves: RESULTS.md and results.json.

A row carries its own verdict (`met`) and, when the target is missed, the
measured reason and the next step, so the report can never show a red row
without saying why.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

COMPARE = {"<=": lambda x, t: x <= t, ">=": lambda x, t: x >= t, "==": lambda x, t: x == t}
SYMBOL = {"<=": "≤", ">=": "≥", "==": "="}


@dataclass
class Row:
    key: str                      # `python -m bench --only <key>` reruns it
    metric: str
    measured: float
    reference: Optional[float]
    unit: str                     # of measured / reference
    ratio: float
    op: str                       # "<=", ">=", "==", or "" for a row shown for comparison only
    target: Optional[float]
    commands: list[str] = field(default_factory=list)   # the exact runs behind the row
    notes: str = ""                                     # what was measured, in words
    miss: str = ""                                      # reason and next step when not met
    samples: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> Optional[bool]:
        if not self.op or self.target is None or math.isnan(self.ratio):
            return None
        return COMPARE[self.op](round(self.ratio, 3), self.target)


def fmt(x: Optional[float], unit: str = "") -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    text = f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{text} {unit}".strip()


def markdown(rows: list[Row], meta: dict[str, Any], diagnostics: dict[str, Any]) -> str:
    verdict = {True: "✅ yes", False: "❌ no", None: "—"}
    lines = [
        "# Benchmarks: what resume costs and what it saves", "",
        f"Written by `{meta['command']}` on {meta['date']} ({meta['machine']}; "
        f"load average {meta['load_before']} before, {meta['load_after']} after; {meta['seconds']:.0f} s in all).",
        "Each ratio is measured in the same run as its reference, the two alternated (ABBA) "
        "and repeated; the ratio is the median of the paired ratios.", "",
        "| # | metric | measured | reference | ratio | target | met? | reproduce |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        target = f"{SYMBOL[r.op]} {r.target:g}" if r.op and r.target is not None else "(comparison)"
        lines.append(f"| {i} | {r.metric} | {fmt(r.measured, r.unit)} | {fmt(r.reference, r.unit)} | "
                     f"{r.ratio:.3f} | {target} | {verdict[r.met]} | `python -m bench --only {r.key}` |")
    missed = [r for r in rows if r.met is False]
    lines += ["", "## Targets not met", ""]
    lines += [f"- **{r.metric}**: {r.ratio:.3f}, target {SYMBOL[r.op]} {r.target:g}. "
              f"{_sentence(r.miss) or 'No diagnosis recorded.'}" for r in missed] or ["None."]
    lines += ["", "## What each row measured", ""]
    for i, r in enumerate(rows, 1):
        lines.append(f"{i}. **{r.metric}.** {r.notes}")
        lines += [f"   - `{c}`" for c in r.commands]
    if diagnostics:
        lines += ["", "## Diagnostics", ""]
        lines += [f"- {k}: {fmt(v) if isinstance(v, (int, float)) else v}" for k, v in diagnostics.items()]
    return "\n".join(lines) + "\n"


def write_results(out: Path, rows: list[Row], meta: dict[str, Any], diagnostics: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "RESULTS.md").write_text(markdown(rows, meta, diagnostics), encoding="utf-8")
    payload = {"meta": meta, "rows": [{**asdict(r), "met": r.met} for r in rows], "diagnostics": diagnostics}
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return out / "RESULTS.md"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _jsonable(x: Any) -> Any:
    return str(x)
