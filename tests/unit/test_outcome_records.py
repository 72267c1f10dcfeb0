"""The outcome and heartbeat records in a `file://` remote: written whole, read back, data first."""

from __future__ import annotations

import json

from tests.remote_fixtures import operator_done_diffusion_running, save_state
from ups.remote.fsspec_store import FsspecStore
from ups.remote.outcome import HEARTBEAT_FILE, OUTCOME_FILE, read_heartbeat, read_outcome, write_outcome
from ups.remote.sync import RemoteSync


def test_an_outcome_is_read_back_as_written(tmp_path):
    remote = (tmp_path / "remote").as_uri()
    assert read_outcome(remote) is None
    write_outcome(remote, "failed", instance_id=77, exit_code=3, phase="data", action="stop")
    record = read_outcome(remote)
    assert (record.outcome, record.instance_id, record.exit_code, record.phase, record.by) == \
        ("failed", 77, 3, "data", "run")
    assert record.at.endswith("Z")


def test_a_torn_or_foreign_record_reads_as_none(tmp_path):
    (tmp_path / OUTCOME_FILE).write_text('{"outcome": "compl')
    (tmp_path / HEARTBEAT_FILE).write_text(json.dumps(["not", "a", "record"]))
    assert read_outcome(tmp_path.as_uri()) is None and read_heartbeat(tmp_path.as_uri()) is None


def test_the_sync_writes_a_heartbeat_after_each_publish_and_its_status_first(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTAINER_ID", "77")
    ckpt, remote = tmp_path / "ckpt", tmp_path / "remote"
    ckpt.mkdir()
    operator_done_diffusion_running(ckpt, step=8)
    sync = RemoteSync(FsspecStore(remote.as_uri()), ckpt, every_seconds=0, log=lambda m: None).start()
    assert sync.close(30).ok
    beat = read_heartbeat(remote.as_uri())
    assert beat.tag == "diff_residual-step-8" and beat.instance_id == 77
    status_time = (remote / "stage_status.json").stat().st_mtime_ns
    assert (remote / HEARTBEAT_FILE).stat().st_mtime_ns >= status_time  # data, status, then the heartbeat

    save_state(ckpt, "diff_residual", 12)
    sync = RemoteSync(FsspecStore(remote.as_uri()), ckpt, every_seconds=0, log=lambda m: None).start()
    assert sync.close(30).ok
    later = read_heartbeat(remote.as_uri())
    assert later.tag == "diff_residual-step-12" and later.unix >= beat.unix
