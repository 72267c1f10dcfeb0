"""docs/checkpoint_resume_guide.md cannot drift from the code.

1. Every `# guide-test` bash block runs, in order, as written — with the quickstart
   config, checkpoint directory, reports and remote redirected into a temporary
   directory — and exits 0 (or the code its marker names: `# guide-test: exit 2`).
2. Every command line in every bash block (launcher commands included, which cannot
   run here) is parsed by its script's real parser: a renamed or removed flag fails.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, write_config

GUIDE = REPO / "docs" / "checkpoint_resume_guide.md"
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
MARKER = re.compile(r"^# guide-test(?::\s*exit\s+(\d+))?\s*$", re.M)


def blocks() -> list[str]:
    return BLOCK.findall(GUIDE.read_text())


def guide_test_blocks() -> list[tuple[str, int]]:
    out = []
    for block in blocks():
        m = MARKER.search(block)
        if m:
            out.append((block, int(m.group(1) or 0)))
    return out


def command_lines(block: str) -> list[list[str]]:
    """Each command of a block as argv: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def parser_for(argv: list[str]):
    """The real parser of the script or `ups` subcommand a command line runs, and its arguments."""
    from ups.commands import data, evaluate, orchestrate, status, train
    from ups.launch import cli as launch

    by_script = {"train.py": train, "show_training_status.py": status, "evaluate.py": evaluate,
                 "run_fast_to_sota.py": orchestrate, "download_data.py": data, "vast_launch.py": launch}
    by_sub = {"train": train, "status": status, "eval": evaluate, "run": orchestrate, "data": data,
              "launch": launch}
    if argv[0] == "python" and argv[1].startswith("scripts/"):
        return by_script[Path(argv[1]).name].build_parser(), argv[2:]
    if argv[0] == "ups":
        return by_sub[argv[1]].build_parser(), argv[2:]
    return None, argv


def test_the_guide_has_tested_blocks_for_every_local_scenario():
    text = " ".join(b for b, _ in guide_test_blocks())
    for needle in ("--auto-resume", "show_training_status.py", "evaluate.py", "--skip-training",
                   "--rebuild", "--resume-from", "ups status", "--set stages."):
        assert needle in text, f"no tested guide command uses {needle}"


@pytest.mark.parametrize("block", blocks(), ids=lambda b: b.strip().splitlines()[-1][:40])
def test_every_command_in_the_guide_parses_with_the_real_options(block):
    for argv in command_lines(block):
        parser, args = parser_for(argv)
        assert parser is not None, f"unrecognised command in the guide: {shlex.join(argv)}"
        try:
            parser.parse_args(args)
        except SystemExit as e:
            pytest.fail(f"the guide's `{shlex.join(argv)}` does not parse (exit {e.code})")


def localise(block: str, tmp: Path, config: Path) -> str:
    """Point the guide's paths at `tmp`: one pass, so no replacement is replaced again."""
    overlays = {}
    for name in ("small_eval", "full_eval"):
        text = (REPO / "configs" / f"{name}.yaml").read_text().replace("reports/", f"{tmp}/reports/")
        overlays[f"configs/{name}.yaml"] = tmp / f"{name}.yaml"
        overlays[f"configs/{name}.yaml"].write_text(text)
    table = {"configs/quickstart.yaml": str(config), "checkpoints/quickstart": str(tmp / "checkpoints"),
             "reports/": f"{tmp}/reports/", "/tmp/ups-remote": str(tmp / "remote"),
             **{k: str(v) for k, v in overlays.items()}}
    pattern = re.compile("|".join(re.escape(k) for k in sorted(table, key=len, reverse=True)))
    return pattern.sub(lambda m: table[m.group(0)], block)


def test_the_guide_commands_run_as_written(tmp_path, shared_data):
    one_epoch = {name: {"epochs": 1} for name in ("operator", "diff_residual", "consistency_distill", "steady_prior")}
    config = write_config(tmp_path, {"stages": one_epoch, "eval": {"output_prefix": str(tmp_path / "reports" / "qs")}},
                          data_root=shared_data, name="quickstart.yaml")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for block, expected in guide_test_blocks():
        script = localise(block, tmp_path, config)
        assert "checkpoints/quickstart" not in script and "configs/quickstart" not in script
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == expected, (
            f"guide block exited {proc.returncode}, expected {expected}:\n{block}\n"
            f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}")


def test_the_tests_localisation_leaves_nothing_in_the_checkout(tmp_path):
    script = localise("python scripts/evaluate.py --config configs/quickstart.yaml "
                      "--operator checkpoints/quickstart/operator_ema.pt --output-prefix reports/x "
                      "--small-eval-config configs/small_eval.yaml", tmp_path, tmp_path / "q.yaml")
    for original in ("configs/quickstart.yaml", "checkpoints/quickstart", " reports/", "configs/small_eval"):
        assert original not in script
