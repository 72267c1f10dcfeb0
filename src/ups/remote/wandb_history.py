"""Keep the W&B run's history equal to an uninterrupted run's across resumes.

A resumed stage redoes the work logged after its last saved state; `metrics.jsonl` drops
those lines (`MetricsLogger.truncate`), and this module makes the W&B run drop them too.
Each metrics line records the W&B `_step` it was logged at (`wandb_step`). Before the
run starts, the status and the metrics log tell which lines the resume keeps; the last
kept line's `_step` K is where the run continues:

- continuing the run: `wandb.init(id=X, resume_from="X?_step=K")` (a rewind: the server
  drops the steps after K; wandb-core logs on from K + 1, core/internal/runbranch/rewind.go
  in wandb/wandb). Always, not only when this machine's log shows lines after K: after a
  download the log is the remote copy's, older than the run's last lines, and offline a
  plain resume would restart the steps at 0 (a rewind recorded offline continues them and
  is applied by `wandb sync`);
- `--resume-mode never`: a new run `fork_from="X?_step=K"`, which starts with X's history
  up to K (core/internal/runbranch/fork.go).

`resume`, `resume_from` and `fork_from` are mutually exclusive (wandb/sdk/wandb_settings.py
`validate_fork_from` and its neighbours), so a branching start passes no `resume`, and
`WANDB_RESUME` is taken out of the environment before the SDK's first setup reads it
(`ups.remote.wandb_run.export_mode`; removing it later has no effect). A server without
the feature refuses the rewind or the fork: the run then resumes plainly (or starts
without the history) with a warning that names the steps which will appear twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

WANDB_STEP = "wandb_step"  # the key in each metrics.jsonl line


def logged_step(run: Any) -> Optional[int]:
    """The `_step` of the line just logged to `run`.

    `run.step` is "the W&B step of the next log() call"; right after a resume it reads 0
    until the first log (wandb 0.31), so it is read after the log, not before.
    """
    try:
        return int(run.step) - 1
    except Exception:  # noqa: BLE001 - a shared-mode run or a stand-in without steps: not recorded
        return None


@dataclass(frozen=True)
class HistoryPoint:
    kept: Optional[int]  # W&B step of the last metrics line the resume keeps (None: none or unknown)
    last: Optional[int]  # W&B step of the last metrics line logged
    dropped_global: tuple[int, int] | None  # trainer/global_step range of the lines that will be redone

    @property
    def discards(self) -> bool:
        return self.kept is not None and self.last is not None and self.last > self.kept


def _kept_after(statuses: dict[str, Any]) -> dict[str, Optional[int]]:
    """Per stage, the last step whose line a resume keeps (None: all of them)."""
    out: dict[str, Optional[int]] = {}
    for name, st in statuses.items():
        if st.status == "completed":
            out[name] = None
        else:  # resumed from its recorded state, or started over (`truncate(after_step=0)`)
            out[name] = int((st.resume_state or {}).get("step") or 0)
    return out


def history_point(checkpoint_dir: Path) -> HistoryPoint:
    """What a resume from `checkpoint_dir` keeps of the logged history (see the module doc)."""
    from ups.resume.layout import STATUS_FILE
    from ups.resume.tracker import StageTracker
    from ups.training.metrics import read_metrics

    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / STATUS_FILE).is_file():
        return HistoryPoint(None, None, None)
    keep = _kept_after(StageTracker(checkpoint_dir, verbose=False).get_all_statuses())
    kept = last = None
    dropped: list[int] = []
    for rec in read_metrics(checkpoint_dir):
        step = rec.get(WANDB_STEP)
        if not isinstance(step, int):
            continue
        last = step if last is None else max(last, step)
        bound = keep.get(rec.get("stage"), 0)
        if bound is None or int(rec.get("step", 0)) <= bound:
            kept = step if kept is None else max(kept, step)
        elif isinstance(rec.get("global_step"), int):
            dropped.append(rec["global_step"])
    return HistoryPoint(kept, last, (min(dropped), max(dropped)) if dropped else None)


@dataclass(frozen=True)
class Branch:
    """How `wandb.init` continues the history: a rewind of the run or a fork of another."""

    kind: str  # "rewind" | "fork"
    source: str  # the run whose history is continued
    step: int
    point: HistoryPoint

    def init_kwargs(self) -> dict[str, str]:
        moment = f"{self.source}?_step={self.step}"
        return {"resume_from": moment} if self.kind == "rewind" else {"fork_from": moment}

    def refused(self, run_id: str, why: str) -> str:
        """The warning printed when the server refuses this branch."""
        if self.kind == "fork":
            return (f"⚠️  W&B refused to fork run {self.source} at step {self.step} ({why}): new run {run_id} "
                    f"starts without that history (it stays in run {self.source})")
        if self.point.discards:
            twice = f"W&B steps {self.step + 1}-{self.point.last}"
            if self.point.dropped_global:
                low, high = self.point.dropped_global
                twice += f" (trainer/global_step {low}-{high})"
            return (f"⚠️  W&B refused to rewind run {self.source} to step {self.step} ({why}): "
                    f"resuming it plainly; {twice} will appear twice in its history")
        return (f"⚠️  W&B refused to rewind run {self.source} to step {self.step} ({why}): resuming it plainly; "
                f"any W&B steps it holds after {self.step} will appear twice in its history")


def plan_branch(checkpoint_dir: Path, *, resume: str, run_id: str, previous: Optional[str]) -> Optional[Branch]:
    """The branch for this start, or None for a plain start/resume.

    `previous` is the run this checkpoint directory logged to before (given or persisted).
    """
    if previous is None:
        return None
    point = history_point(checkpoint_dir)
    if point.kept is None:
        return None
    if resume == "never":
        return Branch("fork", previous, point.kept, point) if previous != run_id else None
    return Branch("rewind", previous, point.kept, point) if run_id == previous else None


def without_resume_env() -> None:
    """`WANDB_RESUME` with `resume_from`/`fork_from` makes `wandb.init` fail (mutually exclusive)."""
    os.environ.pop("WANDB_RESUME", None)
