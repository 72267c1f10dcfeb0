"""`ups` dispatches to the scripts' own `main`s, and every subcommand explains itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ups import cli

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {"train": "train.py", "status": "show_training_status.py", "eval": "evaluate.py",
           "run": "run_fast_to_sota.py", "launch": "vast_launch.py", "data": "download_data.py"}


def test_ups_help_lists_every_subcommand_with_its_script(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, script in SCRIPTS.items():
        assert f"  {name} " in out and f"scripts/{script}" in out
    assert "examples:" in out


def test_ups_without_a_command_prints_usage_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: ups" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_subcommand_has_help_with_an_example(name, capsys):
    try:
        code = cli.main([name, "--help"])
    except SystemExit as e:  # argparse's own --help
        code = e.code
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ups {name} ") and "example" in out.lower()


def test_an_unknown_subcommand_is_one_line_and_exit_2(capsys):
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and len(err.strip().splitlines()) == 1


def test_a_missing_launcher_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "launch", ("ups.launch.not_installed", "scripts/vast_launch.py", "x"))
    assert cli.main(["launch", "--help"]) == 2
    assert "ups launch is not available" in capsys.readouterr().err


def test_subcommand_errors_become_one_line_and_their_exit_code(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint directory not found") and "Traceback" not in err


def test_ups_names_itself_in_one_line_usage_errors(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["eval", "--config", "x.yaml"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ups eval: the following arguments are required: --operator")
    assert len(err.strip().splitlines()) == 1 and "ups eval --help" in err


@pytest.mark.parametrize("script", ["show_training_status.py", "evaluate.py", "run_fast_to_sota.py",
                                    "download_data.py", "train.py"])
def test_scripts_are_thin_wrappers(script):
    lines = [ln for ln in (REPO / "scripts" / script).read_text().splitlines() if ln.strip()]
    assert len(lines) <= 6, f"scripts/{script} should only call its command's cli()"


def test_the_console_script_and_the_python_script_print_the_same_help():
    ups = subprocess.run([sys.executable, "-m", "ups.cli", "status", "--help"], capture_output=True, text=True)
    script = subprocess.run([sys.executable, str(REPO / "scripts" / "show_training_status.py"), "--help"],
                            capture_output=True, text=True)
    assert ups.returncode == script.returncode == 0
    def normalise(text: str) -> str:  # the prog name differs, and with it the line wrapping
        return " ".join(text.replace("ups status", "PROG").replace("show_training_status.py", "PROG").split())

    assert normalise(ups.stdout) == normalise(script.stdout)
