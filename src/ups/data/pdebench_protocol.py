"""PDEBench's 1D Burgers data set, regenerated here: what every 1D-Burgers paper reports on.

PDEBench (pdebench/PDEBench, `data_gen/data_gen_NLE/BurgersEq/burgers_multi_solution_Hydra.py`
with `config/multi/1e-2.yaml`, and `init_multi` in `data_gen/data_gen_NLE/utils.py`) solves

    u_t + (u^2 / 2)_x = (nu / pi) u_xx     periodic on (0, 1), 1024 cells, t in [0, 2]

and names the file after nu (`1D_Burgers_Sols_Nu0.01.hdf5` holds nu/pi = 0.00318 in the
equation). 201 snapshots every 0.01; its `t-coordinate` has 202 entries (it is built as
`arange(it_tot + 1) * dt_save`). Its initial conditions, as `init_multi(k_tot=4)` draws them,
quirks included:

- two wavenumber picks out of 1..4 with replacement, summed as one-hot counts: a repeated
  pick doubles that wavenumber; wavenumbers are scaled by 1/(x[-1] - x[0]) = 1/(1 - dx),
  so the sines are not exactly periodic on the grid;
- every one of the four modes gets an amplitude U[0, 1) and a phase U[0, 2 pi): an unpicked
  mode has wavenumber 0 and adds the constant amp * sin(phase);
- |u| with probability 0.1, then a random sign;
- a tanh window (edge 0.01) with probability 0.1. The window decision and both window
  edges are drawn from the same JAX key with the same shape, so they are one uniform u:
  windowed iff u < 0.1, xL = 0.1 + 0.35 u, xR = 0.55 + 0.35 u. We draw them that way.

The numbers come from numpy's generator, not JAX's (whose streams differ across JAX
versions anyway), so the distribution is PDEBench's, the samples are not its samples.

PDEBench integrates with a second-order finite-volume scheme. We use the project's
spectral solver (`ups.data.burgers.solve_burgers`) on `internal_nx` points in the frame
moving with each sample's mean (Galilean invariance: u = w(x - c t, t) + c), which keeps
the CFL step set by the fluctuation, not by the constant offsets above; the result is
cell-averaged onto the 1024 output cells. `bench/pdebench_data.py` measures its
convergence against a finer solve and compares the initial-condition statistics with
PDEBench's own `init_multi`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from ups.config import GeneratorConfig
from ups.data.pdebench import T_KEY, TENSOR_KEY, X_KEY
from ups.resume.atomic import atomic_path

PROTOCOL_VERSION = 1
K_TOT = 4  # init_multi(k_tot=4) in burgers_multi_solution_Hydra.py
PICKS = 2  # init_multi's num_choise_k
ABS_PROB = 0.1
WINDOW_PROB = 0.1
WINDOW_EDGE = 0.01
DT_SAVE = 0.01  # config/multi/*.yaml
BATCH = 32  # samples solved together: the fine-grid trajectories of a batch stay in memory
DEFAULT_REFINE = 2  # internal_nx = 2 * nx unless set: see bench/pdebench_data.py for the check


def equation_viscosity(file_nu: float) -> float:
    """The diffusion coefficient in the equation for PDEBench's file-name nu: nu / pi."""
    return file_nu / math.pi


def cell_centres(nx: int) -> np.ndarray:
    """PDEBench's `xc`: centres of nx equal cells of (0, 1)."""
    edges = np.linspace(0.0, 1.0, nx + 1)
    return edges[:-1] + 0.5 / nx


def snapshot_times(gen: GeneratorConfig) -> np.ndarray:
    return np.linspace(0.0, gen.t_end, gen.nt)


def stored_t_coordinate(gen: GeneratorConfig) -> np.ndarray:
    """The `t-coordinate` PDEBench writes: one entry more than there are snapshots."""
    return np.arange(gen.nt + 1) * (gen.t_end / (gen.nt - 1))


def draw_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """init_multi's random numbers, sample by sample (the first k do not depend on n)."""
    rows = []
    for _ in range(n):
        picks = rng.integers(0, K_TOT, PICKS)
        counts = np.bincount(picks, minlength=K_TOT)
        amp = rng.uniform(0.0, 1.0, K_TOT)
        phase = rng.uniform(0.0, 2 * np.pi, K_TOT)
        is_abs = rng.uniform() < ABS_PROB
        sign = 1.0 if rng.uniform() < 0.5 else -1.0
        window = rng.uniform()  # one number: the decision and both edges (see module doc)
        rows.append((counts, amp, phase, is_abs, sign, window))
    names = ("counts", "amp", "phase", "is_abs", "sign", "window")
    return {name: np.array([r[i] for r in rows]) for i, name in enumerate(names)}


def initial_conditions(params: dict[str, np.ndarray], x: np.ndarray, span: float) -> np.ndarray:
    """[n, len(x)] initial fields at points `x`; `span` is x[-1] - x[0] of PDEBench's grid."""
    kk = 2 * np.pi * np.arange(1, K_TOT + 1) * params["counts"] / span  # [n, K]
    u = np.einsum("nk,nkx->nx", params["amp"],
                  np.sin(kk[:, :, None] * x[None, None, :] + params["phase"][:, :, None]))
    u = np.where(params["is_abs"][:, None], np.abs(u), u) * params["sign"][:, None]
    w = params["window"]
    left, right = 0.1 + 0.35 * w, 0.55 + 0.35 * w
    mask = 0.5 * (np.tanh((x[None, :] - left[:, None]) / WINDOW_EDGE)
                  - np.tanh((x[None, :] - right[:, None]) / WINDOW_EDGE))
    return np.where((w < WINDOW_PROB)[:, None], u * mask, u)


def solve_moving_frame(u0: np.ndarray, nu: float, times: np.ndarray) -> np.ndarray:
    """Burgers from `u0` [n, m] at each of `times`, solved as w = u - mean in the moving frame."""
    from ups.data.burgers import solve_burgers

    m = u0.shape[1]
    c = u0.mean(axis=1)
    w = solve_burgers(u0 - c[:, None], nu, times)  # [n, T, m]
    k = 2 * np.pi * np.fft.rfftfreq(m, d=1.0 / m)
    shift = np.exp(-1j * k[None, None, :] * (c[:, None, None] * times[None, :, None]))
    return np.fft.irfft(np.fft.rfft(w, axis=-1) * shift, n=m, axis=-1) + c[:, None, None]


def internal_grid(gen: GeneratorConfig) -> int:
    fine = gen.internal_nx or DEFAULT_REFINE * gen.nx
    if fine % gen.nx:
        raise ValueError(f"data.generator.internal_nx={fine} must be a multiple of data.generator.nx={gen.nx}")
    return fine


def solve_batch(params: dict[str, np.ndarray], gen: GeneratorConfig, fine: int) -> np.ndarray:
    """[n, nt, nx] float64 trajectories of one batch, cell-averaged from `fine` points."""
    span = float(cell_centres(gen.nx)[-1] - cell_centres(gen.nx)[0])
    u0 = initial_conditions(params, cell_centres(fine), span)
    u = solve_moving_frame(u0, equation_viscosity(gen.viscosity), snapshot_times(gen))
    u[:, 0] = u0  # the stored IC is the drawn field, not its dealiased projection
    return u.reshape(len(u), gen.nt, gen.nx, fine // gen.nx).mean(axis=-1)


def protocol_record(gen: GeneratorConfig, seed: int) -> dict[str, Any]:
    """What the one protocol file depends on (its `generator` attribute)."""
    physics = gen.model_dump(exclude={"n_train", "n_val", "n_test", "seed", "max_modes"})
    return {**physics, "split": "all", "n": gen.n_test + gen.n_val + gen.n_train,
            "base_seed": gen.seed, "seed": seed, "protocol_version": PROTOCOL_VERSION,
            "internal_nx": internal_grid(gen)}


def write_protocol_file(gen: GeneratorConfig, path: Path, record: dict[str, Any], attrs: dict[str, str],
                        log: Callable[[str], Any] = print) -> None:
    """Solve and write the file batch by batch (a full-size file is 8 GB), crash-consistently."""
    n, fine = record["n"], internal_grid(gen)
    params = draw_params(np.random.default_rng(record["seed"]), n)
    started = time.perf_counter()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            data = f.create_dataset(TENSOR_KEY, shape=(n, gen.nt, gen.nx), dtype=np.float32,
                                    chunks=(1, gen.nt, gen.nx))
            f.create_dataset(X_KEY, data=cell_centres(gen.nx).astype(np.float32))
            f.create_dataset(T_KEY, data=stored_t_coordinate(gen).astype(np.float32))
            for key, value in attrs.items():
                f.attrs[key] = value
            for lo in range(0, n, BATCH):
                batch = {k: v[lo: lo + BATCH] for k, v in params.items()}
                data[lo: lo + len(batch["amp"])] = solve_batch(batch, gen, fine).astype(np.float32)
                if lo // BATCH % 20 == 19:
                    log(f"  {lo + BATCH}/{n} trajectories ({time.perf_counter() - started:.0f} s)")
