"""The remote store: which files a snapshot holds, how it is published (data first, status
last), and the background sync that keeps it current. Real files in tmp_path; no network."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.remote_fixtures import complete_stage, operator_done_diffusion_running, save_state
from ups.errors import RemoteError
from ups.remote import fsspec_store
from ups.remote.fsspec_store import FsspecStore, stall_seconds
from ups.remote.snapshot import (
    is_remote_ahead, named_files, progress_key, snapshot_tag, state_relpath, without_unverified,
)
from ups.errors import redact
from ups.remote.store import PublishReport, RemoteStore, SnapshotChanged
from ups.remote.sync import RemoteSync, next_sync_at, take_snapshot
from ups.resume.layout import STATUS_FILE


def status_of(ckpt: Path) -> dict:
    return json.loads((ckpt / STATUS_FILE).read_text())


# --- what a snapshot holds (pure) ----------------------------------------------


def test_status_names_completed_outputs_and_the_running_stages_state(tmp_path):
    state = operator_done_diffusion_running(tmp_path)
    names = {f.name: f.stage for f in named_files(status_of(tmp_path))}
    assert names == {"operator.pt": "operator", "operator_ema.pt": "operator", state: "diff_residual"}


def test_saver_records_are_relative_to_the_state_dir(tmp_path):
    assert state_relpath({"file": "operator/step-000000004.pt"}) == "state/operator/step-000000004.pt"
    assert state_relpath({"file": "state/operator/step-000000004.pt"}) == "state/operator/step-000000004.pt"


def test_tag_names_the_running_stage_and_step_else_the_last_completed_stage(tmp_path):
    complete_stage(tmp_path, "operator", ("operator.pt", "operator_ema.pt"))
    assert snapshot_tag(status_of(tmp_path)) == "operator-completed"
    save_state(tmp_path, "diff_residual", 12, start=True)
    assert snapshot_tag(status_of(tmp_path)) == "diff_residual-step-12"


def test_progress_orders_completed_stages_before_saved_steps(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    save_state(a, "operator", 16, start=True)
    complete_stage(b, "operator", ("operator.pt", "operator_ema.pt"))
    assert progress_key(status_of(b)) > progress_key(status_of(a))
    assert is_remote_ahead(status_of(a), status_of(b)) and not is_remote_ahead(status_of(b), status_of(a))
    assert is_remote_ahead(None, status_of(a))


def test_a_completed_stage_whose_output_did_not_verify_becomes_failed_with_the_reason(tmp_path):
    state = operator_done_diffusion_running(tmp_path)
    status = status_of(tmp_path)
    bad = [f for f in named_files(status) if f.name in ("operator.pt", state)]
    out = without_unverified(status, bad, "did not verify")
    assert out["stages"]["operator"]["status"] == "failed"
    assert "operator.pt did not verify" in out["stages"]["operator"]["error_message"]
    assert "outputs" not in out["details"]["operator"]
    assert "resume_state" not in out["details"]["diff_residual"]
    assert named_files(out) == []
    assert status["stages"]["operator"]["status"] == "completed"  # the input is not modified


# --- publishing to an fsspec URI ------------------------------------------------


def recording(store: FsspecStore) -> list[str]:
    """Wrap the store's two writers to record the order names are committed in."""
    order: list[str] = []
    put_bytes, open_target = store._put_bytes, store._open_target

    def _put_bytes(name, data):
        put_bytes(name, data)
        order.append(name)

    def _open_target(name):
        order.append(name)
        return open_target(name)

    store._put_bytes, store._open_target = _put_bytes, _open_target
    return order


def test_publish_mirrors_the_layout_and_writes_the_status_last(tmp_path):
    ckpt, remote = tmp_path / "ckpt", tmp_path / "remote"
    state = operator_done_diffusion_running(ckpt)
    store = FsspecStore(remote.as_uri())
    order = recording(store)
    report = store.publish(take_snapshot(ckpt), ckpt)
    assert report.uploaded == 3
    assert order[-1] == STATUS_FILE and set(order[:3]) == {"operator.pt", "operator_ema.pt", state}
    for name in ("operator.pt", "operator_ema.pt", state, STATUS_FILE):
        assert (remote / name).read_bytes() == (ckpt / name).read_bytes()


def test_unchanged_files_are_not_uploaded_again_and_old_states_are_pruned(tmp_path):
    ckpt, remote = tmp_path / "ckpt", tmp_path / "remote"
    first = operator_done_diffusion_running(ckpt, step=4)
    store = FsspecStore(remote.as_uri())
    store.publish(take_snapshot(ckpt), ckpt)
    second = save_state(ckpt, "diff_residual", 8)
    assert store.publish(take_snapshot(ckpt), ckpt).uploaded == 1
    assert (remote / first).exists(), "the previous status's state is kept for a reader that fetched it"
    third = save_state(ckpt, "diff_residual", 12)
    store.publish(take_snapshot(ckpt), ckpt)
    assert not (remote / first).exists() and (remote / second).exists() and (remote / third).exists()
    assert store.publish(take_snapshot(ckpt), ckpt).skipped


def test_a_file_replaced_after_the_snapshot_aborts_before_the_status_is_written(tmp_path):
    ckpt, remote = tmp_path / "ckpt", tmp_path / "remote"
    operator_done_diffusion_running(ckpt)
    snap = take_snapshot(ckpt)
    (ckpt / "operator.pt").write_bytes(b"retrained in the meantime")
    with pytest.raises(SnapshotChanged):
        FsspecStore(remote.as_uri()).publish(snap, ckpt)
    assert not (remote / STATUS_FILE).exists()


def test_a_new_uploader_skips_files_the_remote_holds_and_clears_a_killed_uploads_temp(tmp_path):
    ckpt, remote = tmp_path / "ckpt", tmp_path / "remote"
    operator_done_diffusion_running(ckpt)
    FsspecStore(remote.as_uri()).publish(take_snapshot(ckpt), ckpt)
    leftover = remote / "state" / "diff_residual" / ".tmp-step-000000012.pt.abc"
    leftover.write_bytes(b"half a file")
    save_state(ckpt, "diff_residual", 12)
    assert FsspecStore(remote.as_uri()).publish(take_snapshot(ckpt), ckpt).uploaded == 1
    assert not leftover.exists()


def test_an_object_store_backend_round_trips_through_the_reader(tmp_path):
    ckpt = tmp_path / "ckpt"
    state = operator_done_diffusion_running(ckpt)
    store = FsspecStore("memory://ups-test-bucket/run1")
    store.publish(take_snapshot(ckpt), ckpt)
    reader = FsspecStore("memory://ups-test-bucket/run1").open_reader()
    assert reader.read_bytes(STATUS_FILE) == (ckpt / STATUS_FILE).read_bytes()
    reader.fetch(state, tmp_path / "copy.pt")
    assert (tmp_path / "copy.pt").read_bytes() == (ckpt / state).read_bytes()
    assert reader.read_bytes("absent.json") is None


def test_bad_uris_fail_with_one_clear_line():
    with pytest.raises(RemoteError, match="no credentials in the URI"):
        FsspecStore("s3://AKIA:secret@bucket/run")
    with pytest.raises(RemoteError, match="Protocol not known"):
        FsspecStore("nosuchproto://bucket/run")


@pytest.mark.parametrize("uri, module, extra", [("s3://bucket/run", "s3fs", "s3"), ("gs://bucket/run", "gcsfs", "gcs")])
def test_a_cloud_uri_without_its_backend_names_the_extra_to_install(uri, module, extra):
    pytest.importorskip("fsspec")
    try:
        __import__(module)
        pytest.skip(f"{module} is installed")
    except ImportError:
        pass
    with pytest.raises(RemoteError, match=rf"pip install 'ups\[{extra}\]'"):
        FsspecStore(uri)


def test_an_empty_remote_says_it_holds_no_checkpoint(tmp_path):
    with pytest.raises(RemoteError, match="holds no checkpoint"):
        FsspecStore((tmp_path / "empty").as_uri()).open_reader()


def test_secrets_from_the_environment_are_masked(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert redact(f"401 for key {'k' * 40} at https://user:pw@host/x") == "401 for key *** at https://user:***@host/x"


def test_the_upload_stall_hook_matches_the_nth_file_only(monkeypatch):
    monkeypatch.setattr(fsspec_store, "_stall_seen", {})
    spec = "state/diff_residual/*#2:7"
    got = [stall_seconds(n, spec) for n in ("state/operator/s1.pt", "state/diff_residual/s1.pt",
                                            "state/diff_residual/s2.pt", "state/diff_residual/s3.pt")]
    assert got == [0.0, 0.0, 7.0, 0.0]
    assert stall_seconds("x", None) == 0.0


# --- the background sync --------------------------------------------------------


def test_sync_timing_policy():
    due = dict(last_publish=100.0, every=60.0, retry_at=float("-inf"), now=110.0)
    assert next_sync_at(dirty=False, urgent=True, **due) is None
    assert next_sync_at(dirty=True, urgent=False, **due) == 160.0
    assert next_sync_at(dirty=True, urgent=True, **due) == 110.0
    assert next_sync_at(dirty=True, urgent=True, **{**due, "retry_at": 115.0}) == 115.0


class RecordingStore(RemoteStore):
    description = "fake://store"

    def __init__(self, fail: bool = False):
        self.tags: list[str] = []
        self.fail = fail
        self.threads: set[str] = set()

    def publish(self, snap, local_dir):
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RemoteError("bucket unreachable")
        self.tags.append(snap.tag)
        return PublishReport(uploaded=len(snap.files))

    def open_reader(self):
        raise NotImplementedError


def wait_for(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_states_are_throttled_but_a_completed_stage_is_published_at_once(tmp_path):
    save_state(tmp_path, "operator", 4, start=True)
    store = RecordingStore()
    sync = RemoteSync(store, tmp_path, every_seconds=60, log=lambda m: None).start()
    assert wait_for(lambda: store.tags == ["operator-step-4"])
    save_state(tmp_path, "operator", 8)
    sync.on_state_saved("operator", {})
    time.sleep(0.3)
    assert store.tags == ["operator-step-4"], "a state within upload_every_seconds waits"
    complete_stage(tmp_path, "operator", ("operator.pt", "operator_ema.pt"))
    sync.on_stage_completed("operator")
    assert wait_for(lambda: store.tags[-1:] == ["operator-completed"])
    assert store.threads == {"ups-remote-sync"}, "uploads never run on the training thread"
    assert sync.close(timeout=5).ok


def test_close_publishes_the_final_state_and_prints_the_outcome(tmp_path):
    save_state(tmp_path, "operator", 4, start=True)
    store, lines = RecordingStore(), []
    sync = RemoteSync(store, tmp_path, every_seconds=3600, log=lines.append).start()
    save_state(tmp_path, "operator", 8)
    sync.on_state_saved("operator", {})  # throttled...
    outcome = sync.close(timeout=5)  # ...but flushed on exit
    assert outcome.ok and store.tags[-1] == "operator-step-8"
    assert lines[-1].startswith("✓ Remote copy up to date: fake://store (operator-step-8")


def test_a_failing_remote_never_stops_training_and_close_returns_within_its_bound(tmp_path):
    save_state(tmp_path, "operator", 4, start=True)
    lines: list[str] = []
    sync = RemoteSync(RecordingStore(fail=True), tmp_path, every_seconds=0, log=lines.append).start()
    sync.on_state_saved("operator", {})  # returns at once, raises nothing
    started = time.monotonic()
    outcome = sync.close(timeout=1.0)
    assert time.monotonic() - started < 3
    assert not outcome.ok and "bucket unreachable" in outcome.message
    assert any("retrying" in line for line in lines)


def test_a_directory_with_nothing_recorded_yet_is_not_an_upload_failure(tmp_path):
    store, lines = RecordingStore(), []
    sync = RemoteSync(store, tmp_path, every_seconds=0, log=lines.append).start()
    time.sleep(0.1)
    save_state(tmp_path, "operator", 4, start=True)
    sync.on_state_saved("operator", {})
    assert wait_for(lambda: store.tags == ["operator-step-4"], timeout=1.0), "no backoff after an empty start"
    assert sync.close(timeout=5).ok and not any("failed" in line for line in lines)


def test_a_status_naming_a_file_that_is_gone_for_good_is_reported_not_retried_forever(tmp_path):
    state = save_state(tmp_path / "ckpt", "operator", 4, start=True)
    (tmp_path / "ckpt" / state).unlink()
    store = FsspecStore((tmp_path / "remote").as_uri())
    sync = RemoteSync(store, tmp_path / "ckpt", every_seconds=0, log=lambda m: None).start()
    outcome = sync.close(timeout=3)
    assert not outcome.ok and "keeps naming files that are not there" in outcome.message
    assert not (tmp_path / "remote" / STATUS_FILE).exists()


def test_a_stop_signal_during_a_long_final_flush_cuts_it_to_the_grace(tmp_path):
    operator_done_diffusion_running(tmp_path)

    class Down(RemoteStore):
        description = "a store that is down"

        def publish(self, snap, local_dir):
            raise RemoteError("connection reset")  # transient: retried until the bound

        def open_reader(self):
            raise NotImplementedError

    signalled = threading.Event()
    sync = RemoteSync(Down(), tmp_path, every_seconds=0, log=lambda *_: None).start()
    threading.Timer(0.3, signalled.set).start()
    outcome = sync.close(3600, signalled=signalled, grace=0.2)  # without the signal: an hour
    assert not outcome.ok and "before the stop signal's grace ran out" in outcome.message
    assert "connection reset" in outcome.message


def test_a_permanent_error_is_not_retried_through_the_final_flush(tmp_path):
    operator_done_diffusion_running(tmp_path)
    lines: list[str] = []

    class Refused(RemoteStore):
        description = "s3://gone/run1"

        def publish(self, snap, local_dir):
            raise RemoteError("upload refused") from PermissionError("Access Denied")

        def open_reader(self):
            raise NotImplementedError

    sync = RemoteSync(Refused(), tmp_path, every_seconds=0, log=lines.append).start()
    outcome = sync.close(3600)  # it would retry for an hour if it thought waiting could help
    assert not outcome.ok and "upload refused" in outcome.message
    assert any("not retried" in line for line in lines)
