"""The pipeline under torchrun: two real worker processes (gloo on CPU, one thread each).

An interrupted-and-resumed two-process run must end bit-identical to an
uninterrupted two-process run, whether the whole group was killed, one worker
was signalled, or one worker died and torchrun restarted the group by itself.
"""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.helpers import REPO, assert_bit_identical, checkpoint_dir, torchrun, train, write_config


def status_of(config):
    return json.loads((checkpoint_dir(config) / "stage_status.json").read_text())


def logged(ckpt):
    lines = (ckpt / "metrics.jsonl").read_text().splitlines()
    return [(r["stage"], r["kind"], r["step"], r["loss"]) for r in map(json.loads, lines)]


def files_in(ckpt):
    return sorted(str(p.relative_to(ckpt)) for p in ckpt.rglob("*") if p.is_file() and p.name != ".train.lock")


def ok(run):
    assert run.returncode == 0, f"torchrun exited {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory, shared_data):
    """The tiny pipeline trained once by two processes, uninterrupted."""
    root = tmp_path_factory.mktemp("ddp-reference")
    config = write_config(root, data_root=shared_data)
    return checkpoint_dir(config), ok(torchrun(config, "--stage", "all"))


def test_two_processes_train_with_ddp_and_write_what_one_process_writes(ddp_reference, reference_run):
    ckpt, run = ddp_reference
    assert "Training with 2 processes (DDP)" in run.stdout
    assert run.stdout.count("Resume plan:") == 1, "rank 1 must not print (or write) anything"
    assert files_in(ckpt) == files_in(reference_run)
    steps = [(stage, kind, step) for stage, kind, step, _ in logged(ckpt)]
    assert steps == [(stage, kind, step) for stage, kind, step, _ in logged(reference_run)]


def test_sigkill_of_the_whole_group_mid_stage_then_auto_resume_is_bit_identical(tmp_path, shared_data,
                                                                                 ddp_reference):
    config = write_config(tmp_path, data_root=shared_data)
    killed = torchrun(config, "--stage", "all", env={"UPS_FAULT": "after-step:diff_residual:10"})
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr

    resumed = ok(torchrun(config, "--stage", "all", "--auto-resume"))

    assert "diff_residual        continue" in resumed.stdout
    assert_bit_identical(ddp_reference[0], checkpoint_dir(config))
    assert logged(checkpoint_dir(config)) == logged(ddp_reference[0])


def test_torchrun_restarts_the_group_when_a_worker_dies_and_it_finishes_with_the_same_weights(
        tmp_path, shared_data, ddp_reference):
    config = write_config(tmp_path, data_root=shared_data)
    # No --auto-resume: a restart implies it. The fault fires in rank 1, in the first attempt only.
    run = ok(torchrun(config, "--stage", "all", max_restarts=1,
                      env={"UPS_FAULT": "after-step:operator:10", "UPS_FAULT_RANK": "1"}))

    assert "rank 1 failed" not in run.stdout  # a SIGKILL leaves no message: rank 0 says so
    assert "another rank failed or was killed" in run.stdout
    assert "torchrun restart 1: resuming as with --auto-resume" in run.stdout
    assert "operator: failed (rank 0 of 2: lost contact" in run.stdout
    assert re.search(r"continuing from step [48]\b", run.stdout)  # the newest state the status had recorded
    assert_bit_identical(ddp_reference[0], checkpoint_dir(config))


def test_a_stop_signal_to_one_worker_stops_every_rank_at_the_same_step_and_loses_nothing(
        tmp_path, shared_data, ddp_reference):
    config = write_config(tmp_path, data_root=shared_data)
    stopped = torchrun(config, "--stage", "all", env={"UPS_FAULT": "term:after-step:diff_residual:5",
                                                      "UPS_FAULT_RANK": "1"})
    assert stopped.returncode != 0
    assert stopped.stderr.count("interrupted: stage 'diff_residual' interrupted at step 6/30; state saved") == 2
    detail = status_of(config)["details"]["diff_residual"]
    assert detail["interrupted_at"] and detail["step"] == detail["resume_state"]["step"] == 6

    resumed = ok(torchrun(config, "--stage", "all", "--auto-resume"))

    assert "continuing from step 6" in resumed.stdout
    assert_bit_identical(ddp_reference[0], checkpoint_dir(config))


def test_ctrl_c_to_torchrun_reaches_every_worker_which_save_and_exit(tmp_path, shared_data):
    config = write_config(tmp_path, data_root=shared_data, extra={"stages": {"operator": {"epochs": 6}}})
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "scripts/train.py", "--config", str(config), "--stage", "operator"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if line.startswith("[operator] train"):
            proc.send_signal(signal.SIGINT)  # torchrun forwards it to both workers
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert err.count("state saved. Rerun with --auto-resume") == 2, err[-3000:]
    detail = status_of(config)["details"]["operator"]
    assert detail["interrupted_at"] and detail["resume_state"]["step"] == detail["step"]


def test_an_exception_in_one_worker_stops_the_group_and_the_status_names_it(tmp_path, shared_data):
    config = write_config(tmp_path, data_root=shared_data)
    run = torchrun(config, "--stage", "operator", timeout=120,
                   env={"UPS_FAULT": "raise:after-step:operator:10", "UPS_FAULT_RANK": "1"})
    assert run.returncode != 0
    entry = status_of(config)["stages"]["operator"]
    assert entry["status"] == "failed"
    assert "rank 1 failed with InjectedFault: injected failure at after-step:operator:10" in entry["error_message"]
    assert "--auto-resume" in entry["error_message"]


def test_resuming_with_another_number_of_processes_continues_with_a_notice(tmp_path, shared_data):
    config = write_config(tmp_path, data_root=shared_data)
    torchrun(config, "--stage", "operator", env={"UPS_FAULT": "after-step:operator:10"})

    resumed = train(config, "--stage", "operator", "--auto-resume", check=True)  # one process now

    assert re.search(r"continuing from step [48]\b", resumed.stdout)
    assert "written by 2 process(es); continuing with 1" in resumed.stdout
    assert "batch_size 32 is the global batch" in resumed.stdout
    assert status_of(config)["stages"]["operator"]["status"] == "completed"
