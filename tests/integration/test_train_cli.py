"""The training CLI: clear failures, data generated on demand, every stage learns."""

import json

import pytest

from tests.helpers import checkpoint_dir, train, write_config

STAGES = ("operator", "diff_residual", "consistency_distill", "steady_prior")


@pytest.mark.parametrize("override, needle", [
    ("stages.operator.epochs=-3", "invalid value for 'stages.operator.epochs'"),
    ("training.batch_sise=3", "unknown key 'training.batch_sise'"),
    ("training.batch_size=lots", "invalid value for 'training.batch_size'"),
])
def test_config_errors_exit_2_with_one_line_and_no_traceback(tmp_path, override, needle):
    config = write_config(tmp_path)
    result = train(config, "--stage", "all", "--set", override)
    assert result.returncode == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_missing_data_file_exits_2_naming_the_path(tmp_path):
    config = write_config(tmp_path, {"data": {"generate": False, "files": {"train": str(tmp_path / "nope.h5")}}})
    result = train(config, "--stage", "operator")
    assert result.returncode == 2
    assert "nope.h5" in result.stderr and "data.files.train" in result.stderr
    assert "Traceback" not in result.stderr


def test_data_named_as_generated_is_generated_on_first_use(tmp_path):
    config = write_config(tmp_path, {"stages": {s: {"epochs": 0} for s in STAGES} | {"operator": {"epochs": 1}}})
    result = train(config, "--stage", "operator", check=True)
    assert "Generating Burgers data for split 'train'" in result.stdout and "seed=" in result.stdout
    assert (tmp_path / "data" / "burgers1d_train.h5").is_file()


def test_each_stage_loss_falls(reference_run):
    records = [json.loads(line) for line in (reference_run / "metrics.jsonl").read_text().splitlines()]
    for stage in STAGES:
        val = [r["loss"] for r in records if r["stage"] == stage and r["kind"] == "val"]
        assert len(val) >= 2, stage
        assert val[-1] < val[0], f"{stage}: validation loss did not fall: {val}"


def test_bf16_autocast_trains(tmp_path, shared_data):
    config = write_config(tmp_path, {"training": {"precision": "bf16"},
                                     "stages": {"operator": {"epochs": 1}}}, data_root=shared_data)
    train(config, "--stage", "operator", check=True)
    assert (checkpoint_dir(config) / "operator_ema.pt").is_file()


def test_torch_compile_trains(tmp_path, shared_data):
    config = write_config(tmp_path, {"training": {"compile": True},
                                     "stages": {"operator": {"epochs": 1}}}, data_root=shared_data)
    train(config, "--stage", "operator", check=True)
    assert (checkpoint_dir(config) / "operator_ema.pt").is_file()
