"""A run whose only remote is its W&B run: its outcome and heartbeat reach `watch`.

Real wandb 0.31 (the run's own stream, and `wandb.Api()` for the self-stop and the
watcher) against the loopback W&B server of tests/wandb_server.py; the onstart script
and the launcher run for real against the strict Vast stand-in.
"""

from __future__ import annotations

import pytest
import wandb
from wandb.errors import CommError

from tests.integration.test_vast_cli import RUN, WATCH, cli, vast  # noqa: F401 - fixtures
from tests.integration.test_vastai_resume import Sandbox, on_vast, origin  # noqa: F401 - fixture
from tests.integration.fake_vast import FakeVast
from tests.onstart_sandbox import image_python
from tests.integration.test_wandb_modes import KEY
from tests.wandb_server import VIEWER, WandbServer
from ups.remote.outcome import Outcome
from ups.remote.wandb_outcome import read_wandb_heartbeat, read_wandb_outcome, wandb_heartbeat_writer

pytestmark = pytest.mark.timeout(120)
RUN_ID = "wbonly01"


@pytest.fixture
def server(tmp_path, monkeypatch):
    srv = WandbServer()
    env = {"WANDB_BASE_URL": srv.url, "WANDB_API_KEY": KEY, "WANDB_MODE": "online",
           "WANDB_DIR": str(tmp_path / "wandb"), "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
           "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"), "WANDB_DATA_DIR": str(tmp_path / "wandb-data")}
    (tmp_path / "wandb").mkdir()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    srv.env = env
    wandb.teardown()
    with srv.running():
        yield srv
    wandb.teardown()


class _Snap:
    tag = "operator-step-40"


def test_the_live_run_carries_the_heartbeat_and_the_watcher_reads_it_back(server):
    run = wandb.init(project="ups", id=RUN_ID, settings=wandb.Settings(finish_timeout=10))
    wandb_heartbeat_writer(run)(_Snap())
    run.finish()
    beat = read_wandb_heartbeat(f"{VIEWER['entity']}/ups/{RUN_ID}")
    assert beat is not None and beat.tag == "operator-step-40"
    assert read_wandb_outcome(f"{VIEWER['entity']}/ups/{RUN_ID}") is None, "no outcome before one is written"
    with pytest.raises(CommError, match="Could not find run"):  # `watch` logs it and asks again next poll
        read_wandb_heartbeat(f"{VIEWER['entity']}/other-project/{RUN_ID}")


@pytest.fixture
def box_vast():
    """The stand-in as an instance sees it: its own scoped key, real thresholds."""
    fake = FakeVast(api_key="user-key")
    fake.container_keys["container-scoped-key"] = 77
    fake.start()
    fake.add_instance(77, ["running"])
    yield fake
    fake.close()


@pytest.mark.parametrize("rc, outcome", [("0", "completed"), ("3", "failed")])
def test_a_wandb_only_run_records_its_outcome_in_the_run_before_it_stops_itself(tmp_path, origin, server, box_vast,
                                                                               rc, outcome):
    vast = box_vast
    server.add_run(RUN_ID, "ups", {"operator/train_loss": 0.1})
    box = Sandbox(tmp_path, origin)
    script = box.script(auto_shutdown=True, resume_from_wandb=RUN_ID)
    assert "REMOTE=''" in script and f"export UPS_WANDB_RUN={RUN_ID} " in script
    result = box.run(script, **on_vast(vast, UPS_STUB_TRAIN_RC=rc, **server.env))
    assert result.returncode == int(rc), result.stdout[-2000:] + result.stderr[-2000:]
    assert [c[2] for c in vast.calls(pattern="/instances/77/")] == [{"state": "stopped"}]
    record = Outcome(**server.runs[RUN_ID].summary["ups_outcome"])
    assert (record.outcome, record.instance_id, record.exit_code, record.action) == (outcome, 77, int(rc), "stop")
    assert server.runs[RUN_ID].summary["operator/train_loss"] == 0.1, "the run's own summary is kept"
    assert KEY not in result.stdout + result.stderr


def test_a_failed_clone_of_a_wandb_only_run_is_recorded_in_the_run_with_no_ups_to_run(tmp_path, origin, server,
                                                                                       box_vast):
    # No checkout: the script's own writer sets the summary key `watch` reads, with the
    # image's wandb (all of this environment but ups and pip), then the CLI stops.
    vast = box_vast
    server.add_run(RUN_ID, "ups", {"operator/train_loss": 0.1})
    path, site = image_python(tmp_path)
    box = Sandbox(tmp_path, origin)
    script = box.script(auto_shutdown=True, resume_from_wandb=RUN_ID, repo_url="/nonexistent/repo",
                        python_exe="image-python")
    result = box.run(script, **on_vast(vast, PATH=path, PYTHONPATH=site, **server.env))
    assert result.returncode == 128 and "UPS_RUN_FAILED: clone exited with 128" in result.stdout
    assert [c[2] for c in vast.calls(pattern="/instances/77/")] == [{"state": "stopped"}]
    summary = server.runs[RUN_ID].summary
    assert "ups_outcome" in summary, result.stdout[-2000:] + result.stderr[-2000:]
    record = Outcome(**summary["ups_outcome"])
    assert (record.outcome, record.phase, record.exit_code, record.instance_id, record.action) == \
        ("failed", "clone", 128, 77, "stop")
    assert summary["operator/train_loss"] == 0.1, "the run's own summary is kept"
    assert KEY not in result.stdout + result.stderr


def test_watch_ends_on_the_outcome_in_the_wandb_run_instead_of_taking_the_stop_for_a_pause(cli, vast, server):
    """The instance stopped itself after success: Vast shows it exactly as an outbid one."""
    vast.add_instance(100, ["running", "outbid"])
    run = server.add_run(RUN_ID, "ups")
    run.summary["ups_outcome"] = {"outcome": "completed", "instance_id": 100, "exit_code": 0, "by": "run",
                                  "action": "stop", "unix": 1.0, "at": "2026-12-02T07:00:00Z"}
    result = _watch(cli, server)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "the run recorded success (exit code 0" in result.stdout and vast.created == []


def test_watch_without_an_outcome_in_the_wandb_run_takes_the_stop_for_a_pause(cli, vast, server):
    vast.add_instance(100, ["running", "outbid"])
    server.add_run(RUN_ID, "ups")
    result = _watch(cli, server, "--max-relaunches", "0")
    assert "instance 100 paused" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]


def _watch(cli, server, *extra):  # noqa: F811 - `cli` is the fixture's runner
    return cli("watch", "100", *RUN, "--resume-from-wandb", RUN_ID, *WATCH, *extra, **server.env)
