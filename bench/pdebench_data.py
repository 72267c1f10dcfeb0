"""Is the PDEBench-protocol generator PDEBench's data? Solver convergence and IC statistics.

    python -m bench.pdebench_data [--samples 32] [--reference IC.npy] [--out FILE.json]

1. Convergence: the same trajectories solved on nx, 2 nx and 4 nx internal points
   (cell-averaged onto the 1024 output cells), at nu = 0.01 and nu = 0.1; the relative
   L2 difference per snapshot against the 4 nx solve, max and mean over samples and time.
2. Initial conditions: statistics of ours beside those of PDEBench's own `init_multi`.
   `--reference` is a [N, 1024] array of its initial conditions, made where JAX and a
   PDEBench checkout are (neither is a dependency of ups):

       python -c "import sys, numpy as np; sys.path.insert(0, 'PDEBench/pdebench/data_gen/data_gen_NLE'); \
         import jax.numpy as jnp; from utils import init_multi; \
         xc = jnp.linspace(0, 1, 1025)[:-1] + 0.5 / 1024; \
         np.save('ic.npy', np.asarray(init_multi(xc, numbers=10000, k_tot=4, init_key=2022)))"

   Two seeds of ours are shown, so the sampling noise is visible beside the difference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ups.config import GeneratorConfig
from ups.data import pdebench_protocol as pp


def convergence(viscosity: float, samples: int, seed: int = 0) -> dict[str, float]:
    gen = GeneratorConfig(protocol="pdebench", nx=1024, nt=201, t_end=2.0, viscosity=viscosity)
    params = pp.draw_params(np.random.default_rng(seed), samples)
    out, seconds = {}, {}
    for refine in (1, 2, 4):
        started = time.perf_counter()
        out[refine] = pp.solve_batch(params, gen, refine * gen.nx)
        seconds[refine] = time.perf_counter() - started
    ref = out[4]
    row: dict[str, float] = {"viscosity": viscosity, "samples": samples}
    for refine in (1, 2):
        err = np.linalg.norm(out[refine] - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
        row[f"max_rel_l2_{refine}x_vs_4x"] = float(err.max())
        row[f"mean_rel_l2_{refine}x_vs_4x"] = float(err.mean())
        row[f"seconds_per_sample_{refine}x"] = seconds[refine] / samples
    return row


def ic_statistics(u: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """Numbers that each quirk of init_multi moves (see ups.data.pdebench_protocol)."""
    absmax = np.abs(u).max(axis=1)
    windowed = np.abs(u[:, x < 0.05]).max(axis=1) < 1e-3  # zero near x = 0 only under the window
    spec = (np.abs(np.fft.rfft(u, axis=1)) / u.shape[1]) ** 2
    stats = {
        "mean": float(u.mean()), "std": float(u.std()),
        "std_of_sample_means": float(u.mean(axis=1).std()),  # the constant terms of unpicked modes
        "absmax_p10": float(np.quantile(absmax, 0.1)), "absmax_median": float(np.median(absmax)),
        "absmax_p90": float(np.quantile(absmax, 0.9)),
        "fraction_windowed": float(windowed.mean()),
        "fraction_one_signed": float(((u.min(axis=1) >= 0) | (u.max(axis=1) <= 0)).mean()),
    }
    if windowed.any():
        first = np.argmax(np.abs(u[windowed]) > 1e-3, axis=1)
        stats["window_first_nonzero_x_max"] = float(x[first].max())  # xL < 0.135, less the tanh edge
    for k in range(0, 9):
        stats[f"energy_mode_{k}"] = float(spec[:, k].mean())  # modes 5 and 7 only by the 1/(1-dx) scaling
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pdebench_data", description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=32, help="trajectories per convergence check")
    p.add_argument("--reference", type=Path, help="[N, 1024] .npy of PDEBench init_multi initial conditions")
    p.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = p.parse_args(argv)
    report: dict[str, object] = {"convergence": [convergence(nu, args.samples) for nu in (0.01, 0.1)]}
    for row in report["convergence"]:
        print(json.dumps(row))
    x = pp.cell_centres(1024)
    span = float(x[-1] - x[0])
    n = 10000
    columns = {f"ours_seed{s}": ic_statistics(pp.initial_conditions(pp.draw_params(np.random.default_rng(s), n),
                                                                     x, span), x) for s in (0, 1)}
    if args.reference:
        columns["pdebench_init_multi"] = ic_statistics(np.load(args.reference).astype(np.float64), x)
    report["initial_conditions"] = columns
    names = list(columns)
    print(f"{'statistic':28s}" + "".join(f"{c:>22s}" for c in names))
    for key in columns[names[0]]:
        print(f"{key:28s}" + "".join(f"{columns[c].get(key, float('nan')):>22.4f}" for c in names))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
