"""`CheckpointManager`: downloads land in the checkpoint dir, are re-hashed, retried, and a
file that never verifies is never vouched for; the W&B side goes through a fake `wandb.Api`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import wandb

from tests.fake_wandb import FakeApi
from tests.remote_fixtures import operator_done_diffusion_running, save_state
from ups.errors import ConfigError, RemoteError
from ups.remote.download import download_checkpoint
from ups.remote.fsspec_store import FsspecStore
from ups.remote.store import NoRemoteCheckpoint
from ups.remote.sync import take_snapshot
from ups.remote.wandb_run import persisted_resume_mode, persisted_run_id
from ups.resume.layout import METADATA_FILE, STATUS_FILE
from ups.resume.metadata import update_metadata
from ups.resume.tracker import StageTracker
from ups.utils.checkpoint_manager import CheckpointManager

KEY = "fakekey-0123456789abcdef0123456789abcdef"


@pytest.fixture
def remote(tmp_path) -> tuple[Path, str]:
    """A file:// remote holding: operator completed, diff_residual running (a state at step 8)."""
    src, remote = tmp_path / "machine-a", tmp_path / "remote"
    state = operator_done_diffusion_running(src)
    update_metadata(src, training_wandb={"id": "run42", "project": "p"})
    FsspecStore(remote.as_uri()).publish(take_snapshot(src), src)
    return remote, state


def quiet(_msg: str) -> None:
    pass


def test_downloads_land_in_the_checkpoint_dir_itself_verified(tmp_path, remote):
    remote_dir, state = remote
    dest = tmp_path / "fresh" / "checkpoints"
    got = CheckpointManager(dest, log=quiet).download_from(remote_dir.as_uri())
    for name in ("operator.pt", "operator_ema.pt", state, STATUS_FILE, METADATA_FILE):
        assert (dest / name).read_bytes() == (remote_dir / name).read_bytes(), name
    assert dest / "operator.pt" in got and dest / state in got
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["operator.pt", "operator_ema.pt", "state", STATUS_FILE, METADATA_FILE, ".train.lock"])
    assert persisted_run_id(dest) == "run42"


class FlakyReader:
    """Serves the remote, but hands back a damaged copy of `name` the first `times` fetches."""

    def __init__(self, inner, name: str, times: int):
        self.inner, self.name, self.times, self.fetches = inner, name, times, 0

    def read_bytes(self, name):
        return self.inner.read_bytes(name)

    def fetch(self, name, dest):
        self.inner.fetch(name, dest)
        if name == self.name:
            self.fetches += 1
            if self.fetches <= self.times:
                data = Path(dest).read_bytes()
                Path(dest).write_bytes(data[: len(data) // 2])  # truncated in transit


def test_a_truncated_download_is_fetched_again(tmp_path, remote):
    remote_dir, _ = remote
    store, dest, lines = FsspecStore(remote_dir.as_uri()), tmp_path / "dest", []
    reader = FlakyReader(store.open_reader(), "operator.pt", times=1)
    report = download_checkpoint(store, dest, reader=reader, log=lines.append)
    assert reader.fetches == 2 and report.unverified == []
    assert (dest / "operator.pt").read_bytes() == (remote_dir / "operator.pt").read_bytes()
    assert any("operator.pt failed (attempt 1/3)" in line and "truncated" in line for line in lines)


def test_a_file_that_never_verifies_is_not_installed_and_its_stage_reruns(tmp_path, remote):
    remote_dir, state = remote
    (remote_dir / "operator.pt").write_bytes(b"bit rot")
    (remote_dir / state).write_bytes(b"also rotten")
    dest = tmp_path / "dest"
    report = download_checkpoint(FsspecStore(remote_dir.as_uri()), dest, log=quiet)
    assert set(report.unverified) == {"operator.pt", state}
    assert not (dest / "operator.pt").exists() and not (dest / state).exists()
    tracker = StageTracker(dest, verbose=False)
    operator = tracker.get_stage_status("operator")
    assert operator.status == "failed" and operator.outputs is None
    assert "operator.pt was not downloaded and verified" in operator.error_message
    assert tracker.get_stage_status("diff_residual").resume_state is None


def test_files_already_present_and_verified_are_not_downloaded_again(tmp_path, remote):
    remote_dir, _ = remote
    dest = tmp_path / "dest"
    store = FsspecStore(remote_dir.as_uri())
    download_checkpoint(store, dest, log=quiet)
    (dest / STATUS_FILE).unlink()  # a fresh status must still be fetched
    reader = FlakyReader(store.open_reader(), "operator.pt", times=0)
    report = download_checkpoint(store, dest, reader=reader, log=quiet)
    assert reader.fetches == 0 and len(report.kept) == 3


def test_local_progress_that_is_further_along_is_kept(tmp_path, remote):
    remote_dir, state = remote
    dest = tmp_path / "dest"
    download_checkpoint(FsspecStore(remote_dir.as_uri()), dest, log=quiet)
    newer = save_state(dest, "diff_residual", 16)
    got = CheckpointManager(dest, log=quiet).download_from(remote_dir.as_uri())
    assert got == [] and StageTracker(dest, verbose=False).get_stage_status("diff_residual").step == 16
    assert (dest / newer).exists()
    forced = CheckpointManager(dest, log=quiet).download_from(remote_dir.as_uri(), force=True)
    assert dest / state in forced


def test_checkpoint_files_restricts_the_download_and_vouches_for_nothing_else(tmp_path, remote):
    remote_dir, state = remote
    dest = tmp_path / "dest"
    got = CheckpointManager(dest, log=quiet).download_from(remote_dir.as_uri(), checkpoint_files=["operator_ema.pt"])
    assert dest / "operator_ema.pt" in got and not (dest / "operator.pt").exists()
    assert StageTracker(dest, verbose=False).get_stage_status("operator").status == "failed"


def test_a_run_id_arriving_in_remote_metadata_is_validated(tmp_path, remote):
    remote_dir, _ = remote
    (remote_dir / METADATA_FILE).write_text(json.dumps({"training_wandb": {"id": "x; rm -rf /"}}))
    with pytest.raises(ConfigError, match="training_wandb.id from the remote.*not a valid W&B run id"):
        CheckpointManager(tmp_path / "dest", log=quiet).download_from(remote_dir.as_uri())


# --- W&B, at the wandb.Api boundary ------------------------------------------------


def test_download_checkpoints_from_run_reads_the_runs_artifact(tmp_path, remote, monkeypatch):
    remote_dir, state = remote
    fake = FakeApi({"run42": remote_dir})
    monkeypatch.setattr(wandb, "Api", fake)
    dest = tmp_path / "dest"
    got = CheckpointManager(dest, project="proj", entity="team", log=quiet).download_checkpoints_from_run("run42")
    assert (dest / state).read_bytes() == (remote_dir / state).read_bytes() and dest / state in got
    assert ("run", "team/proj/run42") in fake.calls
    assert ("artifact", "team/proj/ups-checkpoints-run42:latest", "ups-checkpoint") in fake.calls


def test_a_corrupt_artifact_download_is_retried(tmp_path, remote, monkeypatch):
    remote_dir, _ = remote

    def corrupt_once(name, path, attempt):
        if name == "operator_ema.pt" and attempt == 1:
            path.write_bytes(b"\0" * path.stat().st_size)

    fake = FakeApi({"run42": remote_dir}, corrupt=corrupt_once)
    monkeypatch.setattr(wandb, "Api", fake)
    CheckpointManager(tmp_path / "dest", log=quiet).download_checkpoints_from_run("run42")
    assert fake.downloads["operator_ema.pt"] == 2
    assert (tmp_path / "dest" / "operator_ema.pt").read_bytes() == (remote_dir / "operator_ema.pt").read_bytes()


def test_a_missing_run_or_a_run_without_checkpoints_is_no_remote_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(wandb, "Api", FakeApi({"empty1": None}))
    manager = CheckpointManager(tmp_path / "dest", log=quiet)
    with pytest.raises(NoRemoteCheckpoint, match="W&B run .*nosuch not found"):
        manager.download_checkpoints_from_run("nosuch")
    with pytest.raises(NoRemoteCheckpoint, match="has no checkpoints"):
        manager.download_checkpoints_from_run("empty1")


def test_an_invalid_run_id_is_refused_before_any_api_call(tmp_path, monkeypatch):
    fake = FakeApi({})
    monkeypatch.setattr(wandb, "Api", fake)
    with pytest.raises(ConfigError, match="not a valid W&B run id"):
        CheckpointManager(tmp_path).download_checkpoints_from_run("../../etc")
    assert fake.calls == []


def test_api_errors_never_echo_the_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setattr(wandb, "Api", FakeApi({}, error=RuntimeError(f"HTTP 401: bad api key {KEY}")))
    with pytest.raises(RemoteError) as info:
        CheckpointManager(tmp_path, log=quiet).download_checkpoints_from_run("run42")
    assert KEY not in str(info.value) and "***" in str(info.value)


def test_setup_wandb_resume_persists_the_run_for_the_next_training_process(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.delenv("WANDB_RESUME", raising=False)
    manager = CheckpointManager(tmp_path)
    manager.setup_wandb_resume("run42", resume_mode="must")
    assert persisted_run_id(tmp_path) == "run42" and persisted_resume_mode(tmp_path) == "must"
    assert os.environ["WANDB_RUN_ID"] == "run42" and os.environ["WANDB_RESUME"] == "must"
    manager.setup_wandb_resume("run42", resume_mode="never")
    info = json.loads((tmp_path / METADATA_FILE).read_text())["training_wandb"]
    assert "id" not in info and persisted_resume_mode(tmp_path) == "never"
    with pytest.raises(ConfigError):
        manager.setup_wandb_resume("run42", resume_mode="sometimes")
    with pytest.raises(ConfigError):
        manager.setup_wandb_resume("has space")
