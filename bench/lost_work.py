"""Row 5: work lost to a SIGKILL at a random time, and to a SIGTERM.

One chain of runs of the operator stage (every step logged, a state saved
every 25 steps as in the quickstart): each attempt is started with
`--auto-resume`, and once it has trained (a metrics line newer than its
launch) it is killed after a random delay. Steps recomputed = highest step
logged before the kill − step of the newest committed state, which is what
the next attempt resumes from. The chain ends with SIGTERMs, after which the
saved step must equal the step reached.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

from bench.common import REPO, Bench, child_env, max_logged_step, newest_state_step, shown
from bench.report import Row

EVERY = 25
SEED = 7


def sets(b: Bench) -> tuple[str, ...]:
    epochs = 20 if b.quick else 30  # never reached: every attempt is killed long before the end
    return (f"stages.operator.epochs={epochs}", f"checkpoint.every_steps={EVERY}", "checkpoint.every_seconds=null",
            "logging.log_every_steps=1")


def trained_since(ckpt: Path, launched: float) -> bool:
    path = ckpt / "metrics.jsonl"
    if not path.exists():
        return False
    for line in reversed(path.read_text(encoding="utf-8").splitlines()):
        try:
            return json.loads(line).get("time", 0) >= launched
        except ValueError:
            continue
    return False


def attempt(b: Bench, cmd: list[str], ckpt: Path, sig: int, delay: float) -> tuple[int, int, int]:
    """Launch, wait until it trains, wait `delay`, send `sig`; (reached, saved, exit code)."""
    launched = time.time()
    with open(b.work / "lost_work.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
        while not trained_since(ckpt, launched):
            if proc.poll() is not None or time.time() - launched > 300:
                proc.kill()
                raise RuntimeError(f"attempt ended or stalled before training; see {b.work / 'lost_work.log'}")
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(sig)
        rc = proc.wait(timeout=120)
    return max_logged_step(ckpt, "operator"), newest_state_step(ckpt, "operator"), rc


def measure(b: Bench) -> list[Row]:
    kills, terms = (1, 1) if b.quick else (6, 2)
    window = 0.5 if b.quick else 2.5
    rng = random.Random(SEED)
    ckpt = b.fresh_dir("lost_work")
    cmd = b.train_cmd(ckpt, sets(b), stage="operator", auto_resume=True)
    recomputed, lost = [], []
    for i in range(kills + terms):
        sig = signal.SIGKILL if i < kills else signal.SIGTERM
        reached, saved, rc = attempt(b, cmd, ckpt, sig, rng.uniform(0, window))
        (recomputed if sig == signal.SIGKILL else lost).append(reached - saved)
        b.log(f"    {signal.Signals(sig).name}: reached step {reached}, newest state {saved}, exit {rc}")
        if sig == signal.SIGTERM and rc != 128 + signal.SIGTERM:
            raise RuntimeError(f"SIGTERM: expected exit 143, got {rc}")
    return [kill_row(b, cmd, recomputed, window), term_row(b, cmd, lost)]


def kill_row(b: Bench, cmd: list[str], recomputed: list[int], window: float) -> Row:
    worst = max(recomputed)
    return Row(
        key="lost", metric=f"Lost work after SIGKILL (worst steps recomputed ÷ steps per interval)",
        measured=worst, reference=EVERY, unit="steps", ratio=worst / EVERY, op="<=", target=1.0,
        commands=[shown(cmd, b.work) + "  # SIGKILL at random times"],
        notes=(f"{len(recomputed)} SIGKILLs, each U(0, {window:g} s) after the attempt's first logged step; "
               f"steps recomputed per kill: {recomputed} (mean {sum(recomputed) / len(recomputed):.1f})."),
        miss=("a kill landed while a state write was in flight: the step it was saving had been reached, but the "
              "newest committed state is one interval older. Next step: none needed for correctness; the bound "
              "is one interval plus the steps trained while a write is in flight."),
        samples={"recomputed": recomputed})


def term_row(b: Bench, cmd: list[str], lost: list[int]) -> Row:
    worst = max(lost)
    return Row(
        key="lost", metric="Lost work after SIGTERM (steps reached − steps saved)",
        measured=worst, reference=None, unit="steps", ratio=worst, op="==", target=0,
        commands=[shown(cmd, b.work) + "  # SIGTERM at random times"],
        notes=f"{len(lost)} SIGTERMs at random times; steps lost each time: {lost}; every exit was 143.",
        miss="the SIGTERM handler did not save the step it finished; see the run's log.",
        samples={"lost": lost})
