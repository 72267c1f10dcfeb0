"""Torture: SIGKILL the pipeline at random times, over and over, resuming each time.

After every kill the checkpoint directory must be consistent — every file
loads, the status is valid JSON that agrees with the files — and at the end the
weights must be bit-identical to the run that was never interrupted. A stage
that was completed and verified before a launch must never be retrained by it.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

from tests.helpers import REPO, assert_bit_identical, checkpoint_dir, train, write_config
from ups.resume.files import load_torch
from ups.resume.tracker import read_status_file
from ups.resume.verify import OutputCatalog

KILLS = 20
# Long enough that twenty kills land inside training, not after it.
LONGER = {"stages": {"operator": {"epochs": 12}, "diff_residual": {"epochs": 6},
                     "consistency_distill": {"epochs": 6}, "steady_prior": {"epochs": 12}}}
BANNERS = {"operator": "STAGE 1/4: Training Operator", "diff_residual": "STAGE 2/4: Training Diffusion Residual",
           "consistency_distill": "STAGE 3/4: Consistency Distillation",
           "steady_prior": "STAGE 4/4: Training Steady Prior"}


def check_consistent(ckpt):
    """Every file loads; the status parses and names only files that exist and verify."""
    for path in ckpt.rglob("*.pt"):
        load_torch(path)
    for path in ckpt.glob("*.json"):
        json.loads(path.read_text())
    if not (ckpt / "stage_status.json").exists():
        return set()
    status = read_status_file(ckpt / "stage_status.json")
    catalog = OutputCatalog(ckpt)
    completed = set()
    for stage, entry in status["stages"].items():
        detail = status.get("details", {}).get(stage, {})
        if entry["status"] == "completed":
            assert catalog.problems(detail["outputs"]) == [], f"{stage} completed but its outputs do not verify"
            completed.add(stage)
        saved = detail.get("resume_state")
        if entry["status"] in ("in_progress", "failed") and saved:
            assert (ckpt / "state" / saved["file"]).is_file(), f"status names a missing state {saved['file']}"
    return completed


def launch(config):
    return subprocess.Popen(
        [sys.executable, "scripts/train.py", "--config", str(config), "--stage", "all", "--auto-resume"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def run_until_kill(proc, rng) -> tuple[bool, str]:
    """Let the run go on for a random while, then SIGKILL it. Returns (killed, output).

    A fifth of the kills land at a random moment of start-up; the others after a
    random number (1-3) of training log lines plus a random fraction of a second,
    so the kills spread over training whatever the speed of the machine.
    """
    lines = []
    if rng.random() < 0.2:
        time.sleep(rng.uniform(0.0, 1.5))
    else:
        wanted = rng.randint(1, 3)
        for line in proc.stdout:
            lines.append(line)
            wanted -= line.startswith("[") and " train " in line
            if wanted <= 0:
                break
        time.sleep(rng.uniform(0.0, 0.3))
    if proc.poll() is not None:
        return False, "".join(lines) + proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    return True, "".join(lines) + proc.communicate()[0]


def test_twenty_random_sigkills_then_bit_identical(tmp_path, shared_data):
    rng = random.Random(20261129)
    reference = write_config(tmp_path / "reference", LONGER, data_root=shared_data)
    train(reference, "--stage", "all", check=True)
    config = write_config(tmp_path / "tortured", LONGER, data_root=shared_data)
    ckpt = checkpoint_dir(config)
    kills = 0
    while kills < KILLS:
        completed = check_consistent(ckpt)
        proc = launch(config)
        killed, out = run_until_kill(proc, rng)
        if not killed:
            assert proc.returncode == 0, out[-3000:]
            break  # finished before the kill: nothing left to interrupt
        kills += 1
        for stage in completed:
            assert BANNERS[stage] not in out, f"kill {kills}: verified stage {stage} was retrained"
    assert kills == KILLS, f"the pipeline finished after only {kills} kills; make LONGER longer"
    check_consistent(ckpt)
    final = train(config, "--stage", "all", "--auto-resume", check=True)
    assert "All training stages complete" in final.stdout
    assert_bit_identical(checkpoint_dir(reference), ckpt)
