"""W&B without a server: offline mode for real (metrics and checkpoint artifacts written
locally), disabled mode (nothing happens, no network), `--resume-from-wandb` through a fake
`wandb.Api`, and the API key never written anywhere."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from typing import Iterator

import pytest
import wandb

from tests.fake_wandb import FakeApi
from tests.helpers import assert_bit_identical, checkpoint_dir, train, write_config
from ups.commands.common import run_main
from ups.commands.train import main as train_main

KEY = "fakekey0123456789abcdef0123456789abcdef9"  # 40 characters, like a real key
WANDB_ON = {"logging": {"wandb": {"enabled": True, "mode": "offline", "project": "ups-test"}}}


@pytest.fixture
def wandb_env(tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    """Every W&B directory inside tmp_path, offline, and a fake key in the environment."""
    env = {"WANDB_MODE": "offline", "WANDB_API_KEY": KEY, "WANDB_DIR": str(tmp_path / "wandb"),
           "WANDB_DATA_DIR": str(tmp_path / "wandb-data"), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "wandb").mkdir()
    wandb.teardown()  # the SDK reads its directories once per process: start from this test's
    yield env
    wandb.teardown()


def offline_runs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "wandb" / "wandb").glob("offline-run-*"))


def assert_key_nowhere(tmp_path: Path, *texts: str) -> None:
    for text in texts:
        assert KEY not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the API key was written to {path}"


def test_offline_mode_logs_metrics_and_checkpoint_artifacts_and_a_resume_continues_the_run(
        tmp_path, shared_data, wandb_env):
    config = write_config(tmp_path / "a", {**WANDB_ON, "checkpoint": {"upload_every_seconds": 0}},
                          data_root=shared_data)
    killed = train(config, "--stage", "operator", env={**wandb_env, "UPS_FAULT": "after-step:operator:30"})
    assert killed.returncode == -signal.SIGKILL
    resumed = train(config, "--stage", "operator", "--auto-resume", env=wandb_env, check=True)

    run_id = json.loads((checkpoint_dir(config) / "metadata.json").read_text())["training_wandb"]["id"]
    runs = offline_runs(tmp_path)
    assert len(runs) == 2 and all(r.name.endswith(f"-{run_id}") for r in runs), "the resume continued the run"
    # Saves every 4 steps in the background: at the kill (step 30) the save of step 28 may still
    # be in flight, and then the one of step 24 is the newest durable state.
    assert "continuing from step 28" in resumed.stdout or "continuing from step 24" in resumed.stdout
    assert f"Keeping a remote copy at W&B artifact ups-test/ups-checkpoints-{run_id}" in resumed.stdout
    assert "✓ Checkpoints logged offline to W&B artifact" in resumed.stdout, "never 'up to date': nothing left"
    assert "kept locally until `wandb sync " in resumed.stdout and "Remote copy up to date" not in resumed.stdout
    records = b"".join(p.read_bytes() for r in runs for p in r.glob("*.wandb"))
    assert b"trainer/global_step" in records and f"ups-checkpoints-{run_id}".encode() in records
    assert b"operator-completed" in records  # the alias of the last version
    assert b"goodput/goodput" in records and b"goodput/interruptions_killed" in records  # summary metrics
    staged = {p.read_bytes() for p in (tmp_path / "wandb-data").rglob("*") if p.is_file()}
    assert (checkpoint_dir(config) / "operator_ema.pt").read_bytes() in staged, "artifact files written locally"
    assert_key_nowhere(tmp_path, killed.stdout, killed.stderr, resumed.stdout, resumed.stderr)


def no_network(monkeypatch) -> None:
    def refuse(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access to {address}")
        return real_connect(self, address, *args)

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_disabled_mode_trains_without_wandb_uploads_or_network(tmp_path, shared_data, wandb_env, monkeypatch,
                                                               capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")  # wins over logging.wandb.mode=offline
    no_network(monkeypatch)
    monkeypatch.setattr(wandb, "init", lambda *a, **k: pytest.fail("wandb.init called in disabled mode"))
    config = write_config(tmp_path / "a", WANDB_ON, data_root=shared_data)
    assert run_main(train_main, ["--config", str(config), "--stage", "operator",
                                 "--set", "stages.operator.epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "Keeping a remote copy" not in out and "W&B run" not in out
    assert not any((tmp_path / "wandb").iterdir()) and not (tmp_path / "wandb-data").exists()
    assert "training_wandb" not in json.loads((checkpoint_dir(config) / "metadata.json").read_text())


@pytest.mark.parametrize("mode", ["allow", "never"])
def test_resume_from_wandb_downloads_verifies_and_continues_the_same_run(
        tmp_path, shared_data, reference_run, wandb_env, monkeypatch, capsys, mode):
    fake = FakeApi({"run42": reference_run})
    monkeypatch.setattr(wandb, "Api", fake)
    config = write_config(tmp_path / "b", WANDB_ON, data_root=shared_data)
    code = run_main(train_main, ["--config", str(config), "--resume-from-wandb", "run42", "--resume-mode", mode])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Downloading checkpoints from W&B artifact ups-test/ups-checkpoints-run42" in out.out
    assert out.out.count("skip      completed, outputs verified") == 4
    assert_bit_identical(reference_run, checkpoint_dir(config))
    run_id = json.loads((checkpoint_dir(config) / "metadata.json").read_text())["training_wandb"]["id"]
    assert (run_id == "run42") == (mode == "allow"), "never: a new run; allow: the same one"
    assert f"Keeping a remote copy at W&B artifact ups-test/ups-checkpoints-{run_id}" in out.out
    assert offline_runs(tmp_path)[-1].name.endswith(f"-{run_id}")
    assert_key_nowhere(tmp_path, out.out, out.err)


def test_must_with_an_unknown_run_is_a_clear_error_and_exit_2(tmp_path, shared_data, wandb_env, monkeypatch,
                                                               capsys):
    monkeypatch.setattr(wandb, "Api", FakeApi({}))
    config = write_config(tmp_path / "b", WANDB_ON, data_root=shared_data)
    code = run_main(train_main, ["--config", str(config), "--resume-from-wandb", "gone99", "--resume-mode", "must"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: W&B run ups-test/gone99 not found") and "--resume-mode must" in err
    assert len(err.strip().splitlines()) == 1
    assert not (checkpoint_dir(config) / "stage_status.json").exists(), "nothing trained"


def test_allow_with_a_run_without_checkpoints_starts_fresh_and_says_so(tmp_path, shared_data, wandb_env,
                                                                       monkeypatch, capsys):
    monkeypatch.setattr(wandb, "Api", FakeApi({"new1": None}))
    config = write_config(tmp_path / "b", WANDB_ON, data_root=shared_data)
    code = run_main(train_main, ["--config", str(config), "--stage", "operator", "--set",
                                 "stages.operator.epochs=1", "--resume-from-wandb", "new1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "has no checkpoints" in out and "starting training from scratch (--resume-mode allow)" in out
    assert json.loads((checkpoint_dir(config) / "metadata.json").read_text())["training_wandb"]["id"] == "new1"


def test_an_sdk_error_that_quotes_the_key_is_reported_without_it(tmp_path, shared_data, wandb_env, monkeypatch,
                                                                 capsys):
    monkeypatch.setattr(wandb, "Api", FakeApi({}, error=RuntimeError(f"401 Unauthorized: api_key={KEY}")))
    config = write_config(tmp_path / "b", WANDB_ON, data_root=shared_data)
    code = run_main(train_main, ["--config", str(config), "--resume-from-wandb", "run42"])
    err = capsys.readouterr().err
    assert code == 2 and "401 Unauthorized" in err and "***" in err
    assert_key_nowhere(tmp_path, err)
