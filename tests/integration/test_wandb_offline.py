"""Offline and unreachable W&B: nothing leaves the machine in offline mode (a loopback listener
stands where the W&B host would be and must see nothing), `finish` is bounded by the SIGTERM
grace, and an online W&B that cannot be reached is an error at once or, with
`logging.wandb.fallback: offline`, an offline run that says how to sync it."""

from __future__ import annotations

import wandb

from tests.helpers import checkpoint_dir, train, write_config
from tests.integration.test_wandb_modes import WANDB_ON, offline_runs, wandb_env  # noqa: F401 - fixture
from tests.wandb_server import WandbServer
from ups.commands.common import run_main
from ups.commands.train import main as train_main
from ups.config import load_config
from ups.remote.wandb_run import finish_wandb, start_wandb

ONE_EPOCH = ["--stage", "operator", "--set", "stages.operator.epochs=1"]
ONLINE = {"logging": {"wandb": {"enabled": True, "mode": "online", "project": "ups-test"}}}


def test_offline_mode_from_the_config_alone_sends_nothing_to_the_wandb_host(tmp_path, shared_data, wandb_env,
                                                                           monkeypatch):
    """With `mode=offline` given to wandb.init alone, wandb 0.31 still posts its telemetry
    (`/sdk/otel/v1/metrics`) to the W&B host: this listener sees it unless WANDB_MODE is set first."""
    server = WandbServer()
    monkeypatch.delenv("WANDB_MODE")  # offline only in the config
    env = {k: v for k, v in wandb_env.items() if k != "WANDB_MODE"}
    env["WANDB_BASE_URL"] = server.url
    config = write_config(tmp_path / "a", {**WANDB_ON, "checkpoint": {"upload_every_seconds": 0}},
                          data_root=shared_data)
    with server.running():
        proc = train(config, *ONE_EPOCH, env=env, check=True)
    assert server.requests == [], "offline: no request may reach the W&B host (telemetry included)"
    assert "kept locally until `wandb sync " in proc.stdout
    assert len(offline_runs(tmp_path)) == 1


def test_offline_publishes_completed_stages_not_every_periodic_state(tmp_path, shared_data, wandb_env):
    config = write_config(tmp_path / "a", {**WANDB_ON, "checkpoint": {"upload_every_seconds": 0}},
                          data_root=shared_data)
    proc = train(config, "--stage", "operator", env=wandb_env, check=True)
    staged = [p for p in (tmp_path / "wandb-data").rglob("*") if p.is_file() and "step-" in p.name]
    assert staged == [], f"periodic states were staged for a later sync: {staged}"
    assert "synced operator-completed" in proc.stdout


def test_finish_is_bounded_by_the_sigterm_grace(tmp_path, shared_data, wandb_env):
    config = write_config(tmp_path / "a", {**WANDB_ON, "checkpoint": {"flush_on_signal_seconds": 7}},
                          data_root=shared_data)
    run = start_wandb(load_config(config, []), checkpoint_dir(config))
    try:
        assert run.settings.finish_timeout == 7.0  # wandb-core gives up uploading after this
    finally:
        finish_wandb(run, 0)


def test_an_unreachable_online_wandb_is_an_error_at_once(tmp_path, shared_data, wandb_env, monkeypatch, capsys):
    server = WandbServer(status=401)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_BASE_URL", server.url)
    config = write_config(tmp_path / "a", ONLINE, data_root=shared_data)
    with server.running():
        code = run_main(train_main, ["--config", str(config), *ONE_EPOCH])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: W&B cannot be reached for an online run") and "logging.wandb.fallback" in err
    assert not (checkpoint_dir(config) / "stage_status.json").exists()


def test_with_fallback_offline_an_unreachable_wandb_trains_offline_and_says_how_to_sync(
        tmp_path, shared_data, wandb_env, monkeypatch, capsys):
    server = WandbServer(status=401)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_BASE_URL", server.url)
    config = write_config(tmp_path / "a", {"logging": {"wandb": {**ONLINE["logging"]["wandb"], "fallback": "offline"}}},
                          data_root=shared_data)
    with server.running():
        code = run_main(train_main, ["--config", str(config), *ONE_EPOCH])
    out = capsys.readouterr().out
    assert code == 0
    assert "W&B cannot be reached (HTTP 401" in out and "logging offline instead" in out
    assert "kept locally until `wandb sync " in out
    assert len(offline_runs(tmp_path)) == 1
    assert wandb.run is None
