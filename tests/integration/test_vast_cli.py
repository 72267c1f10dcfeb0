"""`scripts/vast_launch.py` run as a real process against a local fake Vast API.

The real `vastai` client is pointed at the fake through `VAST_URL`; nothing leaves
127.0.0.1. Secrets are forwarded by name and must reach the create request, and never
stdout, stderr or the saved script.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.fake_vast import FakeVast
from ups.launch.packing import script_from_onstart_field
from ups.launch.ratelimit import TIME_SCALE_ENV
from ups.remote.outcome import read_outcome, write_outcome

pytestmark = pytest.mark.timeout(120)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vast_launch.py"
SECRET = "supersecret-wandb-0123456789"
RUN = ["--config", "configs/train_burgers_32dim.yaml", "--repo-url", "https://example.org/ups.git"]
SCALE = 0.01  # the stand-in's rate limits, and the launcher's waits, at 1/100 (TIME_SCALE_ENV)
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ watch: ", re.MULTILINE)


@pytest.fixture
def vast():
    fake = FakeVast(api_key="test-key", time_scale=SCALE)
    fake.start()
    yield fake
    fake.close()


@pytest.fixture
def cli(vast, tmp_path):
    """The launcher, run from a directory holding a copy of the config it is given (as a checkout does)."""
    (tmp_path / "configs").mkdir()
    shutil.copy(SCRIPT.parents[1] / RUN[1], tmp_path / RUN[1])

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "VAST_URL": vast.url,
                "VAST_API_KEY": "test-key", "WANDB_API_KEY": SECRET, TIME_SCALE_ENV: str(SCALE)}
        result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, capture_output=True,
                                text=True, timeout=60, env={**base, **env})
        assert SECRET not in result.stdout + result.stderr
        return result
    return run


def one_line_error(result: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and text in result.stderr, result.stderr


def test_search_sends_the_filters_and_lists_offers_cheapest_first(cli, vast):
    result = cli("search", "--gpu-name", "RTX_4090", "--max-price", "0.5", "--min-reliability", "0.99")
    assert result.returncode == 0, result.stderr
    (_, _, body, _, _), = vast.calls("POST", "/bundles/")
    assert body["gpu_name"] == {"eq": "RTX 4090"} and body["dph_total"] == {"lte": 0.5}
    assert body["reliability"] == {"gte": 0.99} and body["type"] == "on-demand"
    assert body["order"] == [["dph_total", "asc"]]
    assert result.stdout.index("501") < result.stdout.index("502")


def test_interruptible_search_asks_for_bid_offers_under_the_bid(cli, vast):
    assert cli("search", "--interruptible", "--bid", "0.3").returncode == 0
    (_, _, body, _, _), = vast.calls("POST", "/bundles/")
    assert body["type"] == "bid" and body["min_bid"] == {"lte": 0.3}


def test_launch_rents_the_cheapest_offer_with_the_script_and_the_forwarded_secret(cli, vast, tmp_path):
    result = cli("launch", *RUN, "--env", "WANDB_API_KEY", "--checkpoint-remote", "s3://bucket/run1",
                 "--auto-shutdown", "--shutdown-action", "destroy")
    assert result.returncode == 0, result.stderr
    assert "Launched instance 9000 from offer 501" in result.stdout
    assert [c[:2] for c in vast.requests] == [("POST", "/api/v0/bundles/"), ("PUT", "/api/v0/asks/501/")]
    body, = vast.created
    assert body["env"]["WANDB_API_KEY"] == SECRET  # sent to Vast, never printed
    assert body["label"] == "ups:training" and body["runtype"] == "ssh_proxy"
    script = script_from_onstart_field(body["onstart"])
    assert "FRESH START" in script and "ups_self_stop complete destroy 0" in script and SECRET not in script
    assert (tmp_path / ".vast" / "onstart.sh").read_text() == script


def test_launch_with_an_offer_id_skips_the_search(cli, vast):
    result = cli("launch", *RUN, "--offer-id", "502", "--resume-from-wandb", "train-20251028_120000")
    assert result.returncode == 0, result.stderr
    assert [c[:2] for c in vast.requests] == [("PUT", "/api/v0/asks/502/")]
    assert "RESUME MODE" in script_from_onstart_field(vast.created[0]["onstart"])


def test_dry_run_prints_the_script_and_redacted_request_and_sends_nothing(cli, vast, tmp_path):
    result = cli("launch", *RUN, "--env", "WANDB_API_KEY", "--resume-from-wandb", "train-20251028_120000",
                 "--interruptible", "--bid", "0.3", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert vast.requests == []
    assert "RESUME MODE" in result.stdout and "RUN_ID=train-20251028_120000" in result.stdout
    assert '"WANDB_API_KEY": "<redacted>"' in result.stdout and '"price": 0.3' in result.stdout
    assert '"type": "bid"' in result.stdout
    assert SECRET not in (tmp_path / ".vast" / "onstart.sh").read_text()


def test_launch_reads_the_checkpoint_directory_from_the_local_config(cli, vast, tmp_path):
    (tmp_path / "configs" / "exp.yaml").write_text("training:\n  checkpoint_dir: runs/exp1\n")
    result = cli("launch", "--config", "configs/exp.yaml", "--repo-url", "https://example.org/ups.git", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "CKPT_DIR=/workspace/universal_simulator/runs/exp1" in result.stdout.splitlines()
    (tmp_path / RUN[1]).unlink()
    absent = cli("launch", *RUN, "--dry-run")  # not on this machine: the default, said so
    assert "CKPT_DIR=/workspace/universal_simulator/checkpoints" in absent.stdout.splitlines()
    assert "is not on this machine" in absent.stderr


@pytest.mark.parametrize("args, code, text", [
    (["launch", "--config", "x'; touch /tmp/pwned; '", "--repo-url", "u", "--dry-run"], 2, "--config"),
    (["launch", *RUN, "--resume-from-wandb", "bad id", "--dry-run"], 2, "--resume-from-wandb"),
    (["launch", *RUN, "--branch", "-x", "--dry-run"], 2, "--branch"),
    (["launch", *RUN, "--interruptible", "--dry-run"], 2, "--bid"),
    (["launch", *RUN, "--env", "NOT_SET_ANYWHERE", "--dry-run"], 2, "NOT_SET_ANYWHERE"),
    (["launch", *RUN, "--env", "A=b", "--dry-run"], 2, "--env"),
    (["launch", "--dry-run"], 2, "--config"),
    (["destroy", "5"], 2, "--yes"),
    (["status", "12345"], 2, "not found"),
    (["launch", *RUN, "--offer-id", "999"], 1, "HTTP 404: error 404/3603: no_such_ask"),
    (["launch", *RUN, "--disk-gb", "5", "--offer-id", "501"], 2, "--disk-gb 5: Vast requires at least 8"),
    (["launch", *RUN, "--interruptible", "--bid", "200", "--offer-id", "501"], 2, "--bid 200.0: Vast accepts"),
    (["watch", "5", *RUN], 2, "--checkpoint-remote"),
    # gcsfs is not a dev dependency (s3fs is), so gs:// shows the missing-backend line.
    (["watch", "5", *RUN, "--checkpoint-remote", "gs://b/r"], 2, "pip install 'ups[gcs]'"),
])
def test_errors_are_one_line_and_a_nonzero_exit_without_traceback(cli, args, code, text):
    one_line_error(cli(*args), code, text)


def test_missing_api_key_is_one_clear_line(cli):
    one_line_error(cli("status", VAST_API_KEY=""), 2, "no Vast API key")


def test_api_key_is_read_from_the_vastai_key_file(cli, tmp_path):
    key_file = tmp_path / ".config" / "vastai" / "vast_api_key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("test-key\n")
    assert cli("status", VAST_API_KEY="").returncode == 0


def test_refused_and_unreachable_api_are_one_line_errors(cli):
    one_line_error(cli("status", VAST_API_KEY="wrong"), 1, "HTTP 401")
    one_line_error(cli("status", VAST_URL="http://127.0.0.1:9"), 1, "cannot reach the Vast API")


def test_status_logs_stop_and_destroy_reach_the_instance(cli, vast):
    vast.add_instance(42, ["running"])
    vast.logs[42] = "epoch 3 loss 0.12\n"
    assert "actual_status=running" in cli("status", "42").stdout
    assert "id=42" in cli("status").stdout
    assert cli("logs", "42", "--tail", "5").stdout == "epoch 3 loss 0.12\n"
    assert cli("stop", "42").returncode == 0
    assert vast.calls("PUT", "/instances/42/")[-1][2] == {"state": "stopped"}
    assert cli("destroy", "42", "--yes").returncode == 0
    assert vast.calls("DELETE", "/instances/42/")


WATCH = ["--poll-seconds", "0.1", "--down-timeout", "0.3", "--start-timeout", "5", "--stopped-timeout", "0.5"]


def test_watch_replaces_a_lost_instance_and_ends_when_the_replacement_records_success(cli, vast, tmp_path):
    remote = (tmp_path / "remote").as_uri()
    write_outcome(remote, "completed", instance_id=9000, exit_code=0)  # what the replacement will write
    vast.add_instance(100, ["running", "exited"])
    vast.next_timelines.append(["loading", "running"])
    result = cli("watch", "100", *RUN, "--checkpoint-remote", remote, "--env", "WANDB_API_KEY",
                 "--max-relaunches", "2", *WATCH)
    assert result.returncode == 0, result.stderr
    assert "relaunch 1 of 2" in result.stdout and "launched replacement instance 9000" in result.stdout
    assert "instance 9000 complete -> done" in result.stdout
    assert len(STAMP.findall(result.stdout)) >= 4  # every decision is logged with a time
    assert vast.calls("DELETE", "/instances/100/")  # the lost one can never come back as a 2nd writer
    body, = vast.created
    script = script_from_onstart_field(body["onstart"])
    assert "RESUME MODE" in script and f"REMOTE={remote}" in script
    assert '--resume-from "$REMOTE"' in script and body["env"]["WANDB_API_KEY"] == SECRET


def test_watch_recovers_an_outbid_instance_that_looks_stopped(cli, vast, tmp_path):
    remote = (tmp_path / "remote").as_uri()
    write_outcome(remote, "completed", instance_id=9000, exit_code=0)
    vast.add_instance(100, ["running", "outbid"])  # cur_state == intended_status == next_state == stopped
    result = cli("watch", "100", *RUN, "--checkpoint-remote", remote, "--interruptible", "--bid", "0.3", *WATCH)
    assert result.returncode == 0, result.stderr
    assert "instance 100 paused -> wait" in result.stdout and "stopped on request" not in result.stdout
    assert "instance 100 paused -> relaunch" in result.stdout
    assert vast.calls("DELETE", "/instances/100/") and vast.created[0]["price"] == 0.3


def test_a_stop_made_with_the_launcher_ends_the_watch_without_a_relaunch(cli, vast, tmp_path):
    vast.add_instance(100, ["running"])
    assert cli("stop", "100").returncode == 0  # recorded on this machine before Vast is asked
    result = cli("watch", "100", *RUN, "--checkpoint-remote", (tmp_path / "remote").as_uri(), *WATCH)
    assert result.returncode == 0, result.stderr
    assert "stopped or destroyed on request" in result.stdout and vast.created == []


def test_a_stop_recorded_in_the_remote_is_seen_by_a_watch_elsewhere(cli, vast, tmp_path):
    remote = (tmp_path / "remote").as_uri()
    vast.add_instance(100, ["running"])
    assert cli("stop", "100", "--checkpoint-remote", remote, XDG_STATE_HOME=str(tmp_path / "laptop")).returncode == 0
    assert read_outcome(remote).outcome == "stop_requested" and read_outcome(remote).instance_id == 100
    result = cli("watch", "100", *RUN, "--checkpoint-remote", remote, *WATCH)
    assert result.returncode == 0 and "on request" in result.stdout and vast.created == []


def test_a_run_that_recorded_a_failure_is_reported_failed(cli, vast, tmp_path):
    remote = (tmp_path / "remote").as_uri()
    write_outcome(remote, "failed", instance_id=100, exit_code=3, phase="data", action="stop")
    vast.add_instance(100, ["running", "outbid"])
    one_line_error(cli("watch", "100", *RUN, "--checkpoint-remote", remote, *WATCH), 1,
                   "the run recorded a failure (exit code 3 in data")
    assert vast.created == []


def test_an_image_that_fails_to_pull_is_reported_at_once_and_destroyed(cli, vast, tmp_path):
    vast.add_instance(100, ["loading", "pull_failed"])
    result = cli("watch", "100", *RUN, "--checkpoint-remote", (tmp_path / "remote").as_uri(), *WATCH)
    one_line_error(result, 1, "pull access denied for no/such-image")
    assert vast.calls("DELETE", "/instances/100/") and vast.created == []


def test_watch_right_after_launch_tolerates_the_null_rows_of_a_new_instance(cli, vast, tmp_path):
    remote = (tmp_path / "remote").as_uri()
    vast.new_row_delay = 3
    assert cli("launch", *RUN, "--checkpoint-remote", remote).returncode == 0

    def finish_once_listed():  # the run on the new instance records success after a while
        while len(vast.calls("GET", "/instances/9000/")) < 5:
            time.sleep(0.05)
        write_outcome(remote, "completed", instance_id=9000, exit_code=0)
    threading.Thread(target=finish_once_listed, daemon=True).start()
    result = cli("watch", "9000", *RUN, "--checkpoint-remote", remote, *WATCH)
    assert result.returncode == 0, result.stderr
    assert "not listed yet" in result.stdout and "complete -> done" in result.stdout
    assert len(vast.calls("GET", "/instances/9000/")) >= 4


def test_watch_gives_up_after_max_relaunches_and_leaves_the_last_instance(cli, vast):
    vast.add_instance(100, ["exited"])
    vast.next_timelines.append(["offline"])
    result = cli("watch", "100", *RUN, "--resume-from-wandb", "train-20251028_120000",
                 "--max-relaunches", "1", *WATCH)
    one_line_error(result, 1, "give-up")
    assert len(vast.created) == 1 and not vast.calls("DELETE", "/instances/9000/")
    assert "--resume-from-wandb" in script_from_onstart_field(vast.created[0]["onstart"])


def test_a_taken_offer_moves_on_to_the_next_matching_offer(cli, vast):
    vast.taken[501] = 410
    result = cli("launch", *RUN)
    assert result.returncode == 0, result.stderr
    assert "offer 501 was taken" in result.stdout and "Launched instance 9000 from offer 502" in result.stdout


@pytest.mark.parametrize("status", [200, 400])
def test_an_insufficient_bid_destroys_the_instance_vast_made_anyway(cli, vast, status):
    vast.insufficient_bid_status = status
    result = cli("launch", *RUN, "--interruptible", "--bid", "0.05", "--offer-id", "501")  # outbid meanwhile
    one_line_error(result, 1, "created instance 9000 anyway, which was destroyed")
    assert "create instance from offer 501" in result.stderr and "below the minimum" in result.stderr
    assert vast.calls("DELETE", "/instances/9000/") and vast.timelines == {}


def test_destroy_of_an_instance_already_gone_is_not_an_error(cli, vast):
    result = cli("destroy", "77", "--yes")
    assert result.returncode == 0 and "already gone" in result.stdout


def test_a_rate_limit_that_never_clears_is_one_line_naming_the_call(cli, vast):
    vast.limiter.always.add("show")
    vast.add_instance(42, ["running"])
    result = cli("status", "42")
    one_line_error(result, 1, "Vast API refused show instance 42: HTTP 429: API requests too frequent")
    assert "still refused after" in result.stderr and len(vast.calls("GET", "/instances/42/")) >= 6
    assert result.stdout.count("rate-limited") == len(vast.calls("GET", "/instances/42/")) - 1


@pytest.mark.parametrize("command", ["search", "launch", "status", "logs", "stop", "destroy", "watch"])
def test_help_on_each_subcommand_explains_its_options_with_an_example(cli, command):
    result = cli(command, "--help")
    assert result.returncode == 0 and "example:" in result.stdout
    assert f"python scripts/vast_launch.py {command}" in result.stdout


def test_launch_help_says_destroy_ends_all_billing(cli):
    assert "ALL billing ends" in " ".join(cli("launch", "--help").stdout.split())


def test_a_running_instance_whose_heartbeat_stalls_is_replaced(cli, vast, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "ups_heartbeat.json").write_text('{"tag": "operator-step-8", "unix": 1.0, "at": "x"}')  # never moves
    write_outcome(remote.as_uri(), "completed", instance_id=9000, exit_code=0)  # the replacement finishes
    vast.add_instance(100, ["running"])
    result = cli("watch", "100", *RUN, "--checkpoint-remote", remote.as_uri(), "--hang-timeout", "0.5", *WATCH)
    assert result.returncode == 0, result.stderr
    assert "instance 100 hung -> relaunch" in result.stdout and "heartbeat has not advanced" in result.stdout
    assert vast.calls("DELETE", "/instances/100/") and len(vast.created) == 1


def test_bid_help_says_the_price_is_for_the_whole_machine(cli):
    assert "for the whole machine" in " ".join(cli("launch", "--help").stdout.split())
