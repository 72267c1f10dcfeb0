"""The remote side of a training job: remote download, W&B run, background sync, final flush.

`ups.job` runs these while the checkpoint directory is locked:
a second trainer started by mistake fails on the lock *before* it downloads over
the first one's files or logs into its W&B run. In order:

0. `--checkpoint-remote URI`: probe it (write, read back, delete one object), so a
   missing bucket or a refused key is one line now, not after the training.
1. `--resume-from URI` / `--resume-from-wandb RUN_ID`: download and verify the
   latest remote snapshot into the checkpoint directory (then `--auto-resume`).
2. Start or continue the W&B run (the id persisted in metadata.json, the one given,
   or a new one for `--resume-mode never`).
3. Start the background sync to the remote: `--checkpoint-remote` /
   `checkpoint.remote`, else the W&B run's artifact when W&B logging is on.
4. On the way out, whatever happened: flush the sync (bounded), print the outcome,
   finish the W&B run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator, Optional

from ups.config import Config
from ups.errors import RemoteError
from ups.remote.download import describe_download, download_checkpoint
from ups.remote.store import NoRemoteCheckpoint, RemoteStore, open_store
from ups.remote.takeover import check_remote_target
from ups.remote.sync import FLUSH_SECONDS, RemoteSync
from ups.remote.wandb_run import finish_wandb, start_wandb
from ups.remote.wandb_store import WandbStore
from ups.resume.signals import TrainingInterrupted


@contextlib.contextmanager
def _stop_signals_noted() -> Iterator[threading.Event]:
    """While the final flush waits, SIGTERM / SIGINT set an event instead of going unheard.

    (The training's own handlers only set a flag the training loop reads, and the loop has
    ended by now.) The previous handlers are restored afterwards; off the main thread,
    where Python allows no handlers, the event simply never fires.
    """
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = {sig: signal.signal(sig, lambda *_: event.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield event
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Session:
    """The remote side of a training job: what to download first, where to log and copy to."""

    def __init__(self, cfg: Config, *, run_id: Optional[str], resume_from: Optional[str],
                 mode: str, remote: Optional[str], take_over: bool = False):
        self.cfg, self.take_over = cfg, take_over
        self.run_id, self.resume_from, self.mode, self.remote = run_id, resume_from, mode, remote

    def pull(self) -> Optional[RemoteStore]:
        """Probe the remote target, download the snapshot asked for, check the target is ours:
        returns the target store (None without `--checkpoint-remote`)."""
        target = open_store(self.remote) if self.remote else None  # a bad URI fails before anything runs
        if target is not None:
            target.probe()  # no bucket, no rights, no credentials: one line now, not after the training
        self._download()
        if target is not None:  # before the W&B run and the first upload: another run's copy stays intact
            check_remote_target(target, self.cfg.checkpoint_dir, self.take_over)
        return target

    @contextlib.contextmanager
    def connected(self, target: Optional[RemoteStore]) -> Iterator[tuple[Any, tuple]]:
        """The W&B run, then the background sync: yields (W&B run or None, observers of progress).
        On the way out, whatever happened: flush the sync (bounded), finish the W&B run."""
        run = start_wandb(self.cfg, self.cfg.checkpoint_dir, run_id=None if self.mode == "never" else self.run_id,
                          resume=self.mode if (self.run_id or self.resume_from) else None)
        if run is None and self.run_id:
            print(f"Note: W&B logging is off (logging.wandb / WANDB_MODE): the checkpoints of run {self.run_id} "
                  "were downloaded, but this session logs nothing to it", flush=True)
        sync = self._start_sync(target, run)
        ending, code = "failed", 1
        try:
            yield run, ((sync,) if sync else ())
            ending, code = "completed", 0
        except TrainingInterrupted as e:
            ending, code = "interrupted", e.exit_code
            raise
        finally:
            grace = self.cfg.checkpoint.flush_on_signal_seconds
            bound = grace if ending == "interrupted" else FLUSH_SECONDS[ending]
            with _stop_signals_noted() as signalled:  # a SIGTERM during a long final flush cuts it to the grace
                outcome = sync.close(bound, signalled=signalled, grace=grace) if sync else None
            finish_wandb(run, code)
        if outcome is not None and not outcome.ok:
            raise RemoteError(f"training finished, but the remote copy at {sync.store.description} is not up to "
                              "date (see above); the local checkpoint directory is complete")

    def _download(self) -> None:
        """Fetch the remote snapshot, or say why training starts fresh (`--resume-mode must`: fail)."""
        if not (self.run_id or self.resume_from):
            return
        store: RemoteStore
        try:
            if self.run_id:
                w = self.cfg.logging.wandb
                store = WandbStore(self.run_id, entity=w.entity, project=w.project)
                api = store.api()
                store.check_run(api)
                reader = store.open_reader(api)
            else:
                store = open_store(self.resume_from)
                reader = store.open_reader()
            print(f"📥 Downloading checkpoints from {store.description} ...", flush=True)
            report = download_checkpoint(store, self.cfg.checkpoint_dir, reader=reader)
        except NoRemoteCheckpoint as e:
            if self.mode == "must":
                raise RemoteError(f"{e}; --resume-mode must needs an existing run with checkpoints "
                                  "(use --resume-mode allow to start fresh instead)") from e
            print(f"{e}: starting training from scratch (--resume-mode {self.mode})", flush=True)
            return
        print(describe_download(report, self.cfg.checkpoint_dir), flush=True)

    def _start_sync(self, target: Optional[RemoteStore], run: Any) -> Optional[RemoteSync]:
        if target is None and run is not None:
            target = WandbStore.for_run(run)
        if target is None:
            return None
        every = self.cfg.checkpoint.upload_every_seconds
        print(f"☁️  Keeping a remote copy at {target.description} (states every {every:g}s, "
              "completed stages at once)", flush=True)
        return RemoteSync(target, self.cfg.checkpoint_dir, every).start()
