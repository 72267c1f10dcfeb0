"""What a user expects without reading the code: a "continue with" command that really
continues the run, and a warning when the loss runs away or the batch outgrows the data."""

import json
import shlex
import subprocess
import sys

from tests.helpers import REPO, checkpoint_dir, train, write_config

STAGES = ("operator", "diff_residual", "consistency_distill", "steady_prior")
ONLY_OPERATOR = {"stages": {s: {"epochs": 0} for s in STAGES} | {"operator": {"epochs": 1}}}


def status_text(ckpt) -> str:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "show_training_status.py"), str(ckpt)],
                          capture_output=True, text=True, cwd=REPO, check=True).stdout


def test_the_continue_hint_is_a_quoted_command_with_the_set_overrides(tmp_path, shared_data):
    config = write_config(tmp_path, ONLY_OPERATOR, data_root=shared_data, name="my run's config.yaml")
    overrides = ["stages.operator.epochs=2", "training.seed=7"]
    result = train(config, "--stage", "all", *[a for o in overrides for a in ("--set", o)],
                   env={"UPS_FAULT": "term:after-step:operator:5"})
    assert result.returncode == 143, result.stderr
    hint = next(line for line in status_text(checkpoint_dir(config)).splitlines() if "continue with:" in line)
    argv = shlex.split(hint.split("continue with:", 1)[1])
    assert argv == ["python", "scripts/train.py", "--config", str(config), "--stage", "all", "--auto-resume",
                    "--set", overrides[0], "--set", overrides[1]]
    resumed = train(config, *argv[4:], check=True)  # the hint's own arguments continue the run
    assert "interrupted; continuing from step 5" in resumed.stdout


def test_a_loss_growing_by_orders_of_magnitude_is_a_warning_in_the_log_and_the_status(tmp_path, shared_data):
    extra = {"stages": ONLY_OPERATOR["stages"] | {"operator": {"epochs": 1, "lr": 20, "warmup_steps": 20}},
             "logging": {"log_every_steps": 1}}
    config = write_config(tmp_path, extra, data_root=shared_data)
    result = train(config, "--stage", "all", check=True)
    assert "the training loss grew from" in result.stdout and "training is diverging" in result.stdout
    details = json.loads((checkpoint_dir(config) / "stage_status.json").read_text())["details"]["operator"]
    assert "training is diverging" in details["warning"]
    assert "operator: stage 'operator': the training loss grew" in status_text(checkpoint_dir(config))


def test_a_batch_larger_than_the_data_is_a_warning(tmp_path, shared_data):
    extra = {"stages": ONLY_OPERATOR["stages"] | {"operator": {"epochs": 1, "batch_size": 5000}}}
    config = write_config(tmp_path, extra, data_root=shared_data)
    result = train(config, "--stage", "all", check=True)
    assert "batch_size 5000 is larger than its 480 training items" in result.stdout
    details = json.loads((checkpoint_dir(config) / "stage_status.json").read_text())["details"]["operator"]
    assert "larger than its 480 training items" in details["warning"]
