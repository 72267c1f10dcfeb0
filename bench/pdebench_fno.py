"""The ups operator beside an FNO with PDEBench's settings, at equal wall-clock budget.

    pip install -e '.[bench]'        # neuraloperator
    python -m bench.pdebench_fno [--config configs/pdebench_burgers.yaml] [--set KEY=VALUE ...]

1. Trains the ups operator (`scripts/train.py --stage operator`, a subprocess, as a user
   runs it) and times it, start-up and data encoding included: that is the budget.
2. Trains `neuralop.models.FNO` on the same file's train rows for the same number of
   seconds, as PDEBench's `models/fno/train.py` trains it (config_Bgs.yaml): 10 given
   frames in, autoregressive through all 31 further frames with the loss summed over
   them, Adam lr 1e-3 weight decay 1e-4, StepLR(100 epochs, 0.5), batch 50; 12 Fourier
   modes (neuralop counts full-FFT modes: n_modes=22 keeps 12 rfft modes), width 20,
   4 layers, a 128-wide projection. Differences: neuralop's lifting is a 2-layer channel
   MLP where PDEBench has one linear layer, and no 2-point domain padding (the data is
   periodic).
3. Scores both with `ups.eval.protocol` on the test rows and prints ups / FNO.

This is not part of `python -m bench`: it trains two models for minutes. Timings on a
shared machine are noisy; rerun on a quiet one before quoting a ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.common import PYTHON, REPO
from ups.config import config_from_dict
from ups.config_yaml import apply_overrides
from ups.data.burgers import ensure_data
from ups.data.pdebench import open_split
from ups.eval.loading import load_models
from ups.eval.protocol import Protocol, evaluate_protocol, table
from ups.eval.protocol_run import OPERATOR, batches, heat_viscosity, protocol_of, run_protocol

FNO = "fno"
PDEBENCH_FNO = {"lr": 1e-3, "weight_decay": 1e-4, "scheduler_step": 100, "scheduler_gamma": 0.5, "batch_size": 50,
                "modes": 12, "width": 20, "layers": 4, "projection": 128}


def build_fno(given: int) -> torch.nn.Module:
    from neuralop.models import FNO as NeuralopFNO

    s = PDEBENCH_FNO
    return NeuralopFNO(n_modes=(2 * s["modes"] - 2,), in_channels=given, out_channels=1,
                       hidden_channels=s["width"], n_layers=s["layers"], lifting_channel_ratio=1,
                       projection_channel_ratio=s["projection"] / s["width"], use_channel_mlp=False)


def rollout(model: torch.nn.Module, given: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, steps, X]: PDEBench's loop, the window of the last `given` frames sliding on."""
    window, out = given, []
    for _ in range(steps):
        nxt = model(window)  # [B, 1, X]
        out.append(nxt)
        window = torch.cat([window[:, 1:], nxt], dim=1)
    return torch.cat(out, dim=1)


def train_fno(frames: np.ndarray, protocol: Protocol, seconds: float, device: torch.device,
              seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """Train on [N, frames, X] for `seconds` of wall clock (checked after every batch)."""
    torch.manual_seed(seed)
    s = PDEBENCH_FNO
    model = build_fno(protocol.given).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=s["scheduler_step"], gamma=s["scheduler_gamma"])
    data = torch.from_numpy(frames.astype(np.float32)).to(device)
    g, steps = protocol.given, frames.shape[1] - protocol.given
    started, epochs, batches_done = time.perf_counter(), 0, 0
    gen = torch.Generator().manual_seed(seed)
    while time.perf_counter() - started < seconds:
        for idx in torch.randperm(len(data), generator=gen).split(s["batch_size"]):
            u = data[idx.to(device)]
            pred = rollout(model, u[:, :g], steps)
            # PDEBench: loss += MSELoss(mean)(im, y) at every step; summed, not averaged.
            loss = sum(torch.nn.functional.mse_loss(pred[:, k], u[:, g + k]) for k in range(steps))
            opt.zero_grad()
            loss.backward()
            opt.step()
            batches_done += 1
            if time.perf_counter() - started >= seconds:
                break
        else:
            epochs += 1
            sched.step()
    return model.eval(), {"seconds": time.perf_counter() - started, "epochs": epochs, "batches": batches_done,
                          "parameters": sum(p.numel() for p in model.parameters())}


def train_ups(config_path: Path, log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.run([PYTHON, "scripts/train.py", "--config", str(config_path), "--stage", "operator"],
                            cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"ups operator training failed (exit {rc}); see {log}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pdebench_fno", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=REPO / "configs/pdebench_burgers.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--work", type=Path, help="checkpoints and logs (default: a new temp dir)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="write every number as JSON here")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="ups-fno-"))
    work.mkdir(parents=True, exist_ok=True)
    raw = apply_overrides(yaml.safe_load(args.config.read_text()),
                          [*args.overrides, f"training.checkpoint_dir={work / 'ups'}", f"training.device={args.device}",
                           "logging.progress=lines"])
    cfg = config_from_dict(raw, source=str(args.config))
    (work / "config.yaml").write_text(yaml.safe_dump(raw))
    ensure_data(cfg.data)  # before the clock starts: both models read the same file
    threads = cfg.training.num_threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    device = torch.device(args.device)

    budget = train_ups(work / "config.yaml", work / "ups_train.log")
    print(f"[fno-bench] ups operator trained in {budget:.1f} s (the budget); training the FNO as long", flush=True)
    train = open_split(cfg.data, "train")
    protocol = protocol_of(cfg, train.n_times)
    frames = np.concatenate([b[:, ::cfg.data.time_stride] for b in batches(train, len(train))])
    train.close()
    fno, fno_info = train_fno(frames[:, : protocol.given + protocol.predicted], protocol, budget, device)

    test = open_split(cfg.data, cfg.eval.split or "test")
    models = load_models(cfg, work / "ups" / "operator_ema.pt", None, device)
    ups = run_protocol(cfg, models, test, device)

    @torch.no_grad()
    def fno_predict(given: np.ndarray, steps: int) -> np.ndarray:
        return rollout(fno, torch.from_numpy(given.astype(np.float32)).to(device), steps).cpu().numpy()

    t = test.t
    res = evaluate_protocol(batches(test, protocol.max_samples), protocol, float(t[cfg.data.time_stride] - t[0]),
                            heat_viscosity(cfg), {FNO: fno_predict})
    test.close()
    res.scores[OPERATOR] = ups.scores[OPERATOR]
    ratio = res.scores[OPERATOR].mean / res.scores[FNO].mean
    ratio_median = res.scores[OPERATOR].median / res.scores[FNO].median
    print("\n".join(table(res, first=(OPERATOR, FNO))))
    print(f"[fno-bench] budget {budget:.1f} s each ({threads} thread(s)); FNO: {fno_info['epochs']} epochs, "
          f"{fno_info['batches']} batches, {fno_info['parameters']} parameters")
    print(f"[fno-bench] ups / FNO rollout nRMSE: {ratio:.3f} (mean), {ratio_median:.3f} (median); goal <= 1.0")
    if args.out:
        args.out.write_text(json.dumps({"budget_seconds": budget, "threads": threads, "fno": fno_info,
                                        "ratio_mean": ratio, "ratio_median": ratio_median,
                                        "config": str(args.config), "overrides": args.overrides,
                                        "protocol": res.as_dict()}, indent=2) + "\n")
    return 0 if math.isfinite(ratio) else 1


if __name__ == "__main__":
    sys.exit(main())
