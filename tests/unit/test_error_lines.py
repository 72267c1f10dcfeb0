"""The one error -> line + exit code mapping every command shares (`ups.errors.error_line`)."""

import errno
import os

import pytest

from ups.commands.common import run_main, split_debug
from ups.errors import CheckpointError, ConfigError, error_line


@pytest.mark.parametrize("code, exit_code, advice", [
    (errno.ENOSPC, 1, "disk is full"),
    (errno.EROFS, 2, "read-only"),
    (errno.EACCES, 2, "permission denied"),
    (errno.ENAMETOOLONG, 2, "too long"),
    (errno.EISDIR, 2, "a directory is where a file belongs"),
    (errno.ENOTDIR, 2, "a file is where a directory belongs"),
])
def test_each_filesystem_error_has_its_own_advice_naming_the_path(code, exit_code, advice):
    text, got = error_line(OSError(code, os.strerror(code), "/data/run/stage_status.json"))
    assert got == exit_code and advice in text and "/data/run/stage_status.json" in text


def test_a_typed_error_caused_by_a_filesystem_error_gets_its_advice_too():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/ckpt/state/x.pt")
        except OSError as e:
            raise CheckpointError("saving the training state failed: no space") from e
    except CheckpointError as e:
        text, code = error_line(e)
    assert code == 1 and "saving the training state failed" in text and "disk is full" in text


def test_a_missing_optional_package_names_the_extra_to_install():
    text, code = error_line(ModuleNotFoundError("No module named 'vastai'", name="vastai"))
    assert code == 2 and "pip install -e '.[launch]'" in text


def test_an_unexpected_error_is_one_line_that_says_how_to_get_the_traceback():
    text, code = error_line(RuntimeError("boom\nsecond line"))
    assert code == 1 and "\n" not in text and "--debug" in text and "RuntimeError: boom" in text


def test_run_main_prints_one_line_and_the_traceback_only_with_debug(capsys, monkeypatch):
    monkeypatch.delenv("UPS_DEBUG", raising=False)

    def main(argv):
        assert "--debug" not in argv
        raise KeyError("x")

    assert run_main(main, ["a"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unexpected KeyError") and "Traceback" not in err
    assert run_main(main, ["--debug", "a"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("UPS_DEBUG", "1")
    assert run_main(main, ["a"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_debug_after_a_double_dash_is_an_argument_not_the_flag(monkeypatch):
    monkeypatch.delenv("UPS_DEBUG", raising=False)
    assert split_debug(["x", "--", "--debug"]) == (["x", "--", "--debug"], False)


def test_a_config_error_keeps_its_exit_code(capsys):
    def main(argv):
        raise ConfigError("invalid value for 'training.batch_size'")

    assert run_main(main, []) == 2
    assert capsys.readouterr().err == "error: invalid value for 'training.batch_size'\n"
