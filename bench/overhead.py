"""Row 1: what periodic checkpointing costs a training stage in wall time.

The operator stage is trained twice per repetition from scratch, once with
step saves (about ten per stage) and once with periodic saves off, in ABBA
order. The time compared is the stage's own, from its recorded start to its
recorded completion (outputs durable), so process start-up, identical in both,
does not dilute the ratio. The processes' CPU time is recorded beside it: less
disturbed by neighbours than wall time, it shows the work the saves add.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

from bench.common import Bench, alternate, check_rc, median, median_ratio, run_timed, shown, stage_seconds
from bench.report import Row

OFF = ("checkpoint.every_steps=null", "checkpoint.every_seconds=null")


def settings(b: Bench) -> tuple[tuple[str, ...], int, int]:
    """(config overrides, steps in the stage, save interval in steps)."""
    if b.quick:
        return ("stages.operator.epochs=2", "checkpoint.every_steps=3"), 30, 3
    # 36 epochs x 60 steps = 2160 steps (about 20 s on an idle core); a save every 200 steps = 10 saves.
    return ("stages.operator.epochs=36", "checkpoint.every_steps=200", "checkpoint.every_seconds=60"), 2160, 200


def measure(b: Bench) -> list[Row]:
    sets, steps, every = settings(b)
    reps = 1 if b.quick else 4
    ckpt = b.work / "overhead"
    log = b.work / "overhead.log"
    commands, cpu = {}, {"checkpointing on": [], "checkpointing off": []}

    def one(kind: str, extra: tuple[str, ...]) -> float:
        b.fresh_dir("overhead")
        cmd = b.train_cmd(ckpt, (*sets, *extra), stage="operator")
        commands[kind] = shown(cmd, b.work)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        _, rc = run_timed(cmd, log)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        check_rc(rc, 0, f"operator stage ({kind})", log)
        cpu[kind].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        seconds = stage_seconds(ckpt, "operator")
        b.log(f"    operator stage, {kind}: {seconds:.2f} s (process CPU {cpu[kind][-1]:.2f} s)")
        return seconds

    on, off = alternate(reps, lambda: one("checkpointing on", ()), lambda: one("checkpointing off", OFF))
    ratio = median_ratio(on, off)
    saves = steps // every - (steps % every == 0)  # none at the last step: the stage's outputs follow
    cpu_ratio = median_ratio(cpu["checkpointing on"], cpu["checkpointing off"])
    return [Row(
        key="overhead", metric="Checkpoint overhead (operator stage wall time, saves on ÷ off)",
        measured=median(on), reference=median(off), unit="s", ratio=ratio, op="<=", target=1.01,
        commands=[commands["checkpointing on"], commands["checkpointing off"]],
        notes=(f"{reps} pairs in ABBA order; {steps} steps with a state save every {every} steps "
               f"({saves} saves) vs none; time from the stage's recorded start "
               f"to its recorded completion. Paired ratios: {', '.join(f'{a / o:.3f}' for a, o in zip(on, off))}. "
               f"Whole-process CPU time, on ÷ off: {cpu_ratio:.3f} (median of pairs)."),
        miss=overhead_miss(b, on, off, cpu_ratio, saves),
        samples={"on_s": on, "off_s": off, "cpu_on_s": cpu["checkpointing on"], "cpu_off_s": cpu["checkpointing off"]},
    )]


def overhead_miss(b: Bench, on: list[float], off: list[float], cpu_ratio: float, saves: int) -> str:
    pairs = sorted(a / o for a, o in zip(on, off))
    spread = f"the paired wall-time ratios spread from {pairs[0]:.3f} to {pairs[-1]:.3f}"
    per_save = b.diagnostics.get(SAVE_WALL, float("nan"))
    implied = 1000 * (median(on) - median(off)) / saves
    costs = (f"The medians imply {implied:.0f} ms of training time per save, while writing the operator's state "
             f"takes {per_save:.1f} ms (Diagnostics; {saves} such saves would be "
             f"{saves * per_save / 1000 / median(off):.2%} of the stage); the processes' CPU time grows by "
             f"{cpu_ratio - 1:+.1%}. The likely difference: the writer thread's Python work (pickling, the status "
             "update) takes the GIL from the training thread, which runs many small ops.")
    fix = ("Next step (saver.py): serialise into memory on the training thread (a few ms) and leave only GIL-free "
           "work (hash, write, fsync) to the writer thread; or save less often: the cost is per save.")
    if pairs[0] <= 1.01:
        return f"{spread}: noise on this shared machine is as large as the 1% tested. {costs} {fix}"
    return f"{spread}, every pair above 1.01. {costs} {fix}"


SAVE_CPU = "one save of the operator's training state: CPU ms (save_torch, median of 10)"
SAVE_WALL = "one save of the operator's training state: wall ms (save_torch, median of 10)"


def save_cost_of(b: Bench, state_file: Path) -> None:
    """Diagnostics: what one save of a real operator state costs (called where such a file exists)."""
    from ups.resume.files import load_torch, save_torch
    from ups.resume.saver import snapshot

    state = snapshot(load_torch(state_file))
    cpu, wall = [], []
    for _ in range(10):
        start, start_cpu = time.perf_counter(), time.thread_time()
        save_torch(state, b.work / "save_cost_of.pt")
        cpu.append(1000 * (time.thread_time() - start_cpu))
        wall.append(1000 * (time.perf_counter() - start))
    b.diagnostics[SAVE_CPU] = median(cpu)
    b.diagnostics[SAVE_WALL] = median(wall)
