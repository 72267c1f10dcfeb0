"""The generated onstart script, executed for real with real training: an instance's life.

A sandbox directory stands in for `/workspace`. The script clones this project from a
local git repository, installs it (a real `pip install` of the clone, into a directory
of the sandbox that goes first on PYTHONPATH, so the test's own environment is left
alone), generates the data and trains the tiny pipeline, syncing to a `file://` store:

1. the first boot is killed mid-stage, the whole container at once (a host failure);
2. Vast reruns the same script when the container starts again: it resumes from the
   local state and finishes;
3. a brand-new instance given only the remote (resume mode) finishes too, on an image
   without git (as pytorch/pytorch is): the script installs git (a stand-in apt-get here)
   and clones; the run records its outcome and a heartbeat in the remote.

Both end with weights bit-identical to a run that was never interrupted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import QUICKSTART, TINY, assert_bit_identical, merge
from tests.onstart_sandbox import OnstartSandbox, image_python, origin_repo
from tests.path_without import path_without
from tests.remote_fixtures import remote_state, wait_until

from ups.remote.outcome import read_heartbeat, read_outcome

pytestmark = pytest.mark.timeout(600)

CONFIG = "configs/onstart_e2e.yaml"


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A git repository holding this working tree, plus the tiny config the instance trains."""
    cfg = merge(yaml.safe_load(QUICKSTART.read_text()), TINY)
    cfg = merge(cfg, {  # paths relative to the checkout, as on an instance
        "data": {"root": "data/e2e"},
        "training": {"checkpoint_dir": "checkpoints"},
        "checkpoint": {"upload_every_seconds": 0},  # every saved state reaches the remote
        "eval": {"output_prefix": "reports/e2e"},
    })
    return origin_repo(tmp_path_factory.mktemp("origin"), CONFIG, cfg)


class Instance(OnstartSandbox):
    """One rented machine: its own /workspace, its own installed copy of the project."""

    def __init__(self, root: Path, origin: Path, remote: Path, resume_from_remote: bool = False,
                 path: str | None = None, **image) -> None:
        root.mkdir(parents=True)
        super().__init__(root, origin, remote, CONFIG, resume_from_remote, path, **image)

    def boot(self) -> subprocess.Popen:
        """Start the container: Vast runs the onstart script (in a session of its own here)."""
        log = (self.root / "boot.log").open("a")
        return subprocess.Popen(["bash", str(self.script)], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def boot_to_the_end(self) -> str:
        start = (self.root / "boot.log").stat().st_size if (self.root / "boot.log").exists() else 0
        proc = self.boot()
        try:
            rc = proc.wait(timeout=400)
        finally:
            kill_container(proc)
        out = (self.root / "boot.log").read_text()[start:]
        assert rc == 0, out[-4000:]
        return out

    def installed_package(self) -> str:
        check = [sys.executable, "-c", "import ups; print(ups.__file__)"]
        return subprocess.run(check, env=self.env, capture_output=True, text=True, check=True).stdout.strip()


def kill_container(proc: subprocess.Popen) -> None:
    """Everything the script started dies at once, as when a host fails or the container is killed."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def test_an_instance_killed_mid_stage_resumes_on_restart_and_a_new_instance_resumes_from_the_remote(
    tmp_path, origin, reference_run,
):
    remote = tmp_path / "remote"
    first = Instance(tmp_path / "instance-a", origin, remote)
    proc = first.boot()
    wait_until(proc, lambda: remote_state(remote, "operator") is not None, timeout=300)
    kill_container(proc)  # mid-operator: the host died
    assert remote_state(remote, "operator") is not None
    assert not (first.workspace / ".ups_onstart" / "run_complete").exists()
    boot_log = (first.root / "boot.log").read_text()
    assert "FRESH START" in boot_log and "No local state" not in boot_log
    assert first.installed_package().startswith(str(first.site))  # the clone, installed; not this checkout
    remote_at_the_kill = tmp_path / "remote-at-kill"
    shutil.copytree(remote, remote_at_the_kill)

    restarted = first.boot_to_the_end()  # Vast reruns onstart when the container starts again
    assert "RESTART" in restarted and "FRESH START" not in restarted
    assert "Local state found" in restarted and "continuing from step" in restarted
    assert "UPS_RUN_COMPLETE" in restarted
    assert_bit_identical(first.checkpoints, reference_run)

    no_git = path_without(tmp_path / "bin-without-git", {"git", "apt-get"}, apt_get_installs_git=True)
    fresh = Instance(tmp_path / "instance-b", origin, remote_at_the_kill, resume_from_remote=True, path=no_git)
    resumed = fresh.boot_to_the_end()
    assert "no git in this image" in resumed  # installed by the script, then cloned
    assert "RESUME MODE" in resumed and "No local state" in resumed
    assert "continuing from step" in resumed and "UPS_RUN_COMPLETE" in resumed
    assert_bit_identical(fresh.checkpoints, reference_run)
    outcome, beat = read_outcome(remote_at_the_kill.as_uri()), read_heartbeat(remote_at_the_kill.as_uri())
    assert outcome.outcome == "completed" and outcome.exit_code == 0 and outcome.action == "none"
    assert beat is not None and beat.tag.endswith("-completed")


def test_a_failed_install_is_recorded_in_the_remote_with_no_ups_to_run(tmp_path, origin):
    # Before the project is installed nothing of it can be imported: the script records the
    # failure with its own writer, which needs only fsspec for a file:// remote. pip is
    # absent here, so the script's attempt to add packages fails, as it would offline, and
    # the record is still written.
    remote = tmp_path / "remote"
    path, image_site = image_python(tmp_path, only={"fsspec"})
    instance = Instance(tmp_path / "instance", origin, remote, path=path, python_exe="image-python",
                        install_cmd=["sh", "-c", "echo 'ERROR: dependency conflict' >&2; exit 3"],
                        pythonpath=(image_site,))
    proc = instance.boot()
    rc = proc.wait(timeout=120)
    log = (instance.root / "boot.log").read_text()
    assert rc == 3, log[-3000:]
    assert "UPS_RUN_FAILED: install exited with 3" in log
    outcome = read_outcome(remote.as_uri())
    assert outcome is not None, log[-3000:]
    assert (outcome.outcome, outcome.exit_code, outcome.phase) == ("failed", 3, "install")
