"""Rank 0's recorder of this attempt's time, and the source of the auto checkpoint interval.

The loop tells its stage meter when each step is done (`step_done`, a clock read
and two additions); saves are timed by a thin wrapper around the saver. The
record (`ups.resume.goodput`) is written into the status file under
`details.goodput` when the attempt begins, every `HEARTBEAT_SECONDS` while it
trains, after each stage's first step and at the end: so a killed attempt leaves its
last heartbeat behind, and the remote copy carries the record with the status.
Writing it costs one small atomic JSON write (milliseconds) every
`HEARTBEAT_SECONDS`; the per-step work is two clock reads.

The process start time is the kernel's (`/proc/self/stat` field 22, in clock
ticks after boot, against `/proc/uptime`; see proc(5)), so the start-up
counted includes the interpreter and `import torch`, not only what ups does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Optional

from ups.config import Config
from ups.resume import goodput as gp
from ups.resume.interval import Interval, IntervalInputs, auto_interval
from ups.resume.tracker import StageTracker

HEARTBEAT_SECONDS = 5.0
_SIGNAL_ENDS = {15: gp.SIGTERM, 2: gp.SIGINT}


def process_start_epoch() -> float:
    """When this process started (seconds since the epoch); now, where /proc cannot say."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
        ticks = int(fields[19])  # field 22 of proc(5); fields[0] is field 3
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])  # 10 ms resolution; `btime` in /proc/stat is whole seconds
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def end_of(error: Optional[BaseException]) -> str:
    """How an attempt ended, from what left the pipeline: nothing, a signal, or a failure."""
    if error is None:
        return gp.COMPLETED
    if isinstance(error, KeyboardInterrupt):
        return gp.SIGINT
    signum = getattr(error, "signum", None)
    if signum in _SIGNAL_ENDS:
        return _SIGNAL_ENDS[signum]
    return gp.SIGTERM if signum else gp.FAILURE


class RunAccounting:
    """The record of the pipeline run in `tracker`'s status file, and this attempt's place in it."""

    def __init__(self, tracker: StageTracker, cfg: Config, hooks: list[Any] = (),
                 clock: Callable[[], float] = time.time, host: Optional[str] = None):
        self.tracker, self.cfg, self.hooks, self.clock = tracker, cfg, hooks, clock
        # Vast.ai gives each instance's container its own CONTAINER_ID (ups.launch.self_stop); elsewhere the
        # hostname tells machines apart (a restarted docker container keeps its hostname).
        self.host = host or os.environ.get("CONTAINER_ID") or socket.gethostname()
        self.started = process_start_epoch()
        self.record = gp.valid_record(tracker.get_detail(gp.GOODPUT_KEY))
        gp.close_unfinished(self.record)  # in memory: the plan's interval already counts a killed attempt
        self.attempt: Optional[dict[str, Any]] = None
        self._last_write = float("-inf")
        self._interval: Optional[Interval] = None

    # --- the attempt ------------------------------------------------------

    def begin(self) -> None:
        """This process trains: close what killed attempts left open, append this one, write."""
        self.attempt = gp.begin_attempt(self.record, host=self.host, pid=os.getpid(), started_at=iso(self.started))
        self._interval = None
        self.write()

    def end(self, error: Optional[BaseException], wandb_run: Any = None) -> None:
        if self.attempt is None:
            return
        self._refresh()
        gp.end_attempt(self.record, self.attempt, end_of(error))
        self.write()
        if wandb_run is not None:
            try:
                wandb_run.summary.update(wandb_summary(self.summary()))
            except Exception as e:  # W&B trouble must not change how the run ends; the status has it all
                print(f"⚠️  could not set the W&B goodput summary: {type(e).__name__}: {e}", flush=True)

    @contextlib.contextmanager
    def recording(self, wandb_run: Callable[[], Any] = lambda: None) -> Iterator["RunAccounting"]:
        """Begin this attempt; on the way out record how it ended (the W&B run gets the totals)."""
        self.begin()
        try:
            yield self
        except BaseException as e:
            with contextlib.suppress(Exception):  # never mask what stopped the run
                self.end(e, wandb_run())
            raise
        self.end(None, wandb_run())

    def plan_lines(self) -> list[str]:
        """What the resume plan says about goodput so far and the checkpoint interval."""
        lines = []
        if self.record["attempts"]:
            lines.append("  " + describe_summary(gp.summarize(self.record)))
        if self.is_auto:
            lines.append("  " + self.interval().describe())
        return lines

    def write(self) -> None:
        self._refresh()
        self.tracker.set_detail(gp.GOODPUT_KEY, self.record)
        self._last_write = self.clock()

    def heartbeat(self) -> None:
        if self.clock() - self._last_write >= HEARTBEAT_SECONDS:
            self.write()

    def _refresh(self) -> None:
        if self.attempt is None:
            return
        now = self.clock()
        self.attempt["wall_s"] = max(0.0, now - self.started)
        self.attempt["last_seen_at"] = iso(now)
        self.attempt["upload_s"] = sum(float(getattr(h, "upload_seconds", 0.0)) for h in self.hooks)

    def summary(self) -> dict[str, Any]:
        self._refresh()
        return gp.summarize(self.record)

    # --- the auto interval --------------------------------------------------

    @property
    def is_auto(self) -> bool:
        return self.cfg.checkpoint.every_seconds == "auto"

    def interval(self) -> Interval:
        """T from the costs and failures recorded so far (cached until a save or attempt changes them)."""
        if self._interval is None:
            a = self.cfg.checkpoint.auto
            self._refresh()
            self._interval = auto_interval(IntervalInputs(
                save_cost_s=gp.save_cost_s(self.record, self.attempt), failures=gp.failures(self.record),
                exposure_s=gp.exposure_s(self.record), prior_mtbf_s=a.prior_mtbf_seconds,
                min_failures=a.min_failures, min_s=a.min_seconds, max_s=a.max_seconds))
        return self._interval

    def interval_seconds(self) -> float:
        return self.interval().seconds

    def forget_interval(self) -> None:
        self._interval = None

    # --- a stage ------------------------------------------------------------

    def stage(self, name: str, start_step: int) -> "StageMeter":
        return StageMeter(self, name, start_step)


def wandb_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The totals as flat W&B summary keys (`goodput/...`)."""
    out = {f"goodput/{k}": v for k, v in summary.items() if isinstance(v, (int, float)) and v is not None}
    out.update({f"goodput/interruptions_{k}": n for k, n in summary["interruptions"].items()})
    return out


def describe_summary(s: dict[str, Any]) -> str:
    kinds = ", ".join(f"{n} {k}" for k, n in s["interruptions"].items() if n) or "none"
    value = "n/a" if s["goodput"] is None else f"{s['goodput']:.3f}"
    return (f"goodput so far: {value} over {s['attempts']} attempt(s), {s['wall_s']:.1f} s "
            f"(interruptions: {kinds}; redone {s['recomputed_steps']} steps, {s['recomputed_s']:.1f} s; "
            f"restarts {s['restart_s']:.1f} s; blocked by saves {s['save_blocked_s']:.1f} s)")


class StageMeter:
    """What the loop calls once per finished step; the saver wrapper reports its waits here."""

    def __init__(self, acct: RunAccounting, stage: str, start_step: int):
        self.acct, self.stage, self.start_step = acct, stage, start_step
        self._last: Optional[float] = None
        self._blocked = 0.0  # seconds blocked by saves since the last step

    def step_done(self, step: int) -> None:
        now = time.perf_counter()
        attempt, acct = self.acct.attempt, self.acct
        if attempt is None:
            return
        if self._last is None:
            self._first_step(attempt)
        else:
            spent = max(0.0, now - self._last - self._blocked)
            mine = attempt["stages"].setdefault(self.stage, {"steps": 0, "step_s": 0.0})
            for target in (attempt, mine):
                target["step_s"] += spent
                target["steps"] += 1
        self._last, self._blocked = now, 0.0
        attempt["at"] = {"stage": self.stage, "step": step}
        acct.heartbeat()

    def _first_step(self, attempt: dict[str, Any]) -> None:
        acct = self.acct
        if attempt["startup_s"] is None:
            attempt["startup_s"] = max(0.0, acct.clock() - acct.started)
            if self.start_step:
                attempt["resumed"] = {"stage": self.stage, "step": self.start_step}
        gp.settle_recomputation(acct.record, self.stage, self.start_step, attempt["startup_s"])
        attempt["at"] = {"stage": self.stage, "step": self.start_step + 1}
        acct.write()  # the start-up and where the stage began survive a kill before the first heartbeat

    def blocked(self, seconds: float, periodic: bool, save: bool = True) -> None:
        """`seconds` the training thread waited: in a save (`save`), or for the write in flight."""
        attempt = self.acct.attempt
        if attempt is None:
            return
        self._blocked += seconds
        attempt["save_blocked_s"] += seconds
        attempt["saves"] += int(save)
        if periodic:
            attempt["periodic_save_s"] += seconds
            attempt["periodic_saves"] += 1
            self.acct.forget_interval()  # the save cost changed: T is recomputed at the next ask


class NullMeter:
    """What the loop holds where nothing is recorded (ranks other than 0, direct library use)."""

    def step_done(self, step: int) -> None:
        pass

    def blocked(self, seconds: float, periodic: bool, save: bool = True) -> None:
        pass


class TimedSaver:
    """The stage's saver, with the time each call holds up the training thread told to a meter."""

    def __init__(self, saver: Any, meter: Any):
        self._saver, self._meter = saver, meter

    def save(self, state: dict[str, Any], *, wait: bool = False) -> None:
        started = time.perf_counter()
        try:
            self._saver.save(state, wait=wait)
        finally:
            self._meter.blocked(time.perf_counter() - started, periodic=not wait)

    def wait(self) -> None:
        started = time.perf_counter()
        try:
            self._saver.wait()
        finally:
            self._meter.blocked(time.perf_counter() - started, periodic=False, save=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._saver, name)
