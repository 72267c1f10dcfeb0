"""Config validation: every mistake is one line naming the key; every shipped config loads."""

from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO
from ups.config import config_from_dict, load_config
from ups.config_yaml import apply_overrides
from ups.errors import ConfigError


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", ["quickstart.yaml", "train_burgers_32dim.yaml", "pdebench_burgers.yaml",
                                  "pdebench_burgers_gpu.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(REPO / "configs" / name)
    assert all(cfg.stage(s).epochs >= 0 for s in ("operator", "diff_residual"))


def test_gpu_config_is_latent_dim_32_on_32_tokens_with_the_seed_epochs():
    cfg = load_config(REPO / "configs" / "train_burgers_32dim.yaml")
    assert (cfg.latent.dim, cfg.latent.tokens) == (32, 32)
    assert [cfg.stage(s).epochs for s in ("operator", "diff_residual", "consistency_distill")] == [25, 8, 8]


def test_the_spec_test_configs_validate():
    train = {
        "data": {"root": "data/pdebench", "split": "train"},
        "latent": {"dim": 16, "tokens": 32},
        "operator": {"pdet": {"input_dim": 16, "hidden_dim": 48, "depths": [1, 1], "num_heads": [4, 4]}},
        "diffusion": {"latent_dim": 16, "hidden_dim": 64, "depth": 2},
        "training": {"batch_size": 4, "learning_rate": 0.001, "epochs": 2, "checkpoint_dir": "x"},
        "stages": {"operator": {"epochs": 2}, "diff_residual": {"epochs": 1},
                   "consistency_distill": {"epochs": 0}, "steady_prior": {"epochs": 0}},
        "logging": {"wandb": {"enabled": False}},
    }
    assert config_from_dict(train).checkpoint_dir == Path("x")
    evaluation = {
        "data": {"root": "data/pdebench", "split": "test", "limit": 10},
        "latent": {"dim": 16, "tokens": 32},
        "operator": {"pdet": {"input_dim": 16, "hidden_dim": 48, "depths": [1], "num_heads": [4]}},
    }
    assert config_from_dict(evaluation).data.limit == 10


@pytest.mark.parametrize("data, message", [
    ({"stages": {"operator": {"epochz": 3}}}, "unknown key 'stages.operator.epochz'"),
    ({"training": {"batch_size": "big"}}, "invalid value for 'training.batch_size'"),
    ({"stages": {"operator": {"epochs": -1}}}, "invalid value for 'stages.operator.epochs'"),
    ({"operator": {"pdet": {"hidden_dim": 50, "num_heads": 4}}}, "not divisible by num_heads 4"),
    ({"operator": {"pdet": {"depths": [1, 1], "num_heads": [4]}}}, "num_heads has 1 entries"),
    ({"latent": {"dim": 16}, "diffusion": {"latent_dim": 32}}, "diffusion.latent_dim=32 must equal latent.dim=16"),
])
def test_a_bad_config_is_one_line_naming_the_key(tmp_path, data, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, data))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_training_epochs_is_the_fallback_for_stages_without_their_own():
    cfg = config_from_dict({"training": {"epochs": 4}, "stages": {"operator": {"epochs": 1}}})
    assert (cfg.stage("operator").epochs, cfg.stage("steady_prior").epochs) == (1, 4)
    assert config_from_dict({}).stage("operator").epochs == 0


def test_dotted_overrides_parse_yaml_values():
    raw = apply_overrides({"stages": {}}, ["stages.operator.epochs=3", "operator.pdet.depths=[2, 2]",
                                            "logging.wandb.enabled=true"])
    assert raw["stages"]["operator"]["epochs"] == 3
    assert raw["operator"]["pdet"]["depths"] == [2, 2]
    assert raw["logging"]["wandb"]["enabled"] is True


def test_a_malformed_override_is_refused():
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["stages.operator.epochs"])


def test_the_upload_wait_after_a_signal_is_a_setting_that_cannot_be_negative():
    quickstart = REPO / "configs" / "quickstart.yaml"
    assert load_config(quickstart).checkpoint.flush_on_signal_seconds == 25.0
    assert load_config(quickstart, ["checkpoint.flush_on_signal_seconds=8"]).checkpoint.flush_on_signal_seconds == 8
    with pytest.raises(ConfigError, match="checkpoint.flush_on_signal_seconds"):
        load_config(quickstart, ["checkpoint.flush_on_signal_seconds=-1"])
