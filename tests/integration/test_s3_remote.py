"""The fsspec store against a real S3-protocol server on loopback (moto's server mode) through s3fs:
the pre-flight probe, not-found versus could-not-ask, the status written only over files that are
there, incomplete multipart uploads, and the documented endpoint setting driving a real training."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO, assert_bit_identical, checkpoint_dir, train, write_config
from tests.remote_fixtures import complete_stage, operator_done_diffusion_running, save_state
from tests.s3_server import AWS_VARS, MotoServer, free_port
from ups.commands.common import run_main
from ups.commands.status import main as status_main
from ups.commands.train import main as train_main
from ups.errors import RemoteUnavailableError
from ups.remote.download import download_checkpoint
from ups.remote.fsspec_store import FsspecStore
from ups.remote.store import NoRemoteCheckpoint
from ups.remote.sync import take_snapshot

s3fs = pytest.importorskip("s3fs")
ONE_EPOCH = ["--stage", "operator", "--set", "stages.operator.epochs=1"]


@pytest.fixture(scope="module")
def moto():
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moto_auth():
    server = MotoServer(auth=True)
    yield server
    server.stop()


@pytest.fixture
def s3(moto, monkeypatch):
    """The documented setting in this process's environment, a fresh server state and bucket `ckpt`."""
    def use(server=moto, **kw):
        for var in AWS_VARS:
            monkeypatch.delenv(var, raising=False)
        for key, value in server.env(**kw).items():
            monkeypatch.setenv(key, value)
        s3fs.S3FileSystem.clear_instance_cache()  # s3fs caches clients per arguments, not per environment
        return s3fs.S3FileSystem()

    moto.reset()
    use().mkdir("ckpt")
    yield use
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize("case", ["missing bucket", "wrong credentials", "no credentials"])
def test_a_remote_that_cannot_hold_a_copy_is_one_line_and_exit_2_before_any_training(
        tmp_path, shared_data, s3, moto_auth, capsys, case):
    uri = "s3://ckpt/run1"
    if case == "missing bucket":
        s3(), (uri := "s3://no-such-bucket/run1")
    elif case == "wrong credentials":
        s3(moto_auth, key="AKIAWRONGKEY", secret="nope")
    else:
        s3(key=None)
    config = write_config(tmp_path, data_root=shared_data)
    code = run_main(train_main, ["--config", str(config), *ONE_EPOCH, "--checkpoint-remote", uri])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: --checkpoint-remote {uri}: cannot keep a copy there")
    expected = {"missing bucket": "bucket does not exist", "wrong credentials": "credentials were refused",
                "no credentials": "no credentials found"}[case]
    assert expected in err and "nothing was trained" in err
    assert not (checkpoint_dir(config) / "stage_status.json").exists()


def test_resume_from_an_empty_prefix_follows_resume_mode(tmp_path, shared_data, s3, capsys):
    s3()
    config = write_config(tmp_path, data_root=shared_data)
    code = run_main(train_main, ["--config", str(config), "--resume-from", "s3://ckpt/typo", "--resume-mode", "must"])
    err = capsys.readouterr().err
    assert code == 2 and "s3://ckpt/typo holds no checkpoint" in err and "--resume-mode must" in err
    assert not (checkpoint_dir(config) / "stage_status.json").exists()
    code = run_main(train_main, ["--config", str(config), *ONE_EPOCH, "--resume-from", "s3://ckpt/typo"])
    assert code == 0
    assert "starting training from scratch (--resume-mode allow)" in capsys.readouterr().out


def test_resume_from_a_remote_that_refuses_the_key_is_an_error_not_an_empty_remote(
        tmp_path, shared_data, s3, moto_auth, capsys):
    s3(moto_auth, key="AKIAWRONGKEY", secret="nope")
    config = write_config(tmp_path, data_root=shared_data)
    code = run_main(train_main, ["--config", str(config), *ONE_EPOCH, "--resume-from", "s3://ckpt/run1"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read s3://ckpt/run1" in err and "PermissionError" in err
    assert not (checkpoint_dir(config) / "stage_status.json").exists()
    local = tmp_path / "local"
    operator_done_diffusion_running(local)
    with pytest.raises(RemoteUnavailableError, match="cannot read stage_status.json"):
        FsspecStore("s3://ckpt/run1").publish(take_snapshot(local), local)  # could not read it: never writes


def test_an_object_lost_on_the_server_is_sent_again_before_the_status_names_it(tmp_path, s3):
    fs = s3()
    state = operator_done_diffusion_running(tmp_path)
    store = FsspecStore("s3://ckpt/run1")
    store.publish(take_snapshot(tmp_path), tmp_path)
    fs.rm_file("ckpt/run1/operator.pt")  # the server lost it; the store's own record says it is there
    complete_stage(tmp_path, "diff_residual", ("diffusion_residual.pt", "diffusion_residual_ema.pt"))
    report = store.publish(take_snapshot(tmp_path), tmp_path)
    assert report.uploaded == 3  # the two new outputs, and operator.pt again
    fs.invalidate_cache()
    status = json.loads(fs.cat_file("ckpt/run1/stage_status.json"))
    for stage, details in status["details"].items():
        for name, digest in (details.get("outputs") or {}).items():
            assert fs.info(f"ckpt/run1/{name}")["size"] == digest["size"], name
    assert state  # the running stage's state was named before, and pruned once not named


def test_incomplete_multipart_uploads_under_the_prefix_are_aborted_at_start(tmp_path, s3, capsys):
    fs = s3()
    upload = fs.call_s3("create_multipart_upload", Bucket="ckpt", Key="run1/state/operator/step-4.pt")
    fs.call_s3("create_multipart_upload", Bucket="ckpt", Key="other-run/x.pt")
    FsspecStore("s3://ckpt/run1").probe()
    left = fs.call_s3("list_multipart_uploads", Bucket="ckpt").get("Uploads", [])
    assert [u["Key"] for u in left] == ["other-run/x.pt"], "only this prefix's uploads are aborted"
    assert upload["UploadId"] not in {u["UploadId"] for u in left}
    assert "aborted 1 incomplete multipart upload(s) under s3://ckpt/run1" in capsys.readouterr().out


def test_a_missing_status_is_not_found_and_a_refused_one_is_could_not_ask(tmp_path, s3, moto_auth):
    s3()
    with pytest.raises(NoRemoteCheckpoint, match="stage_status.json not found"):
        FsspecStore("s3://ckpt/empty").open_reader()
    with pytest.raises(NoRemoteCheckpoint, match="its bucket does not exist"):
        FsspecStore("s3://no-such-bucket/x").open_reader()
    s3(moto_auth, key="AKIAWRONGKEY", secret="nope")
    with pytest.raises(RemoteUnavailableError, match="credentials were refused"):
        FsspecStore("s3://ckpt/empty").open_reader()


@pytest.mark.slow
def test_the_documented_endpoint_setting_keeps_a_copy_a_fresh_machine_resumes_from(
        tmp_path, shared_data, reference_run, moto, s3):
    """docs/checkpoint_resume_guide.md, "Object stores": AWS_ENDPOINT_URL and a key pair, nothing else."""
    s3()
    env = {**{k: v for k, v in os.environ.items() if k not in AWS_VARS}, **moto.env()}
    first = write_config(tmp_path / "first", data_root=shared_data)
    done = train(first, "--stage", "all", "--checkpoint-remote", "s3://ckpt/run1", env=env, check=True)
    assert "✓ Remote copy up to date: s3://ckpt/run1" in done.stdout
    fresh = write_config(tmp_path / "fresh", data_root=shared_data)
    resumed = train(fresh, "--stage", "all", "--resume-from", "s3://ckpt/run1", env=env, check=True)
    assert resumed.stdout.count("skip      completed, outputs verified") == 4
    assert_bit_identical(reference_run, checkpoint_dir(fresh))


@pytest.mark.parametrize("case", ["no credentials", "wrong credentials", "unreachable endpoint"])
def test_ups_status_of_a_remote_that_cannot_be_read_is_one_line_and_exit_2(tmp_path, moto, moto_auth, case):
    env = {"no credentials": moto.env(key=None), "wrong credentials": moto_auth.env(key="AKIAWRONGKEY", secret="x"),
           "unreachable endpoint": {**moto.env(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}}[case]
    env = {**{k: v for k, v in os.environ.items() if k not in AWS_VARS}, **env}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "show_training_status.py"), "s3://ckpt/run1"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: cannot read s3://ckpt/run1: ")


def test_ups_status_of_a_remote_copy_says_the_trainer_is_unknown_and_continues_with_resume_from(
        tmp_path, s3, capsys):
    s3()
    operator_done_diffusion_running(tmp_path)
    FsspecStore("s3://ckpt/run1").publish(take_snapshot(tmp_path), tmp_path)
    assert run_main(status_main, ["s3://ckpt/run1", "--verify", "size"]) == 0
    out = capsys.readouterr().out
    assert "Trainer:              unknown" in out
    assert "continue with: python scripts/train.py --config <config> --stage all --resume-from s3://ckpt/run1" in out


def documented_env(provider: str) -> dict[str, str]:
    """The variables of the guide's `# <provider>` block (docs/checkpoint_resume_guide.md)."""
    text = (REPO / "docs" / "checkpoint_resume_guide.md").read_text()
    block = re.search(rf"```ini\n# {provider}[^\n]*\n(.*?)```", text, re.S).group(1)
    return dict(line.split("=", 1) for line in block.strip().splitlines())


@pytest.mark.parametrize("provider", ["MinIO", "Cloudflare R2", "Backblaze B2"])
def test_the_guide_names_the_same_variables_for_every_s3_compatible_store(provider):
    assert set(documented_env(provider)) == {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                             "AWS_DEFAULT_REGION"}


def test_the_documented_minio_setting_reaches_an_s3_server_on_loopback(tmp_path, shared_data, moto, s3):
    s3()
    documented = documented_env("MinIO")
    ours = moto.env()
    env = {**{k: v for k, v in os.environ.items() if k not in AWS_VARS}, **{"AWS_EC2_METADATA_DISABLED": "true"}}
    env.update({name: ours.get(name, value) for name, value in documented.items()})  # same names, loopback values
    config = write_config(tmp_path, data_root=shared_data)
    proc = train(config, *ONE_EPOCH, "--checkpoint-remote", "s3://ckpt/minio-run", env=env, check=True)
    assert "✓ Remote copy up to date: s3://ckpt/minio-run" in proc.stdout
    assert json.loads(s3().cat_file("ckpt/minio-run/stage_status.json"))["stages"]["operator"]["status"] == "completed"


def test_a_corrupt_newest_state_on_the_server_costs_one_interval_not_the_stage(tmp_path, s3):
    fs = s3()
    local, fresh = tmp_path / "local", tmp_path / "fresh"
    operator_done_diffusion_running(local, step=4)
    store = FsspecStore("s3://ckpt/run1")
    store.publish(take_snapshot(local), local)
    newest = save_state(local, "diff_residual", 8)
    store.publish(take_snapshot(local), local)
    assert fs.exists("ckpt/run1/state/diff_residual/step-000000004.pt"), "the previous state is kept one publish"
    fs.pipe_file(f"ckpt/run1/{newest}", b"corrupted on the server")
    report = download_checkpoint(FsspecStore("s3://ckpt/run1"), fresh, log=lambda *_: None)
    details = json.loads((fresh / "stage_status.json").read_text())["details"]["diff_residual"]
    assert details["resume_state"]["step"] == 4 and details["step"] == 4
    assert (fresh / "state/diff_residual/step-000000004.pt").is_file() and not (fresh / newest).exists()
    assert report.unverified == [] and json.loads((fresh / "stage_status.json").read_text())["stages"][
        "diff_residual"]["status"] == "in_progress"


@pytest.mark.parametrize("case", ["wrong credentials", "no credentials"])
def test_watch_on_a_remote_it_cannot_read_is_one_line_and_exit_2_before_anything_is_rented(
        tmp_path, s3, moto_auth, case):
    from tests.integration.fake_vast import FakeVast

    s3(moto_auth, key="AKIAWRONGKEY", secret="nope") if case == "wrong credentials" else s3(key=None)
    vast = FakeVast(api_key="test-key", time_scale=0.01)
    vast.start()
    try:
        vast.add_instance(100, ["running", "outbid"])
        env = {var: os.environ[var] for var in os.environ if var.startswith("AWS_") or var == "PATH"}
        result = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "vast_launch.py"), "watch", "100", "--config",
             "configs/train_burgers_32dim.yaml", "--repo-url", "https://example.org/ups.git",
             "--checkpoint-remote", "s3://ckpt/run1", "--poll-seconds", "0.1"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
            env={**env, "HOME": str(tmp_path), "VAST_URL": vast.url, "VAST_API_KEY": "test-key"})
        assert not vast.created and not vast.calls("DELETE", "/instances/100/")
    finally:
        vast.close()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "cannot read the run's records in s3://ckpt/run1" in result.stderr
    assert ("no credentials" if case == "no credentials" else "refused") in result.stderr
