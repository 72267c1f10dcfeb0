"""Every pipeline run keeps a goodput record across its attempts, and `auto` sets its save interval.

Real trainer processes: one fails, one is SIGKILLed, one finishes; the record in
the status file, the resume plan and `show_training_status.py` (text and --json)
must all say what each interruption cost.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO, checkpoint_dir, train, write_config


def status_json(ckpt) -> dict:
    proc = subprocess.run([sys.executable, "scripts/show_training_status.py", str(ckpt), "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_failure_kill_and_finish_are_each_accounted_and_the_plan_shows_the_interval(tmp_path):
    cfg = write_config(tmp_path, {"checkpoint": {"every_steps": 4, "every_seconds": "auto",
                                                 "auto": {"min_seconds": 30, "min_failures": 2}}})
    ckpt = checkpoint_dir(cfg)
    failed = train(cfg, "--stage", "all", env={"UPS_FAULT": "raise:after-step:operator:10"})
    assert failed.returncode != 0
    killed = train(cfg, "--stage", "all", "--auto-resume", env={"UPS_FAULT": "after-step:diff_residual:6"})
    assert killed.returncode == -9
    done = train(cfg, "--stage", "all", "--auto-resume", check=True)

    record = json.loads((ckpt / "stage_status.json").read_text())["details"]["goodput"]
    assert [a["end"] for a in record["attempts"]] == ["failure", "killed", "completed"]
    failure, kill = record["interruptions"]
    assert failure["reached"] == {"stage": "operator", "step": 10}
    assert failure["recomputed_steps"] == 2  # the state saved at step 8 was resumed
    assert failure["recomputed_s"] > 0 and failure["restart_s"] > 0
    assert kill["kind"] == "killed" and kill["reached"]["stage"] == "diff_residual"
    assert kill["recomputed_steps"] is not None
    assert record["attempts"][1]["resumed"] == {"stage": "operator", "step": 8}
    assert all(a["wall_s"] > 0 for a in record["attempts"])

    # Two failures seen: the third attempt's plan uses the observed MTBF, with its inputs.
    assert "checkpoint interval (auto)" in done.stdout
    assert "2 failures in" in done.stdout and "observed" in done.stdout
    assert "goodput so far" in done.stdout

    facts = status_json(ckpt)["goodput"]
    assert facts["attempts"] == 3 and 0 < facts["goodput"] < 1
    assert facts["interruptions"]["failure"] == 1 and facts["interruptions"]["killed"] == 1
    assert facts["recomputed_steps"] >= 2 and facts["save_cost_s"] > 0
    text = subprocess.run([sys.executable, "scripts/show_training_status.py", str(ckpt)], cwd=REPO,
                          capture_output=True, text=True, timeout=120).stdout
    assert "GOODPUT" in text and "1 killed, 1 failure" in text
