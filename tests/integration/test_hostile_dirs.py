"""Promises that hold against a hostile directory: a bare status file is not trusted, another
run's remote is not overwritten, a diverged loss is not recorded as done, a symlinked lock
truncates nothing, and the temp sweep deletes only the project's own unfinished writes."""

import hashlib
import json
import os
import re
import shutil

import pytest
import torch

from tests.helpers import checkpoint_dir, train, write_config

STAGES = ("operator", "diff_residual", "consistency_distill", "steady_prior")
ONLY_OPERATOR = {"stages": {s: {"epochs": 0} for s in STAGES} | {"operator": {"epochs": 1}}}


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digests(root):
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def one_error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def seed_schema_only(ckpt):
    """Rewrite the status file in the seed's own v1 schema: no `details`, nothing to verify."""
    path = ckpt / "stage_status.json"
    data = json.loads(path.read_text())
    data.pop("details", None)
    path.write_text(json.dumps(data))


# --- a status file without digests ---------------------------------------------


def test_a_seed_schema_status_with_no_files_reruns_the_stages(finished_run):
    config, ckpt = finished_run
    seed_schema_only(ckpt)
    for p in ckpt.glob("*.pt"):
        p.unlink()
    result = train(config, "--stage", "all", "--auto-resume", check=True)
    assert "operator.pt is missing" in result.stdout
    assert all((ckpt / name).is_file() for name in ("operator_ema.pt", "steady_prior.pt"))
    meta = json.loads((ckpt / "metadata.json").read_text())
    assert meta["trained"] is True


def test_a_seed_schema_status_with_loadable_files_is_skipped_and_its_digests_recorded(finished_run):
    config, ckpt = finished_run
    seed_schema_only(ckpt)
    before = {p.name: sha(p) for p in ckpt.glob("*.pt")}
    result = train(config, "--stage", "all", "--auto-resume", check=True)
    assert "Training Operator" not in result.stdout
    assert "Setting epochs=0 for completed stages" in result.stdout
    assert "STAGE 1/4: Skipping Operator (epochs<=0)" in result.stdout
    details = json.loads((ckpt / "stage_status.json").read_text())["details"]
    assert details["operator"]["outputs"]["operator_ema.pt"]["sha256"] == before["operator_ema.pt"]
    assert {p.name: sha(p) for p in ckpt.glob("*.pt")} == before


def test_a_seed_schema_status_with_a_garbage_file_reruns_that_stage(finished_run):
    config, ckpt = finished_run
    seed_schema_only(ckpt)
    (ckpt / "steady_prior.pt").write_bytes(b"not a checkpoint")
    result = train(config, "--stage", "all", "--auto-resume", check=True)
    assert "steady_prior.pt does not load" in result.stdout
    assert "Training Steady Prior" in result.stdout and "Training Operator" not in result.stdout


# --- a remote that holds another run -----------------------------------------------


def test_a_remote_holding_another_run_is_refused_before_any_upload(tmp_path, reference_run, shared_data):
    remote = tmp_path / "remote"
    shutil.copytree(reference_run, remote)
    before = tree_digests(remote)
    config = write_config(tmp_path / "new", ONLY_OPERATOR, data_root=shared_data)
    result = train(config, "--stage", "all", "--checkpoint-remote", f"file://{remote}")
    assert result.returncode == 2
    line = one_error_line(result)
    assert "holds another run" in line and "--take-over-remote" in line
    assert tree_digests(remote) == before


def test_a_remote_that_is_the_checkpoint_dir_itself_is_refused(tmp_path, shared_data):
    config = write_config(tmp_path, ONLY_OPERATOR, data_root=shared_data)
    result = train(config, "--stage", "all", "--checkpoint-remote", str(checkpoint_dir(config)))
    assert result.returncode == 2
    assert "is the checkpoint directory itself" in one_error_line(result)


def test_take_over_remote_replaces_another_run_when_asked(tmp_path, reference_run, shared_data):
    remote = tmp_path / "remote"
    shutil.copytree(reference_run, remote)
    config = write_config(tmp_path / "new", ONLY_OPERATOR, data_root=shared_data)
    train(config, "--stage", "all", "--checkpoint-remote", f"file://{remote}", "--take-over-remote", check=True)
    local = json.loads((checkpoint_dir(config) / "stage_status.json").read_text())
    assert json.loads((remote / "stage_status.json").read_text())["created_at"] == local["created_at"]


# --- non-finite losses --------------------------------------------------------------


def test_an_infinite_learning_rate_is_refused_by_validation(tmp_path, shared_data):
    config = write_config(tmp_path, ONLY_OPERATOR, data_root=shared_data)
    result = train(config, "--stage", "all", "--set", "training.learning_rate=.inf")
    assert result.returncode == 2
    assert "training.learning_rate" in one_error_line(result)


def test_a_non_finite_loss_stops_the_stage_and_keeps_the_last_finite_state(tmp_path, shared_data):
    # A learning rate this large (even in warmup) blows the weights up a few steps after the first save.
    extra = {"stages": {s: {"epochs": 0} for s in STAGES} | {"operator": {"epochs": 3, "lr": 1e3,
                                                                             "warmup_steps": 20}},
             "logging": {"log_every_steps": 1}}  # every step up to the non-finite one reaches metrics.jsonl
    config = write_config(tmp_path, extra, data_root=shared_data)
    result = train(config, "--stage", "all")
    ckpt = checkpoint_dir(config)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr
    line = one_error_line(result)
    # The step it blows up at depends on the torch build's float arithmetic; what it says must hold.
    found = re.search(r"non-finite values at step (\d+).*last finite state \(step (\d+)\)", line)
    assert found and "'operator'" in line, line
    bad, kept = int(found[1]), int(found[2])
    assert 0 < kept < bad
    state = torch.load(ckpt / "state" / "operator" / f"step-{kept:09d}.pt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values() if torch.is_tensor(t))
    entry = json.loads((ckpt / "stage_status.json").read_text())["stages"]["operator"]
    assert entry["status"] == "failed" and "non-finite" in entry["error_message"]
    assert not (ckpt / "operator_ema.pt").exists()
    for line in (ckpt / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"metrics.jsonl holds {c}"))
    assert json.loads((ckpt / "metadata.json").read_text()).get("trained") is not True


# --- the lock file -----------------------------------------------------------------


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path, shared_data):
    config = write_config(tmp_path, ONLY_OPERATOR, data_root=shared_data)
    ckpt = checkpoint_dir(config)
    ckpt.mkdir(parents=True)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    os.symlink(victim, ckpt / ".train.lock")
    result = train(config, "--stage", "all")
    assert result.returncode == 2
    assert ".train.lock" in one_error_line(result)
    assert victim.read_text() == "keep me\n"


# --- the temp sweep ------------------------------------------------------------------


def test_the_temp_sweep_removes_only_its_own_unfinished_writes(finished_run):
    config, ckpt = finished_run
    ours = [ckpt / ".tmp-stage_status.json.k2j3h4x1", ckpt / "state" / "operator" / ".tmp-step-000000004.pt.a8b9c0d1"]
    theirs = [ckpt / ".tmp-my-notes.txt", ckpt / "notes" / ".tmp-stage_status.json.k2j3h4x1",
              ckpt / "nested" / ".tmp-operator.pt.abcdefgh", ckpt / "nested" / "state" / "operator" /
              ".tmp-step-000000004.pt.a8b9c0d1"]
    for p in ours + theirs:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    train(config, "--stage", "all", "--auto-resume", check=True)
    assert [p for p in ours if p.exists()] == []
    assert [p for p in theirs if not p.exists()] == []


# --- a saved state that loads but does not restore ------------------------------------


def crashed_operator(tmp_path, shared_data):
    """A run killed (-9) at operator step 10: states at steps 4 and 8 on disk."""
    config = write_config(tmp_path, ONLY_OPERATOR | {"stages": ONLY_OPERATOR["stages"] | {"operator": {"epochs": 2}}},
                          data_root=shared_data)
    result = train(config, "--stage", "all", env={"UPS_FAULT": "after-step:operator:10"})
    assert result.returncode == -9, result.stderr
    return config, checkpoint_dir(config)


def reshape_first_weight(ckpt, step, record_it):
    import torch

    path = ckpt / "state" / "operator" / f"step-{step:09d}.pt"
    state = torch.load(path, weights_only=True)
    key = next(iter(state["model"]))
    state["model"][key] = torch.zeros(*state["model"][key].shape, 2)
    torch.save(state, path)
    if record_it:  # the status vouches for the altered bytes: only restoring can tell
        status_path = ckpt / "stage_status.json"
        status = json.loads(status_path.read_text())
        status["details"]["operator"]["resume_state"].update(sha256=sha(path), size=path.stat().st_size)
        status_path.write_text(json.dumps(status))
    return path


def test_a_state_of_the_wrong_shapes_is_set_aside_and_the_older_one_used(tmp_path, shared_data):
    config, ckpt = crashed_operator(tmp_path, shared_data)
    bad = reshape_first_weight(ckpt, 8, record_it=True)
    result = train(config, "--stage", "all", "--auto-resume", check=True)
    assert f"set aside {bad.name}" in result.stdout and "the model needs" in result.stdout
    assert "Marked stage 'operator' as resumed (from step 4)" in result.stdout
    assert bad.with_name(bad.name + ".set-aside").is_file()
    assert (ckpt / "operator_ema.pt").is_file()


def test_when_no_state_restores_the_stage_starts_over_and_says_why(tmp_path, shared_data):
    config, ckpt = crashed_operator(tmp_path, shared_data)
    reshape_first_weight(ckpt, 8, record_it=True)
    reshape_first_weight(ckpt, 4, record_it=False)
    result = train(config, "--stage", "all", "--auto-resume", check=True)
    assert result.stdout.count("set aside step-") == 2
    assert "no usable saved state found; starting the stage over" in result.stdout


# --- a full disk and a read-only mount (where this machine lets the test mount a tmpfs) ----------


@pytest.fixture
def small_mount(tmp_path):
    """A 64 KiB tmpfs (needs CAP_SYS_ADMIN: skipped where mounting is not allowed)."""
    import subprocess

    point = tmp_path / "mnt"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_full_disk_is_one_line_that_says_so(small_mount, tmp_path, shared_data):
    config = write_config(tmp_path, ONLY_OPERATOR | {"training": {"checkpoint_dir": str(small_mount / "ck")}},
                          data_root=shared_data)
    result = train(config, "--stage", "all")
    assert result.returncode == 1
    assert "disk is full" in one_error_line(result)


def test_a_read_only_checkpoint_dir_is_one_line_that_says_so(small_mount, tmp_path, shared_data):
    import subprocess

    (small_mount / "ck").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    config = write_config(tmp_path, ONLY_OPERATOR | {"training": {"checkpoint_dir": str(small_mount / "ck")}},
                          data_root=shared_data)
    result = train(config, "--stage", "all")
    assert result.returncode == 2
    assert "read-only" in one_error_line(result)
