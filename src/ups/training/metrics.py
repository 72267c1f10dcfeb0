"""Where training numbers go: a local JSONL log always, W&B when enabled, and the terminal.

The JSONL file (`metrics.jsonl` in the checkpoint directory) is the record that
survives everything. When a stage resumes from step N, lines it logged after N
(work that is about to be redone) are dropped first, so the log of a resumed
run reads like the log of a run that never stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from ups.errors import CheckpointError
from ups.remote.wandb_history import WANDB_STEP, logged_step
from ups.resume.atomic import atomic_write_bytes
from ups.resume.layout import METRICS_FILE


class MetricsLogger:
    def __init__(self, checkpoint_dir: Path, progress: str = "auto", wandb_run: Any = None):
        self.path = Path(checkpoint_dir) / METRICS_FILE
        self.wandb_run = wandb_run
        self.bars = progress == "bar" or (progress == "auto" and sys.stdout.isatty())
        self.lines = progress != "off" and not self.bars
        self._file = None
        self._t0 = time.time()

    def _check_regular(self) -> None:
        """Never read or append through a symlink or a device: /dev/zero would never end."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a symlink" if stat.S_ISLNK(st.st_mode) \
                else "not a regular file"
            raise CheckpointError(f"{self.path} is {kind}; remove it (it only holds logged losses, "
                                  "which ups writes anew) and rerun")

    def log(self, record: dict[str, Any]) -> None:
        # JSON has no NaN/Inf: a non-finite number is written as null, never as a bare NaN token.
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        record = {**record, "time": round(time.time(), 3)}
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._check_regular()
            self._file = open(self.path, "a", encoding="utf-8")
        if self.wandb_run is not None:
            prefix = f"{record['stage']}/{record['kind']}"
            self.wandb_run.log(
                {f"{prefix}_loss": record["loss"], f"{record['stage']}/lr": record["lr"],
                 f"{record['stage']}/epoch": record["epoch"], "trainer/global_step": record["global_step"]}
            )
            record[WANDB_STEP] = logged_step(self.wandb_run)  # where a resume rewinds the run to
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        if self.lines:
            print(
                f"[{record['stage']}] {record['kind']:<5} epoch {record['epoch']:>3} step {record['step']:>6} "
                f"loss {record['loss'] if record['loss'] is None else format(record['loss'], '.4e')} "
                f"lr {record['lr']:.2e}",
                flush=True,
            )

    def truncate(self, stage: str, after_step: int) -> None:
        """Drop `stage`'s lines with step > `after_step` (that work will be redone)."""
        self.close()
        self._check_regular()
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill; the work it described is redone
            if not isinstance(rec, dict):
                continue  # not a record this logger wrote
            if rec.get("stage") == stage and rec.get("step", 0) > after_step:
                continue
            kept.append(line)
        atomic_write_bytes(self.path, ("\n".join(kept) + "\n" if kept else "").encode())

    @contextlib.contextmanager
    def progress(self, stage: str, total: int, start: int) -> Iterator["_Progress"]:
        bar = None
        if self.bars:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=start, desc=stage, unit="step", dynamic_ncols=True)
        try:
            yield _Progress(bar, start)
        finally:
            if bar is not None:
                bar.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class SilentLog:
    """The logger of a rank other than 0 of a torchrun group: rank 0 alone writes metrics and W&B."""

    def log(self, record: dict[str, Any]) -> None:
        pass

    def truncate(self, stage: str, after_step: int) -> None:
        pass

    @contextlib.contextmanager
    def progress(self, stage: str, total: int, start: int) -> Iterator["_Progress"]:
        yield _Progress(None, start)

    def close(self) -> None:
        pass


class _Progress:
    def __init__(self, bar: Optional[Any], start: int):
        self.bar, self.last = bar, start

    def update(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.last)
        self.last = step


def read_metrics(checkpoint_dir: Path) -> list[dict[str, Any]]:
    path = Path(checkpoint_dir) / METRICS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if isinstance(rec, dict):  # a line of another shape is not a record
                out.append(rec)
    return out
