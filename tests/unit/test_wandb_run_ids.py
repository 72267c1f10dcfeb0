"""Run ids: what W&B accepts (wandb/sdk/wandb_settings.py `validate_run_id`), less what is unsafe
unquoted in a shell or as a path component."""

from __future__ import annotations

import pytest
from wandb.sdk.wandb_settings import Settings

from ups.errors import ConfigError
from ups.remote.wandb_run import RUN_ID_MAX, new_run_id, validate_run_id

ACCEPTED = ["abc123", "run.2024-01-02", "sweep_7.trial+3", "team=a@b", "A" * RUN_ID_MAX, "_x", "1"]
UNSAFE_BUT_WANDB_OK = ["a b", "$(rm -rf ~)", "a|b", "a&b", "a*b", "a\"b", "a\\b", "a`b", "-rf", ".hidden", "..",
                       "a$b", "a<b", "a>b", "a~b", "a!b", "A" * (RUN_ID_MAX + 1), "a%2fb"]
WANDB_REFUSES = ["", " a", "a:b", "a;b", "a,b", "a#b", "a?b", "a/b", "a'b"]


@pytest.mark.parametrize("run_id", ACCEPTED)
def test_ids_wandb_accepts_and_that_are_shell_and_path_safe_pass(run_id):
    Settings(run_id=run_id)  # W&B itself accepts it
    assert validate_run_id(run_id) == run_id


@pytest.mark.parametrize("run_id", UNSAFE_BUT_WANDB_OK + WANDB_REFUSES)
def test_ids_unsafe_in_a_shell_or_a_path_or_refused_by_wandb_are_refused_naming_the_flag(run_id):
    with pytest.raises(ConfigError, match=r"--resume-from-wandb: .* is not a valid W&B run id \(letters, digits"):
        validate_run_id(run_id)


@pytest.mark.parametrize("run_id", WANDB_REFUSES[1:])
def test_the_ids_refused_for_wandb_reasons_are_refused_by_wandb_too(run_id):
    with pytest.raises(Exception, match="Run ID cannot"):
        Settings(run_id=run_id)


def test_fresh_ids_are_accepted():
    assert validate_run_id(new_run_id())
