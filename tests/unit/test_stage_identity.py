"""Golden identities: what each stage's fingerprint is made of, for the shipped configs.

A finished stage is skipped only while its fingerprint is unchanged, so a new
default field that slips into a stage's identity makes every finished run of
that stage stale. These tests pin the identity inputs key by key: such a change
fails here, naming the stage and the key, and the fix is either to leave the new
field out of the identity at its default (as `data_identity` does) or to accept
the rerun and regenerate the golden file (see `regenerate` below).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ups.config import Config, load_config
from ups.identity import config_hash, stage_identity
from ups.resume.plan import fingerprint
from ups.stages import STAGES

GOLDEN = Path(__file__).parent / "golden" / "stage_identity.json"
REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"default": lambda: Config(), "quickstart": lambda: load_config(REPO / "configs" / "quickstart.yaml")}


def identities(name: str) -> dict:
    cfg = CONFIGS[name]()
    stages = {s.name: {"inputs": stage_identity(cfg, s), "fingerprint_without_upstream":
                       fingerprint(stage_identity(cfg, s), {})} for s in STAGES}
    return {"config_hash": config_hash(cfg), "stages": stages}


def regenerate() -> None:  # python -c "from tests.unit.test_stage_identity import regenerate; regenerate()"
    GOLDEN.write_text(json.dumps({n: identities(n) for n in CONFIGS}, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_stage_fingerprint_inputs_match_the_golden_file(config, stage):
    want = json.loads(GOLDEN.read_text())[config]["stages"][stage]
    have = identities(config)["stages"][stage]
    changed = sorted(k for k in set(want["inputs"]) | set(have["inputs"])
                     if want["inputs"].get(k, "<unset>") != have["inputs"].get(k, "<unset>"))
    assert not changed, (f"stage '{stage}' of the {config} config would go stale (every finished run reruns it): "
                         f"its identity changed in {changed}")
    assert have["fingerprint_without_upstream"] == want["fingerprint_without_upstream"], \
        f"stage '{stage}' of the {config} config: same inputs but another fingerprint (the digest changed)"


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_pipeline_config_hash_matches_the_golden_file(config):
    assert identities(config)["config_hash"] == json.loads(GOLDEN.read_text())[config]["config_hash"], \
        f"metadata.json's config_hash of the {config} config changed"


def test_a_new_default_field_in_a_section_is_named_with_its_stage():
    cfg = Config()
    spec = next(s for s in STAGES if "diffusion" in s.sections)
    before = stage_identity(cfg, spec)
    after = stage_identity(cfg.model_copy(update={"diffusion": cfg.diffusion.model_copy(
        update={"sigma_data": cfg.diffusion.sigma_data * 2})}), spec)
    assert [k for k in after if after[k] != before.get(k)] == ["diffusion.sigma_data"]


def test_runtime_settings_are_not_part_of_any_stage_identity():
    cfg = Config()
    moved = cfg.model_copy(update={"training": cfg.training.model_copy(
        update={"checkpoint_dir": "/elsewhere", "device": "cpu", "num_threads": 3})})
    for spec in STAGES:
        assert stage_identity(moved, spec) == stage_identity(cfg, spec), spec.name
    assert config_hash(moved) == config_hash(cfg)
