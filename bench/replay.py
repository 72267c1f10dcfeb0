"""Replay one failure trace against a resume policy over a measured cost model; pure and fast.

The model of a job: `work_s` seconds of training compute. A step-level policy
saves after every `T` seconds of compute since the last save (or since the
attempt began, as the trainer's clock does): the training thread blocks for the
save's cost `C` (plus any wait for the previous write still in flight), and the
state becomes durable `W` seconds later (the background write). A failure at
wall time f loses everything since the newest state durable by f; the next
attempt pays the restart cost `R` (process start to the first resumed step) and
continues from there. A stage-level policy (the seed's design) saves nothing
within a stage: a failure sends the stage back to its beginning. The clock runs
across restarts, so a failure can strike during a restart too.

Failures are the same trace (absolute wall times) for every policy. Each attempt
is solved in closed form (no per-step loop), so a day-long job with hundreds of
saves per failure replays in microseconds.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from ups.resume.interval import IntervalInputs, auto_interval


@dataclass(frozen=True)
class Costs:
    save_s: float  # C: the training thread's blocking time per save
    write_s: float  # W: from the end of that block until the state is durable
    restart_s: float  # R: process start to the first resumed step


@dataclass
class Outcome:
    wall_s: float
    useful_s: float
    failures: int
    finished: bool
    intervals: list[float] = field(default_factory=list)  # T used by each attempt

    @property
    def goodput(self) -> float:
        return self.useful_s / self.wall_s if self.wall_s > 0 else 0.0


def failure_trace(mtbf_s: float, horizon_s: float, seed: int) -> list[float]:
    """Failure times of a Poisson process (exponential gaps, mean `mtbf_s`) up to `horizon_s`."""
    rng, t, out = random.Random(seed), 0.0, []
    while True:
        t += rng.expovariate(1.0 / mtbf_s)
        if t > horizon_s:
            return out
        out.append(t)


IntervalRule = Callable[[int, float], float]  # (failures seen, wall time so far) -> T


def fixed(seconds: float) -> IntervalRule:
    return lambda failures, exposure: seconds


def auto(costs: Costs, prior_mtbf_s: float, min_failures: int, min_s: float, max_s: float) -> IntervalRule:
    """The trainer's own rule (`ups.resume.interval.auto_interval`), recomputed at each attempt."""
    def rule(failures: int, exposure: float) -> float:
        return auto_interval(IntervalInputs(costs.save_s, failures, exposure, prior_mtbf_s, min_failures,
                                            min_s, max_s)).seconds
    return rule


def replay_step_level(work_s: float, costs: Costs, rule: IntervalRule, trace: Sequence[float],
                      cap_s: float = math.inf) -> Outcome:
    done, t, i, intervals = 0.0, 0.0, 0, []
    while True:
        start = t + costs.restart_s
        while i < len(trace) and trace[i] <= start:  # struck while restarting
            t, i = trace[i], i + 1
            start = t + costs.restart_s
        interval = rule(i, t)
        intervals.append(interval)
        block = costs.save_s + max(0.0, costs.write_s - interval)  # a write longer than T delays the next save
        left = work_s - done
        saves = max(0, math.ceil(left / interval) - 1)  # none at the very end: the outputs are written then
        end = start + left + saves * block
        f = trace[i] if i < len(trace) else math.inf
        if min(end, f) > cap_s:
            return Outcome(cap_s, done, i, False, intervals)
        if end <= f:
            return Outcome(end, work_s, i, True, intervals)
        # Save j is durable at start + j·(T + block) + W; the newest one durable by f survives.
        durable = math.floor((f - start - costs.write_s) / (interval + block)) if f > start else 0
        done += min(max(durable, 0), saves) * interval
        t, i = f, i + 1


def replay_stage_level(stage_ends_s: Sequence[float], restart_s: float, trace: Sequence[float],
                       cap_s: float = math.inf) -> Outcome:
    """`stage_ends_s`: cumulative compute seconds at the end of each stage (the last one is the job)."""
    work_s = stage_ends_s[-1]
    done, t, i = 0.0, 0.0, 0
    while True:
        start = t + restart_s
        while i < len(trace) and trace[i] <= start:
            t, i = trace[i], i + 1
            start = t + restart_s
        end = start + work_s - done
        f = trace[i] if i < len(trace) else math.inf
        if min(end, f) > cap_s:
            reached = done + max(0.0, cap_s - start)
            return Outcome(cap_s, max([done] + [e for e in stage_ends_s if e <= reached]), i, False)
        if end <= f:
            return Outcome(end, work_s, i, True)
        reached = done + (f - start)
        done = max([done] + [e for e in stage_ends_s if e <= reached])
        t, i = f, i + 1


def pooled(outcomes: Sequence[Outcome]) -> float:
    """Goodput over several traces: all useful time over all wall time."""
    wall = sum(o.wall_s for o in outcomes)
    return sum(o.useful_s for o in outcomes) / wall if wall else 0.0


def best_of(goodputs: dict[float, float]) -> tuple[Optional[float], float]:
    if not goodputs:
        return None, 0.0
    t = max(goodputs, key=goodputs.get)
    return t, goodputs[t]
