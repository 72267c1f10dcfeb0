"""Shared test helpers: tiny configs in tmp dirs, the real training CLI in a subprocess,
and weight comparison between checkpoint directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"

# A pipeline small enough to train in a few seconds, large enough that every
# stage saves several resumable states.
TINY = {
    "data": {"generator": {"n_train": 24, "n_val": 8, "n_test": 8, "nt": 21}},
    "training": {"batch_size": 32, "num_threads": 1},
    "stages": {
        "operator": {"epochs": 3},
        "diff_residual": {"epochs": 2},
        "consistency_distill": {"epochs": 2},
        "steady_prior": {"epochs": 3},
    },
    "checkpoint": {"every_steps": 4, "every_seconds": None, "keep": 2},
    "logging": {"log_every_steps": 5, "progress": "lines"},
}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def write_config(directory: Path, extra: dict | None = None, data_root: Path | None = None,
                 name: str = "config.yaml", tiny: bool = True) -> Path:
    """A quickstart-based config whose checkpoints (and data) live under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(QUICKSTART.read_text())
    if tiny:
        cfg = merge(cfg, TINY)
    cfg = merge(cfg, {
        "data": {"root": str(data_root or directory / "data")},
        "training": {"checkpoint_dir": str(directory / "checkpoints")},
    })
    cfg = merge(cfg, extra or {})
    path = directory / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def checkpoint_dir(config: Path) -> Path:
    return Path(yaml.safe_load(config.read_text())["training"]["checkpoint_dir"])


def train(config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600,
          check: bool = False) -> subprocess.CompletedProcess:
    """Run `scripts/train.py` for real, in a subprocess, from the repository root."""
    full_env = {k: v for k, v in os.environ.items() if k != "UPS_FAULT"}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--config", str(config), *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def output_weights(ckpt: Path) -> dict[str, dict[str, Any]]:
    """Every stage output's state_dict, by file name."""
    out = {}
    for path in sorted(ckpt.glob("*.pt")):
        out[path.name] = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return out


def assert_bit_identical(a: Path, b: Path) -> None:
    wa, wb = output_weights(a), output_weights(b)
    assert sorted(wa) == sorted(wb), f"different output files: {sorted(wa)} vs {sorted(wb)}"
    assert len(wa) == 7, f"expected the 7 stage outputs, found {sorted(wa)}"
    for name in wa:
        assert wa[name].keys() == wb[name].keys(), name
        for key in wa[name]:
            assert torch.equal(wa[name][key], wb[name][key]), f"{name}:{key} differs"


def torchrun(config: Path, *args: str, nproc: int = 2, max_restarts: int = 0, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `scripts/train.py` under torchrun (a standalone group of `nproc` processes, gloo on CPU)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("UPS_FAULT")}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
         "--max-restarts", str(max_restarts), str(REPO / "scripts" / "train.py"), "--config", str(config), *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
