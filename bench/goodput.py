"""Goodput at realistic failure rates: the auto interval, a sweep of fixed ones, and stage-level resume.

Measured for real, in this run, with the training CLI: the quickstart, saving
every 10 steps (often enough to measure a save), killed mid-operator and
resumed to the end. Its goodput record
(`details.goodput`) gives C, the blocking cost of a periodic save; R, the
restart cost (process start to the first resumed step, imports and load
included); and each stage's share of the compute. W, the background write of a
state, is timed in-process on the state file the run left.

Replayed (`bench.replay`) over that cost model: failure traces (Poisson, seeded)
at MTBF = 10, 30 and 100 times the default fixed interval (`checkpoint.every_seconds`
300 s: 50 min, 2.5 h, 8.3 h: rented GPUs), for a job of `JOB_HOURS` of
compute split into the four stages by the measured shares. The same traces are
replayed against step-level resume at the auto interval (the trainer's own
rule, recomputed after each failure from the failures seen so far, prior and
bounds as configured by default), at a sweep of fixed intervals, and against
stage-level resume. The ceiling is the first-order model's best goodput for
these C and R: 1 − √(2C/MTBF) − R/MTBF, at T = √(2·C·MTBF).
Restart cost here is the trainer's; what the onstart script adds on a rented
machine is the `restart` row's business.
"""

from __future__ import annotations

import math
import time

from bench import replay
from bench.common import Bench, check_rc, parse_time, read_status, run_timed, shown, state_path, newest_state_step
from bench.report import Row
from ups.config import AutoIntervalConfig
from ups.resume.interval import goodput_ceiling, young_daly_seconds

STAGE_ORDER = ("operator", "diff_residual", "consistency_distill", "steady_prior")
DEFAULT_INTERVAL_S = 300.0  # checkpoint.every_seconds' default: the unit of the MTBF ratios
RATIOS = (10, 30, 100)
SWEEP_S = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
JOB_HOURS = 24.0
TRACES = 40
CAP = 10.0  # a replay not finished by CAP x the job's compute is stopped (stage-level at short MTBFs)
SEED = 20240611
LOOSE_MIN_S = 1.0  # the rule with a lower bound out of its way: what the measured costs alone ask for
# Saves every 10 steps: enough of them to measure C (the auto rule would save too rarely in a short run).
MEASURE_SETS = ("checkpoint.every_steps=10", "checkpoint.every_seconds=null")


def failure_free(b: Bench, name: str, sets: tuple[str, ...]) -> dict:
    """One uninterrupted pipeline: its wall time and start-up (the resume row uses it)."""
    ckpt = b.fresh_dir(name)
    log = b.work / f"{name}.log"
    cmd = b.train_cmd(ckpt, sets, auto_resume=True)
    launched = time.time()
    wall, rc = run_timed(cmd, log)
    check_rc(rc, 0, "the failure-free pipeline", log)
    stages = read_status(ckpt)["stages"]
    startup = parse_time(stages["operator"]["started_at"]) - launched
    b.log(f"    failure-free pipeline: {wall:.1f} s (start-up {startup:.1f} s)")
    return {"ckpt": ckpt, "sets": sets, "wall": wall, "startup": startup, "command": shown(cmd, b.work)}


def measure_costs(b: Bench) -> tuple[replay.Costs, dict[str, float], list[str]]:
    """(C, W, R), each stage's compute seconds, and the commands, from a killed-and-resumed run."""
    ckpt = b.fresh_dir("goodput_costs")
    cmd = b.train_cmd(ckpt, MEASURE_SETS)
    kill_at = 20 if b.quick else 60
    log = b.work / "goodput_costs.log"
    _, rc = run_timed(cmd, log, env={"UPS_FAULT": f"after-step:operator:{kill_at}"})
    check_rc(rc, -9, "the run killed mid-operator", log)
    write_s = write_seconds(state_path(ckpt, "operator", newest_state_step(ckpt, "operator")))
    resume = b.train_cmd(ckpt, MEASURE_SETS, auto_resume=True)
    _, rc = run_timed(resume, log)
    check_rc(rc, 0, "the resumed run", log)
    record = read_status(ckpt)["details"]["goodput"]
    attempts = record["attempts"]
    saves = sum(a["periodic_saves"] for a in attempts)
    save_s = sum(a["periodic_save_s"] for a in attempts) / max(saves, 1)
    stages = {s: sum((a["stages"].get(s) or {}).get("step_s", 0.0) for a in attempts) for s in STAGE_ORDER}
    costs = replay.Costs(save_s=save_s, write_s=write_s, restart_s=attempts[-1]["startup_s"])
    b.log(f"    measured: C {save_s * 1000:.2f} ms per save ({saves} saves), W {write_s * 1000:.1f} ms, "
          f"R {costs.restart_s:.2f} s")
    return costs, stages, [f"UPS_FAULT=after-step:operator:{kill_at} {shown(cmd, b.work)}", shown(resume, b.work)]


def write_seconds(path) -> float:
    """Time to write one state durably (save_torch: temp file, fsync, rename), median of three."""
    import tempfile
    from pathlib import Path

    import torch

    from ups.resume.files import save_torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            t0 = time.perf_counter()
            save_torch(state, Path(tmp) / f"s{i}.pt")
            times.append(time.perf_counter() - t0)
    return sorted(times)[1]


def replay_ratio(costs: replay.Costs, stages: dict[str, float], ratio: int, traces: int) -> dict:
    mtbf = ratio * DEFAULT_INTERVAL_S
    work = JOB_HOURS * 3600.0
    total = sum(stages.values()) or 1.0
    ends, acc = [], 0.0
    for s in STAGE_ORDER:
        acc += work * stages[s] / total
        ends.append(acc)
    ends[-1] = work
    a = AutoIntervalConfig()
    rule = replay.auto(costs, a.prior_mtbf_seconds, a.min_failures, a.min_seconds, a.max_seconds)
    loose = replay.auto(costs, a.prior_mtbf_seconds, a.min_failures, LOOSE_MIN_S, a.max_seconds)
    runs = {"auto": [], "loose": [], "stage": [], **{t: [] for t in SWEEP_S}}
    used = []
    for k in range(traces):
        trace = replay.failure_trace(mtbf, CAP * work, SEED + 1000 * ratio + k)
        out = replay.replay_step_level(work, costs, rule, trace, CAP * work)
        runs["auto"].append(out)
        used += out.intervals
        runs["loose"].append(replay.replay_step_level(work, costs, loose, trace, CAP * work))
        for t in SWEEP_S:
            runs[t].append(replay.replay_step_level(work, costs, replay.fixed(t), trace, CAP * work))
        runs["stage"].append(replay.replay_stage_level(ends, costs.restart_s, trace, CAP * work))
    fixed = {t: replay.pooled(runs[t]) for t in SWEEP_S}
    best_t, best = replay.best_of(fixed)
    return {"mtbf": mtbf, "auto": replay.pooled(runs["auto"]), "loose": replay.pooled(runs["loose"]), "fixed": fixed, "best_t": best_t, "best": best,
            "stage": replay.pooled(runs["stage"]), "stage_finished": sum(o.finished for o in runs["stage"]),
            "ceiling": goodput_ceiling(costs.save_s, costs.restart_s, mtbf),
            "auto_t": sorted(used)[len(used) // 2], "optimum_t": young_daly_seconds(costs.save_s, mtbf),
            "failures": sum(o.failures for o in runs["auto"]) / traces}


def measure(b: Bench) -> list[Row]:
    costs, stages, commands = measure_costs(b)
    traces = 8 if b.quick else TRACES
    rows = []
    for ratio in RATIOS:
        r = replay_ratio(costs, stages, ratio, traces)
        b.log(f"    MTBF {ratio} intervals: auto {r['auto']:.4f} (T {r['auto_t']:.0f} s), best fixed "
              f"{r['best']:.4f} (T {r['best_t']:g} s), ceiling {r['ceiling']:.4f}, stage-level {r['stage']:.4f}")
        rows += rows_for(ratio, r, costs, commands, traces)
    return rows


def rows_for(ratio: int, r: dict, costs: replay.Costs, commands: list[str], traces: int) -> list[Row]:
    mtbf_h = r["mtbf"] / 3600
    sweep = ", ".join(f"{t:g} s: {g:.4f}" for t, g in r["fixed"].items())
    model = (f"Replay of {traces} seeded Poisson traces (MTBF {mtbf_h:.2f} h = {ratio} × the default 300 s interval; "
             f"{r['failures']:.1f} failures per {JOB_HOURS:g} h job on average) over the costs measured in this run: "
             f"C {costs.save_s * 1000:.2f} ms blocking per save, W {costs.write_s * 1000:.1f} ms background write, "
             f"R {costs.restart_s:.2f} s restart. ")
    auto_note = (f"auto interval (default bounds {AutoIntervalConfig().min_seconds:g}-"
                 f"{AutoIntervalConfig().max_seconds:g} s, prior MTBF {AutoIntervalConfig().prior_mtbf_seconds / 3600:g} h "
                 f"until 2 failures): median T {r['auto_t']:.0f} s (unbounded optimum {r['optimum_t']:.1f} s); with "
                 f"checkpoint.auto.min_seconds={LOOSE_MIN_S:g} the same rule reaches {r['loose']:.4f}. ")
    return [
        Row(key="goodput", metric=f"Goodput, auto interval ÷ model ceiling (MTBF {ratio} intervals)",
            measured=r["auto"], reference=r["ceiling"], unit="", ratio=r["auto"] / r["ceiling"], op=">=",
            target=0.95, commands=commands, notes=model + auto_note,
            samples={k: v for k, v in r.items() if k != "fixed"} | {"fixed": {str(k): v for k, v in r["fixed"].items()}}),
        Row(key="goodput", metric=f"Goodput, auto interval ÷ best fixed interval of the sweep (MTBF {ratio} intervals)",
            measured=r["auto"], reference=r["best"], unit="", ratio=r["auto"] / r["best"], op=">=", target=0.98,
            commands=commands, notes=f"Sweep (same traces): {sweep}. Best: {r['best_t']:g} s."),
        Row(key="goodput", metric=f"Goodput, stage-level resume (seed design) ÷ auto step-level (MTBF {ratio} "
                                  f"intervals)",
            measured=r["stage"], reference=r["auto"], unit="", ratio=r["stage"] / r["auto"] if r["auto"] else math.nan,
            op="", target=None, commands=commands,
            notes=(f"Same traces; a failure sends the stage back to its start. {r['stage_finished']} of {traces} "
                   f"replays finished within {CAP:g}x the job's compute (the others are credited with the "
                   "stages they completed).")),
    ]
