"""Mechanism against the real file system: atomic commits, safe loads, the directory lock."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ups.errors import CheckpointError, LockHeldError
from ups.resume.atomic import atomic_path, atomic_write_json, file_digest, remove_stale_temps
from ups.resume.files import load_torch, save_torch
from ups.resume.lock import CheckpointDirLock


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "f.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2')  # torn
            raise RuntimeError("killed mid-write")
    assert target.read_text().strip().startswith('{\n  "v": 1')
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_save_torch_records_the_digest_of_the_bytes_on_disk(tmp_path):
    digest = save_torch({"w": torch.arange(10.0)}, tmp_path / "x.pt")
    assert digest == file_digest(tmp_path / "x.pt")
    assert torch.equal(load_torch(tmp_path / "x.pt")["w"], torch.arange(10.0))


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / "state" / "operator").mkdir(parents=True)
    leftover = tmp_path / "state" / "operator" / ".tmp-step-000000004.pt.abc_1234"
    leftover.write_bytes(b"partial")
    assert remove_stale_temps(tmp_path, ["stage_status.json"], [tmp_path / "state" / "operator"]) == [leftover]
    assert not leftover.exists()


def test_the_temp_sweep_leaves_other_names_and_subfolders_alone(tmp_path):
    ours = tmp_path / ".tmp-stage_status.json.k2j3h4x1"
    others = [tmp_path / ".tmp-notes.txt", tmp_path / ".tmp-stage_status.json.short", tmp_path / "sub" / ours.name]
    for p in [ours, *others]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    assert remove_stale_temps(tmp_path, ["stage_status.json"]) == [ours]
    assert all(p.exists() for p in others)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-unpickling",))


def test_a_checkpoint_crafted_to_run_code_is_refused_and_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "operator_ema.pt"
    torch.save({"state_dict": Exploit()}, evil)
    with pytest.raises(CheckpointError, match="refused to load .*operator_ema.pt"):
        load_torch(evil)
    assert not (tmp_path / "pwned-by-unpickling").exists()


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "operator.pt"
    save_torch({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_torch(path)


def test_a_second_trainer_fails_at_once_naming_the_holder(tmp_path):
    with CheckpointDirLock(tmp_path):
        started = time.monotonic()
        with pytest.raises(LockHeldError, match=f"pid {os.getpid()}"):
            CheckpointDirLock(tmp_path).acquire()
        assert time.monotonic() - started < 1.0
    CheckpointDirLock(tmp_path).acquire().release()  # free again once released


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from ups.resume.lock import CheckpointDirLock; "
         f"CheckpointDirLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(LockHeldError):
        CheckpointDirLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = CheckpointDirLock(tmp_path).acquire()
    assert lock.took_over_stale_lock() and lock.previous_holder["pid"] == holder.pid
    lock.release()


def test_committed_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    atomic_write_json(tmp_path / "s.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o666 & ~umask
