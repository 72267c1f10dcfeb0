"""The onstart script: validated, quoted, idempotent in shape, and within Vast's limits."""

from __future__ import annotations

import random
import re
import string
import subprocess
from pathlib import Path

import pytest

from ups.errors import LaunchError
from ups.launch import onstart
from ups.launch.onstart import MAX_SCRIPT_BYTES, generate_onstart_script
from ups.launch.packing import VAST_ONSTART_MAX_CHARS, onstart_field, script_from_onstart_field
from ups.launch.validate import validate_run_id

pytestmark = pytest.mark.timeout(60)

REPO = "https://example.org/ups.git"
CONFIG = "configs/train_burgers_32dim.yaml"
EVIL = "x'; touch /tmp/pwned; '"


def script(**kw) -> str:
    kw.setdefault("repo_url", REPO)
    return generate_onstart_script(kw.pop("config_path", CONFIG), **kw)


@pytest.mark.parametrize("run_id", ["train-20251028_120000", "a", "A" * 64, "abc_DEF-123"])
def test_wandb_run_ids_are_accepted(run_id):
    assert validate_run_id(run_id) == run_id


@pytest.mark.parametrize("run_id", ["", "A" * 65, EVIL, "run id", "run/1", "$(id)", "run\n1", "run\n"])
def test_bad_wandb_run_ids_are_rejected(run_id):
    with pytest.raises(LaunchError, match="--resume-from-wandb"):
        validate_run_id(run_id)


@pytest.mark.parametrize("field, value", [
    ("resume_from_wandb", EVIL),
    ("branch", EVIL),
    ("branch", "--upload-pack=touch /tmp/pwned"),
    ("branch", "a..b"),
    ("config_path", EVIL),
    ("config_path", "-rf"),
    ("workspace", "/work space"),
    ("workspace", "/a/../etc"),
    ("workspace", "relative"),
    ("remote_uri", "s3://bucket/x y"),
    ("remote_uri", "https://user:secret@host/path"),
    ("project_dir_name", "../up"),
    ("resume_mode", "sometimes"),
    ("git_method", "rsync"),
    ("shutdown_action", "halt"),
    ("python_exe", "python\nrm -rf /"),
    ("repo_url", "https://user:token@github.com/o/r.git"),
    ("checkpoint_dir", "../elsewhere"),
    ("install_cmd", "pip install -e ."),
    ("repo_url", "--upload-pack=evil"),
])
def test_injected_or_malformed_values_are_rejected(field, value):
    with pytest.raises(LaunchError):
        script(**{field: value})


@pytest.mark.parametrize("value", [EVIL, 'a"b', "$(touch /tmp/pwned)", "`id`", "a b\tc", "\\;|&<>*?~"])
def test_a_quoted_assignment_gives_bash_the_exact_value(value):
    line = onstart.shell_assign("V", value)
    out = subprocess.run(["bash", "-c", f'{line}\nprintf %s "$V"'], capture_output=True, text=True, check=True)
    assert out.stdout == value


def test_install_arguments_are_quoted_one_by_one():
    text = script(install_cmd=["pip", "install", "-e", ".; touch /tmp/pwned"])
    assert "pip install -e '.; touch /tmp/pwned'" in text


@pytest.mark.parametrize("kw", [
    {},
    {"resume_from_wandb": "run-1", "resume_mode": "must", "auto_shutdown": True},
    {"remote_uri": "s3://b/p", "resume_from_remote": True, "shutdown_action": "destroy", "auto_shutdown": True},
    {"remote_uri": "file:///tmp/remote", "git_method": "docker"},
])
def test_every_variant_is_valid_bash(kw):
    subprocess.run(["bash", "-n"], input=script(**kw), text=True, check=True)


def test_fresh_start_clears_only_inside_the_first_boot_guard():
    lines = script().splitlines()
    guard = lines.index('if [ "$FIRST_BOOT" = 1 ]; then')
    end = lines.index("fi", guard)
    wipes = [i for i, line in enumerate(lines) if "rm -rf" in line and "clone" not in line]
    assert wipes and all(guard < i < end for i in wipes)


def test_resume_mode_never_clears_anything():
    text = script(remote_uri="s3://b/p", resume_from_remote=True)
    assert "RESUME MODE" in text and "FRESH START" not in text
    assert not [line for line in text.splitlines() if "rm -rf" in line and "clone" not in line]


def test_auto_shutdown_uses_the_vast_api_not_shutdown():
    text = script(auto_shutdown=True, shutdown_action="destroy")
    assert "shutdown -h" not in text and "-m ups.launch.self_stop --outcome" in text
    assert "ups_self_stop complete destroy 0" in text
    assert "FAIL_ACTION=stop" in text  # a failed run keeps its disk


def test_without_auto_shutdown_the_run_only_records_its_outcome():
    text = script()
    assert "ups_self_stop complete none 0" in text and "FAIL_ACTION=none" in text


def test_every_exit_is_trapped_and_the_remote_scheme_brings_its_extra():
    text = script(remote_uri="gs://b/p")
    assert "trap 'ups_on_exit $?' EXIT" in text and "'.[launch,gcs]'" in text
    assert "import ups.launch.self_stop, gcsfs" in text  # a rerun verifies before skipping the install
    assert "'.[launch,s3]'" in script(remote_uri="s3://b/p") and "'.[launch]'" in script()


def test_local_state_wins_over_the_remote():
    text = script(remote_uri="s3://b/p", resume_from_remote=True)
    assert 'if [ -e "$CKPT_DIR/stage_status.json" ]; then' in text
    assert text.index("stage_status.json") < text.index('--resume-from "$REMOTE"')


@pytest.mark.parametrize("where", ["remote", "wandb"])
def test_script_and_packed_field_fit_the_limits_at_maximum_input_lengths(where, monkeypatch, tmp_path):
    # Random letters compress worst, so this is the largest packed field a valid input makes:
    # every value at its cap, with the outcome going to an s3 remote or to a W&B run whose
    # entity/project/id path is at its cap too.
    rng = random.Random(0)

    def text(n: int) -> str:
        return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))

    monkeypatch.chdir(tmp_path)  # no config file here: the W&B path comes from the environment
    monkeypatch.setenv("WANDB_ENTITY", text(62))
    monkeypatch.setenv("WANDB_PROJECT", text(64))
    to = {"remote_uri": "s3://" + text(155), "resume_from_remote": True} if where == "remote" else {}
    longest = generate_onstart_script(
        text(128), branch=text(100), resume_from_wandb=text(64), auto_shutdown=True,
        workspace="/" + text(95), repo_url=text(160), python_exe="/" + text(63), project_dir_name=text(64),
        install_cmd=[text(52), text(52), text(53)], checkpoint_dir=text(64), **to,
    )
    assert "ups_record_early" in longest and ("wandb.Api" in longest) == (where == "wandb")
    assert len(longest.encode()) < MAX_SCRIPT_BYTES
    field = onstart_field(longest)
    assert len(field) <= VAST_ONSTART_MAX_CHARS
    assert script_from_onstart_field(field) == longest


@pytest.mark.parametrize("field, value", [
    ("branch", "b" * 101), ("config_path", "c" * 129), ("workspace", "/" + "w" * 96), ("resume_from_wandb", "r" * 65),
    ("repo_url", "u" * 161), ("remote_uri", "s3://" + "p" * 156), ("install_cmd", ["i" * 160]),
])
def test_values_over_their_length_cap_are_rejected(field, value):
    with pytest.raises(LaunchError):
        script(**{field: value})


def test_a_wandb_run_path_too_long_for_the_field_is_refused(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_PROJECT", "p" * 200)
    with pytest.raises(LaunchError, match="W&B run path"):
        script(resume_from_wandb="run1")


def test_an_oversized_script_is_refused_not_truncated():
    with pytest.raises(LaunchError, match="Vast accepts"):
        onstart_field("#!/bin/bash\n" + "".join(f"echo {i} {i * 7919 % 104729}\n" for i in range(2000)))


@pytest.mark.parametrize("value, expected", [
    ("checkpoints/quickstart", "CKPT_DIR=/workspace/universal_simulator/checkpoints/quickstart"),
    ("/data/ckpt", "CKPT_DIR=/data/ckpt"),
])
def test_the_checkpoint_directory_may_be_nested_or_absolute(value, expected):
    text = script(checkpoint_dir=value)
    assert expected in text.splitlines()
    assert f"rm -rf {expected.split('=', 1)[1]}" in text  # the first boot clears that directory


@pytest.mark.parametrize("value", ["a/../b", "a//b", "checkpoints/", "", "-x", "a/b c", "/" + "c" * 128])
def test_malformed_checkpoint_directories_are_rejected(value):
    with pytest.raises(LaunchError, match="checkpoint directory"):
        script(checkpoint_dir=value)


def test_the_instance_installs_the_vastai_range_the_project_pins():
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    pinned = re.search(r'launch = \["(vastai[^"]+)"\]', pyproject).group(1)
    assert f"pip install -q '{pinned}'" in script(auto_shutdown=True)


@pytest.mark.parametrize("kw, packages", [
    ({"remote_uri": "s3://b/p"}, "'fsspec>=2023.6' s3fs"),
    ({"remote_uri": "gs://b/p"}, "'fsspec>=2023.6' gcsfs"),
    ({"resume_from_wandb": "run1"}, "'wandb>=0.31'"),
])
def test_a_failure_before_the_install_brings_what_its_record_needs(kw, packages):
    text = script(**kw)
    fallback = text[text.index("ups_self_stop() {"):text.index("  for n in")]
    assert f"pip install -q 'vastai>=1.9.1,<1.10' {packages}" in fallback
    assert 'ups_record_early "$3"' in fallback  # no ups yet: the script's own writer


def test_with_nowhere_to_record_a_failure_before_the_install_only_stops():
    text = script(auto_shutdown=True)
    assert "ups_record_early" not in text and "pip install -q 'vastai>=1.9.1,<1.10'\n" in text


def test_what_the_self_stop_installs_is_what_pyproject_pins():
    # The instance installs these by name before the project itself: they must not drift from it.
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    for requirement in [onstart.VASTAI_REQUIREMENT, *onstart._stop_deps("s3://b/p", None),
                        *onstart._stop_deps(None, "run1")]:
        assert f'"{requirement}"' in pyproject, requirement
