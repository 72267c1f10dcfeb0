"""One stage's checkpointing, behind the small API the loop calls every step.

After torchtitan's `CheckpointManager` (torchtitan `components/checkpoint.py`):
the loop calls `save(step, state, last=..., stop=...)` after every step and the
checkpointer decides whether to act (`SavePolicy.decide`, the pure function the
unit tests check, with the time-based half agreed across the ranks of a group).
It owns the state saver, the status updates of a running stage (`load` records
it started or resumed, each committed state its progress, `complete`, `fail`,
`interrupted`) and the observers: the goodput meter (time a save holds up
training) and the remote sync (`on_state_saved`, `on_stage_completed`).

Under torchrun every rank has one; only rank 0's has a tracker and a real saver,
so `load` runs on rank 0 and the runner sends its result to the other ranks.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ups.config import Config
from ups.resume.atomic import file_digest
from ups.resume.faults import crash_point
from ups.resume.layout import STATE_DIR, state_file_name
from ups.resume.metadata import update_metadata
from ups.resume.policy import SavePolicy
from ups.resume.saver import NullSaver, StateSaver, find_resume_state
from ups.resume.tracker import StageTracker, utc_now
from ups.resume.verify import OutputCatalog
from ups.stages import StageSpec
from ups.training.accounting import NullMeter, TimedSaver
from ups.parallel import Solo, world_change_notice

Say = Callable[[str], Any]


@dataclass
class Opened:
    """What rank 0 sends every rank when a stage starts training."""

    fingerprint: str
    config: dict[str, Any]
    resume: Optional[dict[str, Any]]


class Checkpointer:
    def __init__(self, policy: SavePolicy, group: Solo, saver: Any = None, *, stage: Optional[StageSpec] = None,
                 cfg: Optional[Config] = None, tracker: Optional[StageTracker] = None, observers: tuple = (),
                 say: Say = lambda m: print(m, flush=True)):
        self.policy, self.group, self.stage, self.cfg, self.tracker = policy, group, stage, cfg, tracker
        self.observers, self.say = tuple(observers), say
        self.saver = saver if saver is not None else NullSaver()
        self.meter: Any = NullMeter()
        self.last_saved_step, self._saved_at = 0, time.monotonic()
        self.last_record: Optional[dict[str, Any]] = None  # the newest state committed to disk
        self.opened: Optional[Opened] = None

    @classmethod
    def for_stage(cls, stage: StageSpec, cfg: Config, group: Solo, policy: SavePolicy,
                  tracker: Optional[StageTracker], observers: tuple = ()) -> "Checkpointer":
        """Rank 0's writes the stage's states and status; the other ranks' only take part in agreeing."""
        ckpt = cls(policy, group, stage=stage, cfg=cfg, tracker=tracker, observers=observers)
        if tracker is not None:
            ckpt.saver = StateSaver(cfg.checkpoint_dir / STATE_DIR / stage.name, ckpt._committed,
                                    keep=cfg.checkpoint.keep)
        return ckpt

    @staticmethod
    def discard_states(stage: StageSpec, cfg: Config) -> None:
        """Drop the resumable states a kill left for a stage that will not train (rank 0)."""
        StateSaver(cfg.checkpoint_dir / STATE_DIR / stage.name, None).clear()

    # --- start --------------------------------------------------------------

    def load(self, identity: tuple[str, dict[str, Any]], log: Any, total_steps: int, resume_from: Optional[int],
             check: Callable[[dict[str, Any]], Optional[str]]) -> Opened:
        """Rank 0: the state to continue from (`resume_from`: the step the plan named; None starts
        over), checked by `check`; then the stage recorded as running. `identity` is the stage's
        (fingerprint, config identity). Only a fully committed, verified state counts
        (`find_resume_state`)."""
        stage, cfg, tracker = self.stage, self.cfg, self.tracker
        fp, config = identity
        settings = cfg.stage(stage.name)
        resume = None
        if resume_from is not None:
            resume = find_resume_state(self.saver.state_dir, stage.name, fp,
                                       tracker.get_stage_status(stage.name).resume_state, self.say, check=check)
            if resume is None:
                self.say("  no usable saved state found; starting the stage over")
            elif resume["step"] != resume_from:  # an older state than the status named
                self._record_fallback(resume)
        update_metadata(cfg.checkpoint_dir, trained=False)  # true again only when every stage completes
        if resume is not None:
            notice = world_change_notice(stage.name, resume["step"], resume.get("world_size", 1),
                                         self.group.world_size, settings.batch_size)
            if notice:
                self.say(f"⚠️  {notice}")
            tracker.mark_stage_resumed(stage.name, total_epochs=settings.epochs, total_steps=total_steps)
            log.truncate(stage.name, after_step=resume["step"])
        else:
            self.saver.clear()
            tracker.mark_stage_started(stage.name, total_epochs=settings.epochs, total_steps=total_steps,
                                       fingerprint=fp, config=config)
            log.truncate(stage.name, after_step=0)
        return Opened(fp, config, resume)

    def begin(self, opened: Opened, meter: Any) -> None:
        """Every rank, once the stage is opened: where saving stands, and who is told of each save."""
        self.opened = opened
        self.last_saved_step = opened.resume["step"] if opened.resume else 0
        self._saved_at = time.monotonic()
        self.meter = meter
        self.saver = TimedSaver(self.saver, meter)

    def _record_fallback(self, resume: dict[str, Any]) -> None:
        """The status names the state actually continued from (a newer one was set aside, or never recorded)."""
        path = self.saver.state_dir / state_file_name(resume["step"])
        record = {"file": f"{self.saver.state_dir.name}/{path.name}", "step": resume["step"],
                  "epoch": resume["epoch"], **file_digest(path), "saved_at": utc_now()}
        self.tracker.record_progress(self.stage.name, step=resume["step"], epoch=resume["epoch"],
                                     resume_state=record)
        self.say(f"  continuing from the state at step {resume['step']} (the status now names it)")

    # --- every step -----------------------------------------------------------

    def save(self, step: int, state: Callable[[], dict[str, Any]], *, last: bool, stop: int) -> int:
        """After each step: save `state()` if the policy says so. `stop` is this rank's stop signal
        (0: none); returns the signal the group agreed on, after its state is durable on every rank."""
        since = time.monotonic() - self._saved_at
        # `asked` names the save it asks for, so a group acting a step later never saves twice.
        asked = self.last_saved_step + 1 if self.policy.is_time_due(step, self.last_saved_step, since) else 0
        signum, asked = self.group.agree(stop, asked)
        if self.policy.decide(step, self.last_saved_step, time_agreed=asked == self.last_saved_step + 1,
                              stop=bool(signum), last=last):
            self.saver.save(state(), wait=bool(signum))
            self.last_saved_step, self._saved_at = step, time.monotonic()
        if signum:
            self.group.barrier()  # no rank exits before rank 0's state is durable
        return signum

    def wait(self) -> None:
        self.saver.wait()

    def _committed(self, record: dict[str, Any]) -> None:
        """From the writer thread: a state is durable; the status names it, then the observers hear."""
        self.tracker.record_progress(self.stage.name, step=record["step"], epoch=record["epoch"], resume_state=record)
        self.last_record = record
        for observer in self.observers:
            observer.on_state_saved(self.stage.name, record)

    # --- end ------------------------------------------------------------------

    def complete(self, outputs: dict[str, Any], catalog: OutputCatalog) -> None:
        """Rank 0, with the outputs durable (and `catalog` told they changed): the stage recorded
        completed, then its states removed."""
        opened = self.opened
        name = self.stage.name
        catalog.forget(self.stage.files)
        crash_point(f"after-outputs:{name}")
        self.tracker.mark_stage_completed(name, self.stage.checkpoint, outputs=outputs,
                                          fingerprint=opened.fingerprint, config=opened.config)
        crash_point(f"after-stage:{name}")
        self.saver.clear()
        for observer in self.observers:
            observer.on_stage_completed(name)

    def interrupted(self, step: Optional[int] = None, epoch: Optional[int] = None) -> None:
        """A stop: at (step, epoch), whose state was saved; without them, the last committed state stands."""
        if self.tracker is None:
            return
        if step is None:
            last = self.last_record or {}
            with contextlib.suppress(Exception):  # a second Ctrl-C: record what is known, never mask it
                self.tracker.mark_stage_interrupted(self.stage.name, step=last.get("step", 0),
                                                    epoch=last.get("epoch", 0))
            return
        self.tracker.mark_stage_interrupted(self.stage.name, step=step, epoch=epoch)

    def fail(self, message: str) -> None:
        """The stage failed: let the last good state land, then record the error."""
        if self.tracker is None:
            return
        with contextlib.suppress(Exception):
            self.saver.wait()
        self.tracker.mark_stage_failed(self.stage.name, message)
