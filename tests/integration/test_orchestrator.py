"""`run_fast_to_sota.py`: validate → data → train → small eval → full eval, recorded in metadata.json;
a finished training is not redone unless forced; failures stop the pipeline with their exit code."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, checkpoint_dir, write_config
from ups.commands.common import run_main
from ups.commands.orchestrate import main as orchestrate_main
from ups.config import load_config
from ups.pipeline import orchestrate
from ups.pipeline.subprocess_train import run_forwarding_signals, train_command
from ups.resume.metadata import read_metadata

SCRIPT = REPO / "scripts" / "run_fast_to_sota.py"


def overlay(tmp_path: Path, name: str, **evals) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"eval": {"output_prefix": str(tmp_path / "reports" / name), **evals}}))
    return path


def test_the_whole_pipeline_from_nothing_records_every_fact(tmp_path, shared_data):
    one_epoch = {"stages": {name: {"epochs": 1} for name in
                            ("operator", "diff_residual", "consistency_distill", "steady_prior")}}
    config = write_config(tmp_path / "run", one_epoch, data_root=shared_data)
    small = overlay(tmp_path, "small", max_samples=3, rollout_steps=5)
    full = overlay(tmp_path, "full")
    result = subprocess.run([sys.executable, str(SCRIPT), "--train-config", str(config),
                             "--small-eval-config", str(small), "--full-eval-config", str(full),
                             "--train-extra-arg=--device=cpu"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for n in range(1, 6):
        assert f"STEP {n}/5" in result.stdout
    assert "--auto-resume --device=cpu" in result.stdout and "All training stages complete" in result.stdout
    meta = read_metadata(checkpoint_dir(config))
    assert meta["trained"] is True and meta["trained_at"]
    assert meta["config_hash"] and meta["architecture"]["operator"]["hidden_dim"] == 64
    assert meta["last_small_eval"]["samples"] == 3 and meta["last_small_eval"]["rollout_steps"] == 5
    assert meta["last_full_eval"]["samples"] == 8 and meta["last_full_eval"]["rollout_steps"] == 20
    for kind in ("small", "full"):
        assert isinstance(meta[f"last_{kind}_eval"]["metric:nrmse"], float) and meta[f"last_{kind}_eval_at"]
        assert (tmp_path / "reports" / f"{kind}.html").is_file()


def test_a_finished_training_is_skipped_and_the_reason_printed(finished_run, capsys):
    config, ckpt = finished_run
    argv = ["--train-config", str(config), "--skip-small-eval", "--skip-full-eval"]
    assert run_main(orchestrate_main, argv) == 0
    out = capsys.readouterr().out
    assert "Skipping training: already trained for config hash" in out and "outputs verified" in out


def _args(config: Path, **kw) -> argparse.Namespace:
    base = dict(train_config=str(config), extra=[], skip_training=False, force_train=False)
    return argparse.Namespace(**{**base, **kw})


def test_force_train_retrains_from_scratch(finished_run, monkeypatch):
    config, _ = finished_run
    ran = []
    monkeypatch.setattr("ups.pipeline.subprocess_train.run_forwarding_signals", lambda cmd: ran.append(cmd) or 0)
    orchestrate.train(load_config(config), _args(config, force_train=True))
    assert ran and "--auto-resume" not in ran[0] and ran[0][-2:] == ["--stage", "all"]


@pytest.mark.parametrize("change, reason", [
    ("config", "config changed since training"),
    ("output", "operator.pt was altered"),
    ("untrained", "not trained yet"),
])
def test_training_is_not_skipped_when_anything_changed(finished_run, change, reason):
    config, ckpt = finished_run
    cfg = load_config(config)
    if change == "config":
        cfg = load_config(config, ["stages.steady_prior.epochs=5"])
    elif change == "output":
        data = bytearray((ckpt / "operator.pt").read_bytes())
        data[-50] ^= 1
        (ckpt / "operator.pt").write_bytes(bytes(data))
    else:
        (ckpt / "metadata.json").unlink()
    done, why = orchestrate.training_done(cfg)
    assert not done and reason in why


def test_train_overrides_count_for_the_skip_decision(finished_run):
    config, _ = finished_run
    cfg, _ = orchestrate.load_configs(_args(config, extra=["--set", "stages.operator.epochs=9"]))
    assert cfg.stage("operator").epochs == 9
    assert not orchestrate.training_done(cfg)[0]


def test_a_failed_training_stops_the_pipeline_with_its_exit_code(finished_run, monkeypatch, capsys):
    config, ckpt = finished_run
    (ckpt / "metadata.json").unlink()
    monkeypatch.setattr("ups.pipeline.subprocess_train.run_forwarding_signals", lambda cmd: 143)
    assert run_main(orchestrate_main, ["--train-config", str(config)]) == 143
    captured = capsys.readouterr()
    assert "training exited with code 143; rerun this command to continue" in captured.err
    assert "STEP 4/5" not in captured.out


def test_invalid_extra_training_args_fail_before_anything_runs(finished_run, capsys):
    config, _ = finished_run
    assert run_main(orchestrate_main, ["--train-config", str(config), "--train-extra-arg=--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert "--train-extra-arg '--no-such-flag' is not valid for scripts/train.py" in err


def test_an_eval_overlay_that_changes_the_architecture_is_caught_by_validation(finished_run, tmp_path, capsys):
    config, _ = finished_run
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"latent": {"dim": 7}}))
    assert run_main(orchestrate_main, ["--train-config", str(config), "--small-eval-config", str(bad)]) == 2
    assert "must equal latent.dim=7" in capsys.readouterr().err


def test_evaluation_refuses_weights_that_do_not_match_their_recorded_digest(finished_run, capsys):
    config, ckpt = finished_run
    data = bytearray((ckpt / "operator_ema.pt").read_bytes())
    data[-50] ^= 1
    (ckpt / "operator_ema.pt").write_bytes(bytes(data))
    argv = ["--train-config", str(config), "--skip-training", "--skip-full-eval"]
    assert run_main(orchestrate_main, argv) == 2
    assert "refusing to evaluate" in capsys.readouterr().err
    assert "last_small_eval" not in read_metadata(ckpt)


def test_the_train_command_is_the_training_script_with_auto_resume():
    cmd = train_command("c.yaml", ["--device", "cpu"], auto_resume=True)
    assert cmd[1].endswith("scripts/train.py")
    assert cmd[2:] == ["--config", "c.yaml", "--stage", "all", "--auto-resume", "--device", "cpu"]


def test_a_sigterm_to_the_orchestrator_reaches_the_training_child():
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
             "print('ready', flush=True)\n"
             "time.sleep(30)\nsys.exit(0)\n")
    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert run_forwarding_signals([sys.executable, "-c", child]) == 143
    finally:
        timer.cancel()
