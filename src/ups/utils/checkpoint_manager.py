"""The seed's `CheckpointManager`: fetch a run's checkpoints onto this machine, continue its W&B run.

    manager = CheckpointManager(checkpoint_dir=Path("checkpoints"))
    downloaded = manager.download_checkpoints_from_run(run_id, checkpoint_files=None, force=False)
    manager.setup_wandb_resume(run_id=run_id, resume_mode="allow")
    # then: python scripts/train.py --config ... --auto-resume

Files land in `checkpoint_dir` itself, exactly where training looks for them,
each verified against the digest in the downloaded `stage_status.json`
(`ups.remote.download`). The W&B choice is persisted in `metadata.json`, so the
training process started afterwards continues the same run. Each call holds the
checkpoint directory's lock: it never writes under a running trainer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ups.remote.download import DownloadReport, describe_download, download_checkpoint
from ups.remote.store import RemoteStore, open_store
from ups.remote.wandb_run import validate_resume_mode, validate_run_id
from ups.remote.wandb_store import WandbStore
from ups.resume.lock import CheckpointDirLock
from ups.resume.metadata import read_metadata, update_metadata

DEFAULT_PROJECT = "ups"


class CheckpointManager:
    def __init__(self, checkpoint_dir: str | Path = "checkpoints", *, project: Optional[str] = None,
                 entity: Optional[str] = None, log: Callable[[str], Any] = print):
        self.checkpoint_dir = Path(checkpoint_dir)
        self.project = project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
        self.entity = entity or os.environ.get("WANDB_ENTITY") or None
        self.log = log
        self.last_report: Optional[DownloadReport] = None

    def wandb_store(self, run_id: str) -> WandbStore:
        return WandbStore(validate_run_id(run_id), entity=self.entity, project=self.project)

    def download_checkpoints_from_run(
        self, run_id: str, checkpoint_files: Optional[Sequence[str]] = None, force: bool = False
    ) -> list[Path]:
        """Download the latest checkpoint snapshot of W&B run `run_id`; returns the files written.

        Raises NoRemoteCheckpoint (a RemoteError) when the run or its checkpoints do
        not exist, RemoteError when W&B cannot be reached.
        """
        store = self.wandb_store(run_id)
        api = store.api()
        store.check_run(api)
        return self._download(store, force, checkpoint_files, reader=store.open_reader(api))

    def download_from(self, uri: str, checkpoint_files: Optional[Sequence[str]] = None,
                      force: bool = False) -> list[Path]:
        """The same from an fsspec URI (file://, s3://, gs://, ...)."""
        return self._download(open_store(uri), force, checkpoint_files)

    def _download(self, store: RemoteStore, force: bool, only: Optional[Sequence[str]], reader=None) -> list[Path]:
        with CheckpointDirLock(self.checkpoint_dir):
            report = download_checkpoint(store, self.checkpoint_dir, force=force, only=only, log=self.log,
                                         reader=reader)
        self.last_report = report
        self.log(describe_download(report, self.checkpoint_dir))
        return report.downloaded

    def setup_wandb_resume(self, run_id: str, resume_mode: str = "allow") -> dict[str, Any]:
        """Make the next training start continue W&B run `run_id` (`never`: start a new run).

        Persisted in metadata.json (a later process reads it) and exported as
        WANDB_RUN_ID / WANDB_RESUME for a `wandb.init` in this process.
        """
        run_id, resume_mode = validate_run_id(run_id), validate_resume_mode(resume_mode)
        with CheckpointDirLock(self.checkpoint_dir):
            info = dict(read_metadata(self.checkpoint_dir).get("training_wandb") or {})
            if resume_mode == "never":
                info = {"resume": "never", "previous_id": run_id}
                os.environ.pop("WANDB_RUN_ID", None)
            else:
                info.update(id=run_id, resume=resume_mode)
                os.environ["WANDB_RUN_ID"] = run_id
            os.environ["WANDB_RESUME"] = resume_mode
            update_metadata(self.checkpoint_dir, training_wandb=info)
        return info
