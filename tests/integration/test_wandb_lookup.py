"""Existence that cannot lie: the real wandb SDK against a loopback W&B server that refuses
(401, 403, 429, 5xx) or answers "nothing there". Only the definite not-found lets
`--resume-mode allow` start fresh; a refusal is one line, exit 2, nothing trained or published."""

from __future__ import annotations

import json

import pytest
import wandb

from tests.fake_wandb import FakeApi, http_error
from tests.helpers import checkpoint_dir, write_config
from tests.integration.test_wandb_modes import KEY, WANDB_ON, offline_runs, wandb_env  # noqa: F401 - fixture
from tests.wandb_server import WandbServer
from ups.commands.common import run_main
from ups.commands.train import main as train_main
from ups.errors import RemoteUnavailableError
from ups.remote.store import NoRemoteCheckpoint
from ups.remote.wandb_store import WandbStore

ONE_EPOCH = ["--stage", "operator", "--set", "stages.operator.epochs=1"]


@pytest.fixture
def server_env(wandb_env, monkeypatch):
    def start(status):
        server = WandbServer(status)
        monkeypatch.setenv("WANDB_BASE_URL", server.url)
        monkeypatch.setenv("WANDB__GRAPHQL_RETRY_MAX", "1")  # wandb-core would retry a 5xx for minutes (0 = its default)
        monkeypatch.setenv("WANDB_HTTP_TIMEOUT", "20")  # ups' bound on one call (wandb_store.api_timeout)
        return server
    return start


@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
def test_a_wandb_that_refuses_to_answer_stops_before_training_and_names_its_answer(
        tmp_path, shared_data, server_env, capsys, status):
    server = server_env(status)
    config = write_config(tmp_path / "b", WANDB_ON, data_root=shared_data)
    with server.running():
        code = run_main(train_main, ["--config", str(config), *ONE_EPOCH, "--resume-from-wandb", "abc.1-x",
                                     "--resume-mode", "allow"])
    out = capsys.readouterr()
    assert code == 2
    assert out.err.startswith("error: could not ask W&B about ") and len(out.err.strip().splitlines()) == 1
    assert f"HTTP {status}" in out.err, out.err
    assert "starting training from scratch" not in out.out
    assert not (checkpoint_dir(config) / "stage_status.json").exists(), "nothing trained"
    assert offline_runs(tmp_path) == [], "no W&B run started, so nothing was published"
    assert "Viewer" in server.operations(), "the real SDK asked the loopback server"
    assert KEY not in out.err + out.out


def test_a_definite_not_found_from_wandb_starts_fresh_under_allow(tmp_path, shared_data, server_env, capsys):
    server = server_env(None)
    config = write_config(tmp_path / "b", WANDB_ON, data_root=shared_data)
    with server.running():
        code = run_main(train_main, ["--config", str(config), *ONE_EPOCH, "--resume-from-wandb", "new1"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err
    assert "W&B run ups-test/new1 not found" in out and "starting training from scratch (--resume-mode allow)" in out
    assert json.loads((checkpoint_dir(config) / "metadata.json").read_text())["training_wandb"]["id"] == "new1"


def test_a_definite_not_found_under_must_is_exit_2(tmp_path, shared_data, server_env, capsys):
    server = server_env(None)
    config = write_config(tmp_path / "b", WANDB_ON, data_root=shared_data)
    with server.running():
        code = run_main(train_main, ["--config", str(config), "--resume-from-wandb", "new1", "--resume-mode", "must"])
    assert code == 2 and "--resume-mode must" in capsys.readouterr().err


# --- the classification, through the strict Api stand-in ------------------------


def store() -> WandbStore:
    return WandbStore("run42", entity="ent", project="proj")


@pytest.mark.parametrize("status", [401, 403, 429, 500, 502])
def test_every_http_refusal_of_an_artifact_lookup_is_could_not_ask(tmp_path, status):
    api = FakeApi({"run42": tmp_path}, status=status)
    with pytest.raises(RemoteUnavailableError, match=f"HTTP {status}"):
        store().open_reader(api)


def test_a_missing_artifact_is_not_found_and_the_lookup_names_the_latest_alias(tmp_path):
    api = FakeApi({"run42": None})
    with pytest.raises(NoRemoteCheckpoint, match="no artifact ent/proj/ups-checkpoints-run42:latest"):
        store().open_reader(api)
    assert api.calls[-1] == ("artifact", "ent/proj/ups-checkpoints-run42:latest", "ups-checkpoint")


def test_an_artifact_of_another_type_is_an_error_not_a_missing_checkpoint(tmp_path):
    api = FakeApi({"run42": tmp_path}, types={"run42": "model"})
    with pytest.raises(RemoteUnavailableError, match="specified but this artifact is of type 'model'"):
        store().open_reader(api)


def test_a_missing_run_is_not_found_and_a_refused_run_lookup_is_not(tmp_path):
    with pytest.raises(NoRemoteCheckpoint, match="W&B run ent/proj/run42 not found"):
        store().check_run(FakeApi({}))
    with pytest.raises(RemoteUnavailableError, match="HTTP 403"):
        store().check_run(FakeApi({"run42": tmp_path}, error=http_error(403)))


def test_a_network_failure_without_an_http_status_is_could_not_ask(tmp_path):
    api = FakeApi({"run42": tmp_path}, error=wandb.errors.CommError("connection refused", ConnectionError("refused")))
    with pytest.raises(RemoteUnavailableError, match="connection refused"):
        store().open_reader(api)
