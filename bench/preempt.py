"""Run a training command to completion under random SIGKILLs, restarting it at once.

Failures are a Poisson process in wall-clock time: the gaps between kills are
drawn (seeded) from an exponential distribution whose mean is the MTBF, and
the clock keeps running across restarts, so start-up time is exposed to
failures exactly like training time is. A run that has not finished by `cap_s`
is stopped; the caller then credits it only with the work it committed.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from bench.common import REPO, child_env


def failure_gaps(mtbf_s: float, seed: int) -> Iterator[float]:
    rng = random.Random(seed)
    while True:
        yield rng.expovariate(1.0 / mtbf_s)


@dataclass
class Outcome:
    total_s: float
    finished: bool
    kills: list[float] = field(default_factory=list)  # seconds since the first launch
    launches: int = 0


def run_under_failures(cmd: list[str], log_file: Path, gaps: Iterator[float], cap_s: float) -> Outcome:
    start = time.perf_counter()
    next_kill = start + next(gaps)
    out = Outcome(total_s=0.0, finished=False)
    with open(log_file, "ab") as log:
        while True:
            proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
            out.launches += 1
            deadline = min(next_kill, start + cap_s)
            try:
                rc = proc.wait(timeout=max(0.0, deadline - time.perf_counter()))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                now = time.perf_counter()
                if now - start >= cap_s:
                    out.total_s = now - start
                    return out
                out.kills.append(now - start)
                next_kill += next(gaps)
                continue
            out.total_s = time.perf_counter() - start
            if rc != 0:
                log.flush()
                tail = log_file.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"training exited {rc} on its own under preemption; {log_file} ends:\n{tail}")
            out.finished = True
            return out
