"""Row 6: goodput of the quickstart pipeline under random SIGKILLs, step-level resume
beside stage-level-only resume.

The pipeline is the quickstart with every stage's epochs tripled: on an idle
core the quickstart's stages last 3-4 s, under two save intervals, and a
stage-level resume then loses hardly more than a step-level one; what the
comparison is about is stages that outlast the MTBF.

Useful training time is the wall time of the same pipeline run once without
failures, as one process (its start-up included, once). Total time is the
wall time from the first launch of the preempted run to its completion: every
restart's start-up, all recomputed work, and the work of each killed attempt
count; the restart delay of a real preemption (minutes to get a new machine)
is left out, since it does not depend on ups. Goodput = useful ÷ total.

Both preempted runs face the same failure times (one seeded schedule per
round). The pipeline lasts only a few MTBFs, so when the harness's deadline
allows, rounds with fresh seeds are repeated (the two policies alternating
which goes first) and goodput is pooled: all useful time over all total time.
The failure-free run is made before and after the rounds and its mean is the
useful time, so a drift in machine load during the measurement does not pass
for goodput. A run that has not finished by `CAP` times the useful time is
stopped and credited with the time the failure-free run needed to commit the
same stages — all a stage-level resume keeps.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import Bench, check_rc, completed_stages, parse_time, read_status, run_timed, shown
from bench.preempt import Outcome, failure_gaps, run_under_failures
from bench.report import Row

CAP = 3.0
MAX_ROUNDS = 3
EPOCHS = {"operator": 6, "diff_residual": 3, "consistency_distill": 2, "steady_prior": 3}  # the quickstart's
SCALE = 3
STAGE_ORDER = ("operator", "diff_residual", "consistency_distill", "steady_prior")
SEED = 20240611


def settings(b: Bench) -> tuple[float, float]:
    """(time-based save interval T, mean time between failures): MTBF = 4 T."""
    return (1.0, 4.0) if b.quick else (2.0, 8.0)


def longer(b: Bench) -> tuple[str, ...]:
    return () if b.quick else tuple(f"stages.{s}.epochs={SCALE * e}" for s, e in EPOCHS.items())


def step_sets(b: Bench) -> tuple[str, ...]:
    return (*longer(b), "checkpoint.every_steps=null", f"checkpoint.every_seconds={settings(b)[0]:g}")


def stage_sets(b: Bench) -> tuple[str, ...]:
    return (*longer(b), "checkpoint.every_steps=null", "checkpoint.every_seconds=null")


def failure_free(b: Bench, name: str, sets: tuple[str, ...]) -> dict:
    """One uninterrupted pipeline: its wall time, start-up and when each stage was committed."""
    ckpt = b.fresh_dir(name)
    log = b.work / f"{name}.log"
    cmd = b.train_cmd(ckpt, sets, auto_resume=True)
    launched = time.time()
    wall, rc = run_timed(cmd, log)
    check_rc(rc, 0, "the failure-free pipeline", log)
    stages = read_status(ckpt)["stages"]
    committed = {s: parse_time(stages[s]["completed_at"]) - launched for s in STAGE_ORDER}
    startup = parse_time(stages["operator"]["started_at"]) - launched
    b.log(f"    failure-free pipeline: {wall:.1f} s (start-up {startup:.1f} s)")
    return {"ckpt": ckpt, "sets": sets, "wall": wall, "committed": committed, "startup": startup,
            "command": shown(cmd, b.work)}


def useful(before: dict, after: dict) -> dict:
    """The mean of the failure-free runs made before and after the preempted ones."""
    def mean(key: str, stage: str | None = None) -> float:
        pick = (lambda r: r[key][stage]) if stage else (lambda r: r[key])
        return (pick(before) + pick(after)) / 2

    return {"wall": mean("wall"), "startup": mean("startup"),
            "committed": {s: mean("committed", s) for s in STAGE_ORDER},
            "command": before["command"], "walls": [before["wall"], after["wall"]]}


def preempted(b: Bench, name: str, sets: tuple[str, ...], cap_s: float, seed: int) -> tuple[Outcome, Path, str]:
    ckpt = b.fresh_dir(name)
    cmd = b.train_cmd(ckpt, sets, auto_resume=True)
    out = run_under_failures(cmd, b.work / f"{name}.log", failure_gaps(settings(b)[1], seed), cap_s)
    state = "finished" if out.finished else f"stopped at the cap with {len(completed_stages(ckpt))}/4 stages"
    b.log(f"    {name} (seed {seed}): {out.total_s:.1f} s, {len(out.kills)} kills, {state}")
    return out, ckpt, shown(cmd, b.work)


def rounds(b: Bench, cap_s: float, reference_s: float) -> dict[str, list]:
    """Alternate step-level and stage-level runs under shared schedules while the deadline allows."""
    policies = {"step": ("preempted_step", step_sets(b)), "stage": ("preempted_stage", stage_sets(b))}
    runs: dict[str, list] = {"step": [], "stage": []}
    n, last = 0, 0.0
    while n < (1 if b.quick else MAX_ROUNDS):
        if n and time.perf_counter() + last + reference_s > b.deadline:
            b.log(f"    no time left for round {n + 1} before the harness's deadline")
            break
        start = time.perf_counter()
        for policy in (("step", "stage") if n % 2 == 0 else ("stage", "step")):
            name, sets = policies[policy]
            runs[policy].append(preempted(b, name, sets, cap_s, SEED + n))
        last, n = time.perf_counter() - start, n + 1
    return runs


def credited(out: Outcome, ckpt: Path, ref: dict) -> float:
    """Useful seconds a preempted run delivered: all of it if it finished, else its committed stages."""
    if out.finished:
        return ref["wall"]
    done = [s for s in STAGE_ORDER if s in completed_stages(ckpt)]
    return ref["committed"][done[-1]] if done else 0.0


def measure(b: Bench) -> list[Row]:
    before = failure_free(b, "pipeline_before", step_sets(b))
    runs = rounds(b, CAP * before["wall"], before["wall"])
    ref = useful(before, failure_free(b, "pipeline_after", step_sets(b)))
    step, stage = pool(runs["step"], ref), pool(runs["stage"], ref)
    b.log(f"    goodput over {len(runs['step'])} round(s): step-level {step['goodput']:.2f}, "
          f"stage-level {stage['goodput']:.2f}")
    return [step_row(b, runs, ref, step), stage_row(runs, step, stage)]


def step_row(b: Bench, runs: dict[str, list], ref: dict, step: dict) -> Row:
    every, mtbf = settings(b)
    restart = b.cache.get("first_step_s"), "launch to the first resumed step, as in the mid-stage resume latency row"
    if restart[0] is None:
        restart = ref["startup"], "launch to the first stage's start, failure-free run"
    notes = (f"The quickstart with {SCALE}x the epochs. {len(runs['step'])} round(s); in each, SIGKILLs at "
             f"exponential gaps (mean {mtbf:g} s = {mtbf / every:g} save intervals; seeds {SEED}, {SEED}+1, ...) hit "
             f"both runs alike, which restart at once with --auto-resume. Useful = the failure-free pipeline's wall "
             f"time, {ref['wall']:.1f} s (mean of {ref['walls'][0]:.1f} s before and {ref['walls'][1]:.1f} s after; "
             f"start-up {ref['startup']:.1f} s), credited once per finished run. Step-level: {step['kills']} kills "
             f"in all. Model: 1 − (restart + T/2) ÷ MTBF = {1 - (restart[0] + every / 2) / mtbf:.2f}; no resume "
             f"scheme can beat 1 − T/(2·MTBF) = {1 - every / (2 * mtbf):.3f}.")
    return Row(
        key="goodput", metric=f"Goodput under preemption, step-level resume (save every {every:g} s, MTBF {mtbf:g} s)",
        measured=step["useful"], reference=step["total"], unit="s", ratio=step["goodput"], op=">=", target=0.9,
        commands=[ref["command"], runs["step"][0][2]], notes=notes, miss=goodput_miss(restart, every, mtbf),
        samples=step)


def stage_row(runs: dict[str, list], step: dict, stage: dict) -> Row:
    ahead = step["goodput"] / stage["goodput"] if stage["goodput"] else float("inf")
    return Row(
        key="goodput", metric="Goodput under the same failures, stage-level resume only (seed design)",
        measured=stage["useful"], reference=stage["total"], unit="s", ratio=stage["goodput"], op="", target=None,
        commands=[runs["stage"][0][2]],
        notes=(f"periodic state saves off: a killed stage restarts from its beginning. {stage['kills']} kills in "
               f"all; {stage['capped']} of {len(runs['stage'])} runs stopped at {CAP:g}x the useful time. "
               f"Step-level ÷ stage-level goodput: {ahead:.2f}."),
        samples=stage)


def pool(runs: list, ref: dict) -> dict:
    """Pooled goodput of a policy's runs (sum of useful ÷ sum of total), with the sums and counts."""
    useful_s = sum(credited(out, ckpt, ref) for out, ckpt, _ in runs)
    total_s = sum(out.total_s for out, _, _ in runs)
    return {"goodput": useful_s / total_s, "useful": useful_s, "total": total_s,
            "kills": sum(len(out.kills) for out, _, _ in runs), "capped": sum(not out.finished for out, _, _ in runs),
            "totals_s": [out.total_s for out, _, _ in runs], "kill_times_s": [out.kills for out, _, _ in runs]}


def goodput_miss(restart: tuple[float, str], every: float, mtbf: float) -> str:
    seconds, what = restart
    return (f"every failure costs a restart ({seconds:.1f} s, {what}) plus, "
            f"on average, half a save interval of recomputation ({every / 2:g} s); with a failure every {mtbf:g} s "
            f"that is {(seconds + every / 2) / mtbf:.0%} of the time, whatever the checkpointing does. Even with a "
            f"free restart no resume scheme can exceed 1 − T/(2·MTBF) = {1 - every / (2 * mtbf):.3f} at MTBF = "
            f"{mtbf / every:g} intervals, so ≥ 0.9 needs MTBF ≥ 10·(restart + T/2). Next steps: cut start-up "
            "(the mid-stage resume latency row), and save more often when failures are frequent "
            "(T ≈ √(2·MTBF·save cost) is the optimum; saves are cheap, row 1).")
