"""Where the diffusion residual's ensemble spread goes: one step from true states, and
whole rollouts with the drawn residuals scaled by a factor.

    python -m bench.residual_spread [--config configs/quickstart.yaml]
        [--checkpoints checkpoints/quickstart] [--inflation 1,2,4,6,8] [--out FILE]

`diff_residual`'s goal is spread/skill in [0.7, 1.3] at a CRPS <= 0.9 x the
operator's MAE. This entry tells apart the causes of a spread that is too small:

1. One step from the evaluation split's true latent states: the RMS of the drawn
   residuals against the RMS of the true residual `z1 - op(z0)`, the one-step
   spread/skill, and the error of the draws' mean as a correction. A model that
   matches the residual's distribution draws about its RMS and scores about 1.
2. Rollouts of `eval.ensemble_size` members, each drawn residual multiplied by
   alpha: CRPS, spread/skill and the ensemble mean's rollout nRMSE per alpha
   (alpha = 1 is the evaluation's own ensemble). If only a large alpha
   calibrates the spread and it costs CRPS, the missing spread is the operator's own
   error compounded along the rollout, which a one-step residual does not model.
3. With `--rollout-steps 1,4,...`: the residual retrained along the operator's own
   rollouts (`diffusion.train_rollout_steps` = K, `ups.training.tasks.rolled_residuals`)
   for each K, in a copy of the run's checkpoint directory, and both measurements
   above (alpha = 1) for each.

It reads a trained run's files (the quickstart's by default) and trains nothing
unless asked to by `--rollout-steps`; every draw is seeded with `eval.seed`. Not part
of `python -m bench`.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from bench.common import BASE_SETS, REPO, TRAIN
from ups.config import load_config
from ups.data.burgers import ensure_data
from ups.data.pdebench import open_split
from ups.eval.ensemble import TEACHER, _Cost, residual_draws, roll_ensemble
from ups.eval.evaluation import plan_rollout
from ups.eval.loading import check_lead_steps, load_models, load_sampler, later_stage_files
from ups.eval.probabilistic import EnsembleAccumulator, spread_skill_ratio
from ups.eval.run import eval_split
from ups.resume.layout import STAGE_CHECKPOINT

ONE_STEP_MEMBERS = 8


def _rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


@torch.no_grad()
def one_step(models, draw, u: torch.Tensor, stride: int, seed: int) -> dict[str, float]:
    """Draws given op(z0) against the true residual, over every (t, t + stride) pair of `u` [B, T, X]."""
    codec = models.codec
    z0 = codec.encode(u[:, :-stride].reshape(-1, u.shape[-1]))
    z1 = codec.encode(u[:, stride:].reshape(-1, u.shape[-1]))
    pred = models.operator(z0).float()
    residual = z1 - pred
    gen = torch.Generator().manual_seed(seed)
    draws = torch.stack([draw(pred, gen, 0) for _ in range(ONE_STEP_MEMBERS)])
    mean = draws.mean(0)
    return {"true_residual_rms": _rms(residual), "drawn_residual_rms": _rms(draws),
            "error_without_correction": _rms(residual), "error_of_draws_mean": _rms(mean - residual),
            "spread_skill": spread_skill_ratio(float(draws.double().var(0).mean()),
                                               float((mean - residual).double().pow(2).mean()), ONE_STEP_MEMBERS)}


@torch.no_grad()
def rollouts(cfg, models, draw, u: torch.Tensor, steps: int, alphas: list[float],
             feed_back: bool = True) -> dict[str, dict[str, float]]:
    stride, members = cfg.data.time_stride, cfg.eval.ensemble_size
    truth = u[:, stride: stride * steps + 1: stride].numpy()
    out = {}
    for alpha in [0.0, *alphas]:  # 0: the operator alone, one member (CRPS = MAE)
        # the evaluation's seeds (`evaluate_ensembles`: eval.seed + the method's place, the teacher's is 1),
        # so alpha = 1 draws what `scripts/evaluate.py` draws whenever its samples fit one batch
        gen = torch.Generator().manual_seed(cfg.eval.seed + (0 if alpha == 0 else 1))
        m = 1 if alpha == 0 else members
        scaled = None if alpha == 0 else (lambda c, g, k, a=alpha: a * draw(c, g, k))
        fields = roll_ensemble(models, u[:, 0], m, steps, scaled, gen, _Cost(), feed_back)
        acc = EnsembleAccumulator(steps, m)
        acc.add(fields, truth)
        o = acc.overall()
        out["operator" if alpha == 0 else f"{alpha:g}"] = {  # JSON has no nan: one member's spread/skill is None
            k: None if math.isnan(o[k]) else o[k] for k in ("crps", "spread_skill", "nrmse_of_mean")}
    return out


class MissingStage(Exception):
    """The run has no residual file to measure."""


def measure(cfg, ck: Path, alphas: list[float]) -> dict:
    """Both measurements on the run whose files are in `ck`."""
    operator = ck / STAGE_CHECKPOINT["operator"]
    device = torch.device("cpu")
    models = load_models(cfg, operator, None, device)
    files = later_stage_files(operator)
    if TEACHER not in files:
        raise MissingStage(f"no {STAGE_CHECKPOINT[TEACHER]} beside {operator}: train the diff_residual stage first")
    teacher = load_sampler(cfg, files[TEACHER], TEACHER, models.codec, device)
    draw = residual_draws(cfg, {TEACHER: teacher})[TEACHER]
    lead_steps = teacher.model.lead_steps
    split = eval_split(cfg)
    ensure_data(cfg.data, splits=(split,))
    data = open_split(cfg.data, split)
    try:
        n = min(len(data), cfg.eval.max_samples or len(data), cfg.eval.ensemble_max_samples or len(data))
        u = torch.from_numpy(data.trajectories(list(range(n)))).float()
        steps = plan_rollout(cfg, data.n_times)
    finally:
        data.close()
    check_lead_steps(lead_steps, steps)
    return {"samples": n, "split": split, "rollout_steps": steps, "members": cfg.eval.ensemble_size,
            "one_step": one_step(models, draw, u, cfg.data.time_stride, cfg.eval.seed),
            "rollout": rollouts(cfg, models, draw, u, steps, alphas, feed_back=not lead_steps)}


def retrained_along_rollouts(args, ck: Path, k: int) -> dict:
    """The residual retrained with diffusion.train_rollout_steps = k in a copy of `ck`, measured at alpha = 1."""
    with tempfile.TemporaryDirectory(prefix="ups-spread-") as tmp:
        copy = Path(tmp) / "checkpoints"
        shutil.copytree(ck, copy)
        sets = [*BASE_SETS, *args.overrides, f"diffusion.train_rollout_steps={k}", f"training.checkpoint_dir={copy}"]
        cmd = [sys.executable, TRAIN, "--config", str(args.config), "--stage", "diff_residual"]
        for kv in sets:
            cmd += ["--set", kv]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: training diff_residual with train_rollout_steps={k} exited "
                             f"{proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        cfg = load_config(args.config, [*args.overrides, f"diffusion.train_rollout_steps={k}"])
        return measure(cfg, copy, [1.0])


def _print(result: dict) -> None:
    s = result["one_step"]
    print(f"one step from true states: drawn residual RMS {s['drawn_residual_rms']:.4g} vs true "
          f"{s['true_residual_rms']:.4g} ({s['drawn_residual_rms'] / s['true_residual_rms']:.2f}x); "
          f"spread/skill {s['spread_skill']:.3f}; error {s['error_without_correction']:.4g} without a correction, "
          f"{s['error_of_draws_mean']:.4g} with the draws' mean")
    print(f"{'alpha':>8}  {'CRPS':>9}  {'spread/skill':>12}  {'mean nRMSE':>10}")
    for name, r in result["rollout"].items():
        ss = "" if r["spread_skill"] is None else f"{r['spread_skill']:.3f}"
        print(f"{name:>8}  {r['crps']:9.5f}  {ss:>12}  {r['nrmse_of_mean']:10.4f}")


def _print_sweep(sweep: dict[str, dict]) -> None:
    print("the residual trained along K-step rollouts of the operator (alpha = 1):")
    print(f"{'K':>4}  {'drawn/true RMS':>14}  {'CRPS':>9}  {'x MAE':>6}  {'spread/skill':>12}  {'mean nRMSE':>10}")
    for k, r in sweep.items():
        s, ens, op = r["one_step"], r["rollout"]["1"], r["rollout"]["operator"]
        print(f"{k:>4}  {s['drawn_residual_rms'] / s['true_residual_rms']:14.2f}  {ens['crps']:9.5f}  "
              f"{ens['crps'] / op['crps']:6.3f}  {ens['spread_skill']:12.3f}  {ens['nrmse_of_mean']:10.4f}")


def _steps_list(text: str) -> list[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give rollout lengths >= 1, comma-separated (1,4,8)")
    return ks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.residual_spread", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=REPO / "configs/quickstart.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--checkpoints", type=Path, help="the run's checkpoint_dir (default: the config's)")
    p.add_argument("--inflation", default="1,2,4,6,8", help="factors alpha for the drawn residuals")
    p.add_argument("--rollout-steps", type=_steps_list, metavar="K,K,...",
                   help="also retrain the residual along K-step rollouts for each K (about 20 s each on the "
                        "quickstart) and measure it")
    p.add_argument("--out", type=Path, help="write every number as JSON here")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    cfg = load_config(args.config, args.overrides)
    torch.set_num_threads(cfg.training.num_threads or torch.get_num_threads())
    alphas = [float(a) for a in args.inflation.split(",") if a.strip()]
    if not alphas or min(alphas) <= 0 or cfg.eval.ensemble_size < 2:
        p.error("--inflation takes positive factors, and eval.ensemble_size must be at least 2")
    ck = args.checkpoints or Path(cfg.training.checkpoint_dir)
    try:
        result = measure(cfg, ck, alphas)
    except MissingStage as e:
        p.error(str(e))
    print(f"{result['samples']} {result['split']} samples, {result['rollout_steps']} rollout steps, "
          f"{result['members']} members")
    _print(result)
    if args.rollout_steps:
        result["rollout_training"] = {str(k): retrained_along_rollouts(args, ck, k) for k in args.rollout_steps}
        _print_sweep(result["rollout_training"])
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
