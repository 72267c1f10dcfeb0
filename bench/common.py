"""What every measurement shares: the run settings, the real training CLI, and readers of
what a run leaves on disk (status, metrics, state files).

Measurements drive `scripts/train.py` in a subprocess, exactly as a user would,
so process start-up is always counted. Every training run gets
`training.num_threads=1`: on a shared 2-core machine, torch's default of one
intra-op thread per core spin-waits against other processes and makes a run
10x slower and wildly noisy, which would measure the neighbours, not ups.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
TRAIN = "scripts/train.py"
QUICKSTART = "configs/quickstart.yaml"
PYTHON = sys.executable

# Every run: one thread (see module docstring), progress as plain lines in log files.
BASE_SETS = ("training.num_threads=1", "logging.progress=lines")
# --quick: the tiny pipeline the integration tests use; seconds instead of minutes.
QUICK_SETS = (
    "data.generator.n_train=24", "data.generator.n_val=8", "data.generator.n_test=8",
    "data.generator.nt=21", "training.batch_size=32", "stages.operator.epochs=3",
    "stages.diff_residual.epochs=2", "stages.consistency_distill.epochs=2", "stages.steady_prior.epochs=3",
)


@dataclass
class Bench:
    """Settings of one harness run and its scratch directory."""

    work: Path
    quick: bool = False
    deadline: float = float("inf")  # time.perf_counter() by which the harness should be done
    log: Callable[[str], None] = print
    diagnostics: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def data_sets(self) -> tuple[str, ...]:
        """Quick runs generate their own tiny data; full runs use the quickstart's own."""
        if self.quick:
            return (f"data.root={self.work / 'data'}", *QUICK_SETS)
        return ()

    def fresh_dir(self, name: str) -> Path:
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def train_cmd(self, ckpt: Path, sets: tuple[str, ...] = (), stage: str = "all",
                  auto_resume: bool = False) -> list[str]:
        cmd = [PYTHON, TRAIN, "--config", QUICKSTART, "--stage", stage]
        if auto_resume:
            cmd.append("--auto-resume")
        for item in (*BASE_SETS, *self.data_sets, f"training.checkpoint_dir={ckpt}", *sets):
            cmd += ["--set", item]
        return cmd


def shown(cmd: list[str], work: Optional[Path] = None) -> str:
    """A command as a user would type it: `python`, scratch paths shortened to $BENCH."""
    text = shlex.join(["python" if c == PYTHON else c for c in cmd])
    return text.replace(str(work), "$BENCH") if work else text


def child_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "UPS_FAULT"}
    env.update({"PYTHONUNBUFFERED": "1", **(extra or {})})
    return env


def run_timed(cmd: list[str], log_file: Path, env: Optional[dict[str, str]] = None,
              timeout: float = 600) -> tuple[float, int]:
    """Run a command from the repo root; (wall seconds, exit code). Output goes to `log_file`."""
    with open(log_file, "ab") as out:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=child_env(env), stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout)
        return time.perf_counter() - start, proc.returncode


def check_rc(rc: int, expected: int, what: str, log_file: Path) -> None:
    if rc != expected:
        tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        raise RuntimeError(f"{what} exited {rc}, expected {expected}; log {log_file}:\n{tail}")


def alternate(reps: int, measured: Callable[[], float], reference: Callable[[], float]) -> tuple[list, list]:
    """Run measured and reference in ABBA order so drift in machine load cancels out."""
    a, b = [], []
    for i in range(reps):
        if i % 2 == 0:
            a.append(measured())
            b.append(reference())
        else:
            b.append(reference())
            a.append(measured())
    return a, b


def rotate(reps: int, ops: list[Callable[[], Any]]) -> None:
    """Run the ops in a different rotation each repetition, so none always goes first."""
    for i in range(reps):
        for j in range(len(ops)):
            ops[(i + j) % len(ops)]()


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median of the paired ratios a_i / b_i (each pair ran back to back)."""
    return statistics.median(x / y for x, y in zip(a, b))


def median(xs: list[float]) -> float:
    return statistics.median(xs)


# --- readers of a checkpoint directory -----------------------------------------


def read_status(ckpt: Path) -> dict[str, Any]:
    path = ckpt / "stage_status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def stage_seconds(ckpt: Path, stage: str) -> float:
    """Training wall time of a completed stage, from its recorded start and completion."""
    entry = read_status(ckpt)["stages"][stage]
    return parse_time(entry["completed_at"]) - parse_time(entry["started_at"])


def completed_stages(ckpt: Path) -> list[str]:
    stages = read_status(ckpt).get("stages", {})
    return [name for name, entry in stages.items() if entry.get("status") == "completed"]


def max_logged_step(ckpt: Path, stage: str) -> int:
    """Highest step `stage` logged to metrics.jsonl (a torn last line is skipped)."""
    from ups.training.metrics import read_metrics

    steps = [r.get("step", 0) for r in read_metrics(ckpt) if r.get("stage") == stage]
    return max(steps, default=0)


def newest_state_step(ckpt: Path, stage: str) -> int:
    """Step of the newest committed state file: the one `--auto-resume` continues from."""
    from ups.resume.saver import list_state_steps

    steps = list_state_steps(ckpt / "state" / stage)
    return steps[-1] if steps else 0


def state_path(ckpt: Path, stage: str, step: int) -> Path:
    from ups.resume.layout import state_file_name

    return ckpt / "state" / stage / state_file_name(step)
