"""Keep the remote copy current from a background thread, never from the training thread.

The runner calls `on_state_saved` (from the checkpoint writer thread) and
`on_stage_completed` (training thread) after progress is durable; both only set
a flag. The sync thread then takes a snapshot — the status file's bytes and the
files they name — and publishes it: data files first, the status last. A stage
that completes is published at once; resumable states at most every
`checkpoint.upload_every_seconds` (the newest one wins, nothing queues up). A
failed upload is retried with backoff and never stops training. `close` makes
one last publish of whatever the directory holds, waits a bounded time and
prints the outcome.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ups.errors import RemoteError, one_line
from ups.resume.layout import METADATA_FILE, METRICS_FILE, STATUS_FILE
from ups.resume.tracker import parse_status
from ups.remote.object_store import is_permanent
from ups.remote.outcome import heartbeat_writer
from ups.remote.snapshot import Snapshot, named_files, snapshot_tag
from ups.remote.store import PublishReport, RemoteStore, SnapshotChanged

SIDE_FILES = (METADATA_FILE, METRICS_FILE)
BACKOFF_SECONDS = (2.0, 5.0, 15.0, 30.0, 60.0)
CHANGED_RETRY_SECONDS = 0.2  # a file was replaced mid-upload: the next snapshot is a moment away
MAX_CHANGED_IN_ROW = 10  # beyond that the status names a file that is gone for good: back off
# Bounded waits for the last upload on exit: after a normal end the outputs are the
# point of the run. After SIGTERM a preempted machine has a short grace period:
# `checkpoint.flush_on_signal_seconds`.
FLUSH_SECONDS = {"completed": 600.0, "failed": 120.0}


def take_snapshot(checkpoint_dir: Path) -> Optional[Snapshot]:
    """The status as it is now and the files it names (None before the status exists)."""
    checkpoint_dir = Path(checkpoint_dir)
    try:
        status_bytes = (checkpoint_dir / STATUS_FILE).read_bytes()
    except FileNotFoundError:
        return None
    status = parse_status(status_bytes, str(checkpoint_dir / STATUS_FILE), str(checkpoint_dir))
    extras = {n: (checkpoint_dir / n).read_bytes() for n in SIDE_FILES if (checkpoint_dir / n).is_file()}
    return Snapshot(status_bytes, tuple(named_files(status)), snapshot_tag(status), extras)


def next_sync_at(*, dirty: bool, urgent: bool, last_publish: float, every: float, retry_at: float,
                 now: float) -> Optional[float]:
    """When the next publish should start (monotonic seconds), or None: nothing to do."""
    if not dirty:
        return None
    earliest = now if urgent else last_publish + every
    return max(earliest, retry_at)


@dataclass
class SyncOutcome:
    ok: bool
    message: str


class RemoteSync:
    """A hook for `RunOptions.hooks` that mirrors a checkpoint directory to a store."""

    def __init__(self, store: RemoteStore, checkpoint_dir: Path, every_seconds: float,
                 log: Callable[[str], Any] = print, clock: Callable[[], float] = time.monotonic):
        self.store, self.dir, self.every = store, Path(checkpoint_dir), float(every_seconds)
        self.log, self.clock = log, clock
        self._cond = threading.Condition()
        self._dirty = self._urgent = self._closing = self._abandoned = False
        self._last_publish = float("-inf")
        self._retry_at = float("-inf")
        self._failures_in_row = self._changes_in_row = 0
        self._thread: Optional[threading.Thread] = None
        self.upload_seconds = 0.0  # time spent publishing, read by the run's goodput record
        self.last_tag: Optional[str] = None
        self.last_error: Optional[str] = None
        self._heartbeat = heartbeat_writer(store)  # written after each publish: data first, status, then this

    # --- hooks (any thread) ------------------------------------------------------

    def on_state_saved(self, stage: str, record: dict[str, Any]) -> None:
        self.request(urgent=False)

    def on_stage_completed(self, stage: str) -> None:
        self.request(urgent=True)

    def request(self, urgent: bool) -> None:
        with self._cond:
            self._dirty = True
            self._urgent = self._urgent or urgent
            self._cond.notify_all()

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> "RemoteSync":
        """Start the thread and publish what the directory holds now."""
        self._thread = threading.Thread(target=self._run, name="ups-remote-sync", daemon=True)
        self._thread.start()
        self.request(urgent=True)
        return self

    def close(self, timeout: float, signalled: Optional[threading.Event] = None,
              grace: Optional[float] = None) -> SyncOutcome:
        """Publish the final state, wait at most `timeout` seconds, print and return the outcome.

        A stop signal during the wait (`signalled`) cuts what is left of it to `grace`
        seconds: a machine being preempted has no time for a 600 s flush.
        """
        started = self.clock()
        with self._cond:
            self._closing = True
            self._dirty = self._urgent = True
            self._retry_at = float("-inf")
            self._cond.notify_all()
        cut = self._join(started + timeout, signalled, grace)
        pending = self._thread is not None and self._thread.is_alive()
        with self._cond:
            self._abandoned = True
            self._cond.notify_all()
        outcome = self._outcome(pending, timeout, self.clock() - started, cut)
        self.log(outcome.message)
        self.store.close()
        return outcome

    def _join(self, deadline: float, signalled: Optional[threading.Event], grace: Optional[float]) -> bool:
        """Wait for the thread until `deadline`; True when a signal cut the wait short."""
        cut = False
        while self._thread is not None and self._thread.is_alive():
            now = self.clock()
            if not cut and signalled is not None and signalled.is_set() and grace is not None:
                cut, deadline = True, min(deadline, now + grace)
            if now >= deadline:
                break
            self._thread.join(min(0.2, deadline - now))
        return cut

    def _outcome(self, pending: bool, timeout: float, waited: float, cut: bool = False) -> SyncOutcome:
        holds = f"it holds {self.last_tag}" if self.last_tag else "it holds nothing from this run"
        if pending:
            why = f"last error: {self.last_error}" if self.last_error else "the upload is still running"
            within = "before the stop signal's grace ran out" if cut else f"within {timeout:.0f}s"
            return SyncOutcome(False, f"⚠️  Remote copy NOT up to date: {self.store.description} not flushed "
                                      f"{within} ({why}); {holds}. "
                                      "The local checkpoint directory is complete.")
        if self.last_error:
            return SyncOutcome(False, f"⚠️  Remote copy NOT up to date: {self.store.description}: {self.last_error}; "
                                      f"{holds}. The local checkpoint directory is complete.")
        note = self.store.pending_note()
        if note:  # nothing left the machine: say where it is, not "up to date"
            return SyncOutcome(True, f"✓ Checkpoints logged offline to {self.store.description} ({self.last_tag}): "
                                     f"{note}")
        return SyncOutcome(True, f"✓ Remote copy up to date: {self.store.description} ({self.last_tag}, "
                                 f"flushed in {waited:.1f}s)")

    # --- the thread -------------------------------------------------------------

    def _run(self) -> None:
        while self._wait_until_due():
            self._sync_once()

    def _wait_until_due(self) -> bool:
        """Block until a publish is due; False when the thread should end."""
        with self._cond:
            while True:
                if self._abandoned or (self._closing and not self._dirty):
                    return False
                now = self.clock()
                at = next_sync_at(dirty=self._dirty, urgent=self._urgent or self._closing,
                                  last_publish=self._last_publish, every=self.every, retry_at=self._retry_at, now=now)
                if at is not None and at <= now:
                    self._dirty = self._urgent = False
                    return True
                self._cond.wait(timeout=None if at is None else at - now)

    def _sync_once(self) -> None:
        try:
            snap = take_snapshot(self.dir)
            if snap is None:
                return  # nothing recorded yet; the first saved state asks again
            if not self.store.should_publish(snap, final=self._closing):
                return  # e.g. offline W&B: only completed stages and the last state are logged
            report = self.store.publish(snap, self.dir)
        except SnapshotChanged as e:
            self._changes_in_row += 1
            if self._changes_in_row <= MAX_CHANGED_IN_ROW:
                self._retry(CHANGED_RETRY_SECONDS)
                return
            self._failed(f"the status keeps naming files that are not there ({one_line(e, typed=True)})")
            return
        except Exception as e:  # a network error must never stop training
            why = one_line(e, typed=True)
            self._failed(why if isinstance(e, RemoteError) else f"upload failed: {why}",
                         permanent=is_permanent(e))
            return
        self._published(snap, report)

    def _failed(self, error: str, permanent: bool = False) -> None:
        self.last_error = error
        if permanent and self._closing:
            # No bucket, no rights, no credentials: waiting out the exit grace period fixes nothing.
            self.log(f"⚠️  remote sync to {self.store.description} failed ({error}); not retried")
            with self._cond:
                self._abandoned = True
            return
        # A permanent error waits the longest backoff: it is retried (the operator may fix the
        # rights meanwhile) but never hammers the store.
        step = len(BACKOFF_SECONDS) - 1 if permanent else min(self._failures_in_row, len(BACKOFF_SECONDS) - 1)
        delay = BACKOFF_SECONDS[step]
        self._failures_in_row += 1
        self.log(f"⚠️  remote sync to {self.store.description} failed ({error}); retrying in {delay:.0f}s")
        self._retry(delay)

    def _retry(self, delay: float) -> None:
        with self._cond:
            self._dirty = True
            self._retry_at = self.clock() + delay

    def _published(self, snap: Snapshot, report: PublishReport) -> None:
        self._last_publish = self.clock()
        self._failures_in_row = self._changes_in_row = 0
        self.last_error = None
        self.last_tag = snap.tag
        if report.skipped:
            return
        self.upload_seconds += float(report.seconds or 0.0)
        self._heartbeat(snap)
        if report.uploaded:  # status-only publishes (progress counters, metrics) are not worth a line
            self.log(f"☁️  synced {snap.tag} to {self.store.description}: {report.uploaded} file(s), "
                     f"{report.bytes / 1e6:.2f} MB in {report.seconds:.2f}s")
