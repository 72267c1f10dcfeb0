"""What every stage of one run shares: the config, the device, the data and the latent codec.

Built once per process. The codec's normalisation comes from the train split's
statistics, computed deterministically from the file, so a resumed or
downstream stage in another process sees the same latents.

Under torchrun each rank builds its own context; upstream stage outputs reach
the ranks through `share` (rank 0 reads the file, every rank gets its content:
see `ups.parallel`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from ups import stages
from ups.config import Config
from ups.data.burgers import ensure_data
from ups.data.pdebench import FieldSplit, field_stats, open_split
from ups.errors import CheckpointError, ConfigError, DataError
from ups.models.build import architecture, build_codec
from ups.models.latent import LatentCodec
from ups.resume.files import load_output
from ups.training.batches import LatentSource, tail_start

def runtime_device(cfg: Config, override: Optional[str] = None) -> torch.device:
    """Apply the config's runtime settings (CPU threads) and pick the device."""
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    return resolve_device(override or cfg.training.device)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"device '{name}' requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"device {name!r} (--device or training.device) is not a torch device; "
                          "use auto, cpu, cuda or cuda:N") from e


@dataclass
class PipelineContext:
    cfg: Config
    device: torch.device
    checkpoint_dir: Path
    train: FieldSplit
    val: FieldSplit
    codec: LatentCodec
    # Runs a loader of a checkpoint_dir file: on rank 0, with the result sent to every rank.
    share: Callable[[Callable[[], Any]], Any] = field(default=lambda load: load())
    _sources: dict[Any, LatentSource] = field(default_factory=dict)

    @classmethod
    def open(cls, cfg: Config, device: torch.device, log: Callable[[str], Any] = print,
             share: Optional[Callable[[Callable[[], Any]], Any]] = None) -> "PipelineContext":
        ensure_data(cfg.data, log=log)
        train, val = open_split(cfg.data, "train"), open_split(cfg.data, "val")
        if train.nx != val.nx:
            raise DataError(f"train ({train.path}: nx={train.nx}) and val ({val.path}: nx={val.nx}) differ in nx")
        mean, std = field_stats(train)
        codec = build_codec(cfg, train.nx, mean, std).to(device)
        ctx = cls(cfg, device, cfg.checkpoint_dir, train, val, codec)
        if share is not None:
            ctx.share = share
        return ctx

    def pairs(self, split: str) -> LatentSource:
        """(z_t, z_{t+stride}) pairs of `train` or `val`."""
        key = ("pairs", split)
        if key not in self._sources:
            self._sources[key] = LatentSource(
                getattr(self, split), self.codec, self.device,
                stride=self.cfg.data.time_stride, preload=self.cfg.data.preload,
            )
        return self._sources[key]

    def sequences(self, split: str, horizon: int) -> LatentSource:
        """(z_t, z_{t+stride}, ..., z_{t+horizon*stride}) of `train` or `val`; horizon 1 is `pairs`."""
        if horizon == 1:
            return self.pairs(split)
        key = ("sequences", split, horizon)
        if key not in self._sources:
            self._sources[key] = LatentSource(
                getattr(self, split), self.codec, self.device, stride=self.cfg.data.time_stride,
                preload=self.cfg.data.preload, horizon=horizon,
            )
        return self._sources[key]

    def long_time_states(self, split: str) -> LatentSource:
        """Single latent states from the last `steady_prior.tail_fraction` of each trajectory."""
        key = ("states", split)
        if key not in self._sources:
            fs: FieldSplit = getattr(self, split)
            first = tail_start(fs.n_times, self.cfg.steady_prior.tail_fraction)
            self._sources[key] = LatentSource(
                fs, self.codec, self.device, stride=0, first_time=first, pairs=False,
                preload=self.cfg.data.preload,
            )
        return self._sources[key]

    def source(self, kind: str, split: str) -> LatentSource:
        """What a stage reads (its `StageSpec.data`) from `train` or `val`."""
        if kind in (stages.SEQUENCES, stages.RESIDUAL_SEQUENCES):
            return self.sequences(split, self.horizon(kind))
        if kind == stages.STATES:
            return self.long_time_states(split)
        return self.pairs(split)

    def horizon(self, kind: str) -> int:
        """Steps per item of a sequence kind: the operator's or the residual's rollout training."""
        if kind == stages.RESIDUAL_SEQUENCES:
            return self.cfg.diffusion.train_rollout_steps
        return self.cfg.operator.train_rollout_steps

    def n_items(self, kind: str, split: str) -> int:
        """Items of `source(kind, split)`, without encoding a split only to count it."""
        if kind in (stages.SEQUENCES, stages.RESIDUAL_SEQUENCES):
            # Rollout sequences: fewer start times than pairs (see LatentSource).
            steps = self.horizon(kind)
            fs: FieldSplit = getattr(self, split)
            n = self.pairs(split).n_items - len(fs) * (steps - 1) * self.cfg.data.time_stride
            # A lead-time residual trains on each sequence once per step (`RolledLeadItems`).
            return n * steps if kind == stages.RESIDUAL_SEQUENCES and self.cfg.diffusion.lead_time else n
        return self.source(kind, split).n_items

    def load_upstream(self, stage: str, build: Callable[[Config], nn.Module]) -> tuple[nn.Module, dict]:
        """The EMA weights an upstream stage shipped, frozen, checked against the config."""
        path = self.checkpoint_dir / stages.get(stage).checkpoint
        obj = self.share(lambda: load_output(path, stage))
        check_architecture(obj, self.cfg, stage, path)
        model = build(self.cfg)
        model.load_state_dict(obj["state_dict"])
        return model.to(self.device).eval().requires_grad_(False), obj

    def close(self) -> None:
        self.train.close()
        self.val.close()


def check_architecture(obj: dict, cfg: Config, stage: str, path: Path) -> None:
    """A clear error when weights were trained with other shapes than the config asks for."""
    kind = stages.get(stage).model
    want = architecture(cfg)[kind]
    have = (obj.get("architecture") or {})
    diffs = [f"{k}={have.get(k)!r} in the file vs {v!r} in the config" for k, v in want.items() if have.get(k) != v]
    if diffs:
        raise CheckpointError(f"Architecture mismatch for {path.name} ({kind}): " + "; ".join(diffs))
