"""A fifth stage is one `StageSpec` plus its task builder: planned, trained, recorded and skipped,
also in a directory trained before it was declared.

The toy stage is declared in a small driver script before the CLI is imported
(the config schema, the file names and the `--stage` choices derive from
`ups.stages.STAGES`), and trained by the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.helpers import REPO, checkpoint_dir, merge, train, write_config

TOY_TASK = '''
from ups.models.build import build_operator, build_steady_prior
from ups.models.diffusion import edm_loss
from ups.training.loop import StageTask


def build_toy_task(ctx, train, val):
    ctx.load_upstream("operator", build_operator)  # reads its upstream's shipped weights

    def loss(model, batch, gen, ema):
        (z,) = batch
        return edm_loss(model, z, None, gen, ctx.cfg.diffusion)

    return StageTask(build_steady_prior(ctx.cfg), loss, train, val)
'''

DRIVER = '''
import sys
from ups import stages

stages.register(stages.StageSpec(
    "toy", "Toy Prior", "Training Toy Prior", ("steady_prior",), ("operator",),
    (stages.Output("toy.pt", stages.EMA),), "toy.pt", "steady_prior", stages.STATES, "toy_task:build_toy_task"))

from ups.commands.train import cli  # noqa: E402
sys.argv[0] = "train.py"
cli()
'''


def run(tmp_path, config, *args):
    (tmp_path / "toy_task.py").write_text(textwrap.dedent(TOY_TASK))
    (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER))
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(tmp_path / "driver.py"), "--config", str(config), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_a_fifth_stage_added_to_a_trained_run_is_planned_trained_and_then_skipped(tmp_path):
    off = {"epochs": 0}
    only_operator = {"stages": {"diff_residual": off, "consistency_distill": off, "steady_prior": off}}
    base = write_config(tmp_path, extra=only_operator)
    train(base, "--stage", "all", check=True)  # a run made before the stage existed
    config = write_config(tmp_path, extra=merge(only_operator, {"stages": {"toy": {"epochs": 1}}}), name="toy.yaml")

    first = run(tmp_path, config, "--stage", "all", "--auto-resume")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "STAGE 1/5: Skipping Operator" in first.stdout  # verified, not retrained
    assert "  5/5 toy" in first.stdout and "STAGE 5/5: Training Toy Prior" in first.stdout
    ckpt = checkpoint_dir(config)
    status = json.loads((ckpt / "stage_status.json").read_text())
    assert status["stages"]["toy"]["status"] == "completed"
    assert status["stages"]["toy"]["checkpoint"] == "toy.pt"
    assert set(status["details"]["toy"]["outputs"]) == {"toy.pt"}
    assert "All training stages complete" in first.stdout

    again = run(tmp_path, config, "--stage", "toy", "--auto-resume")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "STAGE 5/5: Skipping Toy Prior" in again.stdout and "outputs verified" in again.stdout
