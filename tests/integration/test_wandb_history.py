"""The W&B history a resumed run ends with equals an uninterrupted run's.

The real SDK (wandb 0.31 and wandb-core) logs to the loopback W&B server of
tests/wandb_server.py, which keeps each run's history as the file stream delivers it; a
training fails (an exception: the SDK still delivers what was logged, which a SIGKILL may
cut short) after the steps that follow its last saved state were logged, then resumes.
The checkpoints go to a local `--checkpoint-remote`, so W&B carries the metrics alone.
"""

from __future__ import annotations

import json
import os
import pytest
import wandb

from tests.helpers import checkpoint_dir, train, write_config
from tests.integration.test_wandb_modes import KEY
from tests.wandb_server import WandbServer
from ups.training.metrics import read_metrics

ONLINE = {"logging": {"wandb": {"enabled": True, "mode": "online", "project": "ups-test"}},
          "checkpoint": {"every_steps": 20}}
OPERATOR = ["--stage", "operator"]
FAIL = "raise:after-step:operator:35"  # states at steps 20 (and 40): lines of steps 25 and 30 are logged, then redone


def server_env(root, server: WandbServer) -> dict[str, str]:
    (root / "wandb").mkdir(exist_ok=True)
    return {"WANDB_MODE": "online", "WANDB_API_KEY": KEY, "WANDB_BASE_URL": server.url,
            "WANDB_DIR": str(root / "wandb"), "WANDB_DATA_DIR": str(root / "wandb-data"),
            "WANDB_CACHE_DIR": str(root / "wandb-cache"), "WANDB_CONFIG_DIR": str(root / "wandb-config")}


@pytest.fixture
def online_env(tmp_path):
    return lambda server: server_env(tmp_path, server)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared_data) -> list[tuple[int, int, str]]:
    """The W&B history of the same training, uninterrupted."""
    root = tmp_path_factory.mktemp("wandb-reference")
    server = WandbServer()
    with server.running():
        config = write_config(root, ONLINE, data_root=shared_data)
        train(config, *OPERATOR, "--checkpoint-remote", (root / "remote").as_uri(), env=server_env(root, server),
              check=True)
    return history(server, run_id_of(config))


def history(server: WandbServer, run_id: str) -> list[tuple[int, int, str]]:
    """(`_step`, trainer/global_step, train|val) of each training line the server holds for the run."""
    return [(h["_step"], h["trainer/global_step"], "val" if "operator/val_loss" in h else "train")
            for h in server.runs[run_id].history if "trainer/global_step" in h]


def run_id_of(config) -> str:
    return json.loads((checkpoint_dir(config) / "metadata.json").read_text())["training_wandb"]["id"]


def fail_then_resume(tmp_path, shared_data, server, env, *resume_args):
    config = write_config(tmp_path / "a", ONLINE, data_root=shared_data)
    remote = ["--checkpoint-remote", (tmp_path / "remote").as_uri()]
    failed = train(config, *OPERATOR, *remote, env={**env, "UPS_FAULT": FAIL})
    assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-2000:]
    first = run_id_of(config)
    assert [g for _, g, _ in history(server, first)][-1] == 30, "the failed attempt's lines reached the server"
    # WANDB_RESUME with resume_from makes wandb.init fail: ups takes it out of the way
    resumed = train(config, *OPERATOR, *remote, "--auto-resume", *resume_args, env={**env, "WANDB_RESUME": "allow"},
                    check=True)
    return config, first, resumed


def test_a_resume_rewinds_the_run_to_its_last_saved_state(tmp_path, shared_data, online_env, reference):
    server = WandbServer()
    with server.running():
        env = online_env(server)
        config, run_id, resumed = fail_then_resume(tmp_path, shared_data, server, env)
    assert run_id_of(config) == run_id
    assert "rewind of" in resumed.stdout, resumed.stdout[-3000:]
    got = history(server, run_id)
    assert got == reference, "the resumed run's history is the uninterrupted run's, step for step"
    assert [s for s, _, _ in got] == list(range(len(got)))
    assert server.runs[run_id].rewinds, "the server was asked to rewind"
    local = [(r["wandb_step"], r["global_step"], r["kind"]) for r in read_metrics(checkpoint_dir(config))]
    assert local == got, "metrics.jsonl names the W&B step of each line"


def test_a_server_that_refuses_rewinds_gets_a_plain_resume_and_a_warning_naming_the_repeated_steps(
        tmp_path, shared_data, online_env):
    server = WandbServer(rewind=False)
    with server.running():
        config, run_id, resumed = fail_then_resume(tmp_path, shared_data, server, online_env(server))
    got = history(server, run_id)
    steps = [g for _, g, kind in got if kind == "train"]
    repeated = sorted({g for g in steps if steps.count(g) > 1})
    assert repeated == [25, 30], "the redone steps appear twice, as the warning says"
    resume_state = max(g for g in steps if g < 25)
    assert [s for s, _, _ in got] == list(range(len(got))), "a plain resume continues the W&B steps"
    warning = next(line for line in resumed.stdout.splitlines() if "refused to rewind" in line)
    assert f"run {run_id} to step" in warning and "(trainer/global_step 25-30) will appear twice" in warning
    assert resume_state == 20 and not server.runs[run_id].rewinds


def test_resume_mode_never_forks_a_new_run_from_the_last_saved_state(tmp_path, shared_data, online_env, reference):
    """A fresh machine resumes from the remote copy into a new run: the fork carries the old
    run's history up to the saved state, so the new run reads like an uninterrupted one."""
    server = WandbServer()
    with server.running():
        env = online_env(server)
        config = write_config(tmp_path / "a", ONLINE, data_root=shared_data)
        remote = (tmp_path / "remote").as_uri()
        failed = train(config, *OPERATOR, "--checkpoint-remote", remote, env={**env, "UPS_FAULT": FAIL})
        assert failed.returncode == 1
        first = run_id_of(config)
        fresh = write_config(tmp_path / "b", ONLINE, data_root=shared_data)
        forked = train(fresh, *OPERATOR, "--resume-from", remote, "--resume-mode", "never",
                       "--checkpoint-remote", (tmp_path / "remote-b").as_uri(),
                       env={**env, "WANDB_RESUME": "allow"}, check=True)
    second = run_id_of(fresh)
    assert second != first and server.runs[second].forked_from is not None, forked.stdout[-3000:]
    assert server.runs[second].forked_from[0] == first
    assert history(server, second) == reference
    assert [g for _, g, _ in history(server, first)][-1] == 30, "the old run is left as it was"


def test_a_server_that_refuses_forks_gets_a_new_run_without_the_history_and_a_warning(
        tmp_path, online_env, monkeypatch, capsys):
    """In-process, against the same server: the fork's fallback is a plain new run."""
    from tests.remote_fixtures import operator_done_diffusion_running
    from ups.config import load_config
    from ups.remote.wandb_run import export_mode, finish_wandb, start_wandb
    from ups.resume.metadata import update_metadata

    server = WandbServer(fork=False)
    with server.running():
        for key, value in online_env(server).items():
            monkeypatch.setenv(key, value)
        config = write_config(tmp_path / "a", ONLINE)
        ckpt = checkpoint_dir(config)
        operator_done_diffusion_running(ckpt, step=8)
        (ckpt / "metrics.jsonl").write_text("".join(
            json.dumps({"stage": "operator", "step": s, "global_step": s, "wandb_step": n}) + "\n"
            for n, s in enumerate((5, 10))))
        update_metadata(ckpt, training_wandb={"id": "oldrun01"})
        server.add_run("oldrun01", "ups-test")
        cfg = load_config(config, [])
        export_mode(cfg)
        wandb.teardown()
        run = start_wandb(cfg, ckpt, resume="never")
        run.log({"trainer/global_step": 15})
        finish_wandb(run, 0)
        wandb.teardown()
    out = capsys.readouterr().out
    assert "W&B refused to fork run oldrun01 at step 1" in out and "starts without that history" in out
    assert run.id != "oldrun01" and server.runs[run.id].forked_from is None
    assert server.runs[run.id].steps() == [0]


def test_offline_segments_synced_later_end_with_the_uninterrupted_history(tmp_path, shared_data, online_env,
                                                                         reference):
    """Offline, the resume records its rewind in the segment; `wandb sync` applies it on the server."""
    import subprocess
    import sys

    server = WandbServer()
    with server.running():
        env = {**online_env(server), "WANDB_MODE": "offline"}
        offline = {**ONLINE, "logging": {"wandb": {**ONLINE["logging"]["wandb"], "mode": "offline"}}}
        config = write_config(tmp_path / "a", offline, data_root=shared_data)
        remote = ["--checkpoint-remote", (tmp_path / "remote").as_uri()]
        assert train(config, *OPERATOR, *remote, env={**env, "UPS_FAULT": FAIL}).returncode == 1
        train(config, *OPERATOR, *remote, "--auto-resume", env=env, check=True)
        run_id = run_id_of(config)
        segments = sorted((tmp_path / "wandb" / "wandb").glob(f"offline-run-*-{run_id}"))
        assert len(segments) == 2
        for segment in segments:  # in the order they ran
            synced = subprocess.run([sys.executable, "-m", "wandb", "sync", str(segment)], env={
                **os.environ, **env, "WANDB_MODE": "online"}, capture_output=True, text=True, timeout=120)
            assert synced.returncode == 0, synced.stdout[-2000:] + synced.stderr[-2000:]
    assert server.runs[run_id].rewinds, "the sync of the resumed segment rewound the run"
    assert history(server, run_id) == reference
