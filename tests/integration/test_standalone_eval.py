"""Standalone evaluation (the spec's Phase 4 test, adapted): a real checkpoint evaluates, a dummy
state dict or a checkpoint of another architecture is refused with a clear error and exit 2."""

from __future__ import annotations

import csv
import html
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ups.commands.common import run_main
from ups.commands.evaluate import main as evaluate_main
from ups.commands.orchestrate import main as orchestrate_main
from ups.config import load_config
from ups.resume.metadata import read_metadata

REPO = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture
def dummy_checkpoint(tmp_path):
    """The spec's fixture: a bare state dict, which is not a ups stage output."""
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    torch.save({"layer.weight": torch.randn(10, 10)}, ckpt / "operator_ema.pt")
    return ckpt


@pytest.fixture
def spec_eval_config(tmp_path):
    """The spec's minimal eval config, with its data kept in tmp_path."""
    config = {
        "data": {"root": str(tmp_path / "data"), "split": "test", "limit": 10},
        "latent": {"dim": 16, "tokens": 32},
        "operator": {"pdet": {"input_dim": 16, "hidden_dim": 48, "depths": [1], "num_heads": [4]}},
    }
    path = tmp_path / "eval_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_dummy_state_dict_is_refused_with_a_clear_error(dummy_checkpoint, spec_eval_config, tmp_path):
    result = run_script("evaluate.py", "--operator", str(dummy_checkpoint / "operator_ema.pt"),
                        "--config", str(spec_eval_config), "--device", "cpu",
                        "--output-prefix", str(tmp_path / "eval_output"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "not a ups stage output" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "eval_output.json").exists()
    assert not (tmp_path / "data").exists(), "a refused checkpoint must fail before any data is generated"


def test_standalone_evaluation_writes_json_csv_and_html(finished_run, tmp_path):
    config, ckpt = finished_run
    prefix = tmp_path / "eval_output"
    result = run_script("evaluate.py", "--operator", str(ckpt / "operator_ema.pt"),
                        "--diffusion", str(ckpt / "diffusion_residual_ema.pt"),
                        "--config", str(config), "--device", "cpu", "--output-prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    assert "operator rollout nRMSE" in result.stdout and "vs persistence" in result.stdout
    report = json.loads((tmp_path / "eval_output.json").read_text())
    assert set(report["methods"]) == {"persistence", "operator", "operator+diffusion"}
    s = report["summary"]
    assert s["split"] == "test" and s["samples"] == 8
    assert s["metric:nrmse"] < s["metric:nrmse_persistence"], "a trained operator beats persistence"
    assert report["checkpoints"]["operator"]["stage"] == "operator"
    rows = list(csv.DictReader((tmp_path / "eval_output.csv").open()))
    assert len(rows) == report["rollout_steps"] == 20
    assert float(rows[0]["nrmse_operator"]) == pytest.approx(report["methods"]["operator"]["curve"][0], rel=1e-5)
    page = (tmp_path / "eval_output.html").read_text()
    for fig in report["figures"].values():
        assert f'src="{fig["file"]}"' in page and (tmp_path / fig["file"]).is_file()
    assert 'id="attempts"' in page and "attempts" in report["figures"]  # the training attempts' timeline


def test_every_later_stage_is_measured_beside_the_operator(finished_run, tmp_path):
    """Ensembles of the residual and the student, the steady prior, loss curves, and a verdict per goal."""
    config, ckpt = finished_run
    argv = ["--operator", str(ckpt / "operator_ema.pt"), "--config", str(config), "--device", "cpu",
            "--output-prefix", str(tmp_path / "rep"), "--set", "eval.ensemble_size=3", "--set", "eval.plot_samples=1"]
    assert run_main(evaluate_main, argv) == 0
    report = json.loads((tmp_path / "rep.json").read_text())
    ens = report["ensemble"]["methods"]
    assert set(ens) == {"operator", "diff_residual", "consistency_distill"}
    assert ens["operator"]["crps"] == pytest.approx(ens["operator"]["mae_of_mean"]), "a point forecast's CRPS is its MAE"
    cfg = load_config(config)
    assert ens["diff_residual"]["denoiser_evals_per_draw"] == 2 * cfg.diffusion.sample_steps - 1, "Heun, Euler last"
    assert ens["consistency_distill"]["denoiser_evals_per_draw"] == cfg.consistency.student_steps
    for name in ("diff_residual", "consistency_distill"):
        assert ens[name]["members"] == 3 and ens[name]["spread_skill"] > 0 and ens[name]["seconds_per_draw"] > 0
    rows = report["steady_prior"]["rows"]
    assert set(rows) == {"steady_prior", "gaussian_fit", "train_states"}
    assert all(r["mmd"] >= 0 and r["spectrum_distance"] >= 0 for r in rows.values())
    goals = {(g["stage"], g["name"]): g for g in report["goals"]}
    assert ("diff_residual", "crps_vs_operator_mae") in goals and ("consistency_distill", "fewer_denoiser_evals") in goals
    assert ("steady_prior", "mmd_vs_gaussian") in goals and goals[("consistency_distill", "fewer_denoiser_evals")]["met"]
    assert set(report["loss_curves"]) == {"operator", "diff_residual", "consistency_distill", "steady_prior"}
    assert {"rollout", "fields", "ensemble", "prior", "loss_operator"} <= set(report["figures"])
    page = html.unescape((tmp_path / "rep.html").read_text())
    for g in report["goals"]:
        if not g["met"]:
            assert g["text"] in page, "an unmet goal is stated on the page with its numbers"


def test_operator_only_evaluation_has_no_corrected_method(finished_run, tmp_path, capsys):
    config, ckpt = finished_run
    argv = ["--operator", str(ckpt / "operator.pt"), "--config", str(config), "--device", "cpu",
            "--output-prefix", str(tmp_path / "op"), "--set", "eval.max_samples=3", "--set", "eval.rollout_steps=4"]
    assert run_main(evaluate_main, argv) == 0
    report = json.loads((tmp_path / "op.json").read_text())
    assert set(report["methods"]) == {"persistence", "operator"}
    assert report["samples"] == 3 and report["rollout_steps"] == 4
    assert "with diffusion correction" not in capsys.readouterr().out


def test_a_checkpoint_of_another_architecture_is_refused_with_exit_2(finished_run, tmp_path, capsys):
    config, ckpt = finished_run
    argv = ["--operator", str(ckpt / "operator_ema.pt"), "--config", str(config),
            "--set", "operator.pdet.hidden_dim=48", "--output-prefix", str(tmp_path / "x")]
    assert run_main(evaluate_main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Architecture mismatch") and "hidden_dim=64 in the file vs 48 in the config" in err


def test_a_diffusion_file_passed_as_operator_is_refused(finished_run, tmp_path, capsys):
    config, ckpt = finished_run
    argv = ["--operator", str(ckpt / "diffusion_residual_ema.pt"), "--config", str(config),
            "--output-prefix", str(tmp_path / "x")]
    assert run_main(evaluate_main, argv) == 2
    assert "holds the weights of stage 'diff_residual'" in capsys.readouterr().err


def test_evaluation_with_skip_training(finished_run, capsys):
    """The spec's second scenario: the orchestrator evaluates without training."""
    config, ckpt = finished_run
    argv = ["--train-config", str(config), "--skip-training", "--skip-validation", "--skip-data-check",
            "--small-eval-config", str(config), "--skip-full-eval"]
    assert run_main(orchestrate_main, argv) == 0
    assert "Skipping training" in capsys.readouterr().out
    meta = read_metadata(ckpt)
    assert isinstance(meta["last_small_eval"]["metric:nrmse"], float) and meta["last_small_eval_at"]
    assert Path(meta["last_small_eval"]["report"]).is_file()


def test_the_prior_is_trained_on_standardised_states_and_samples_them_back_to_scale(finished_run, tmp_path):
    from ups.errors import CheckpointError
    from ups.eval.loading import load_models, load_sampler
    from ups.pipeline.context import PipelineContext

    config, ckpt = finished_run
    cfg, cpu = load_config(config), torch.device("cpu")
    codec = load_models(cfg, ckpt / "operator_ema.pt", None, cpu).codec
    prior = load_sampler(cfg, ckpt / "steady_prior.pt", "steady_prior", codec, cpu)
    assert prior.shift.shape == prior.scale.shape == (codec.tokens, codec.dim) and bool((prior.scale > 0).all())
    ctx = PipelineContext.open(cfg, cpu, log=lambda _: None)
    try:
        (z,) = ctx.long_time_states("train").batch(torch.arange(64))
    finally:
        ctx.close()
    x = (z - prior.shift) * prior.scale  # what the stage trained on
    assert abs(float(x.std()) - prior.model.sigma_data) < 0.25 * prior.model.sigma_data
    torch.testing.assert_close(prior.to_latent(x), z)

    obj = torch.load(ckpt / "steady_prior.pt", weights_only=True)
    obj["extra"]["state_scale"] = obj["extra"]["state_scale"][:-1]
    torch.save(obj, tmp_path / "steady_prior.pt")
    with pytest.raises(CheckpointError, match="state_scale"):
        load_sampler(cfg, tmp_path / "steady_prior.pt", "steady_prior", codec, cpu)


def test_the_spread_calibrated_on_val_is_the_factor_that_makes_val_spread_skill_one(finished_run, tmp_path):
    config, ckpt = finished_run
    base = ["--operator", str(ckpt / "operator_ema.pt"), "--config", str(config), "--device", "cpu",
            "--set", "eval.ensemble_size=3", "--set", "eval.plot_samples=0"]

    def ensemble(prefix, *extra):
        assert run_main(evaluate_main, [*base, "--output-prefix", str(tmp_path / prefix), *extra]) == 0
        return json.loads((tmp_path / f"{prefix}.json").read_text())["ensemble"]["methods"]

    on_val = ensemble("val", "--set", "eval.split=val")
    calibrated = ensemble("cal", "--set", "eval.calibrate_spread=true")
    plain = ensemble("plain")
    assert calibrated["operator"]["spread_inflation"] == 1.0 and plain["diff_residual"]["spread_inflation"] == 1.0
    for name in ("diff_residual", "consistency_distill"):
        assert calibrated[name]["spread_inflation"] == pytest.approx(1 / on_val[name]["spread_skill"], rel=1e-6)
        assert calibrated[name]["spread_inflation"] != 1.0
    assert calibrated["operator"]["crps"] == plain["operator"]["crps"]

    refused = run_script("evaluate.py", *base, "--set", "eval.split=val", "--set", "eval.calibrate_spread=true",
                         "--output-prefix", str(tmp_path / "x"))
    assert refused.returncode == 2 and "fits the spread on the val split" in refused.stderr, refused.stderr
