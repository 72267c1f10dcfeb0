"""The built-in data set: 1D periodic viscous Burgers, solved here so no download is needed.

    u_t + (u^2 / 2)_x = nu u_xx   on x in [0, 1), periodic

Pseudo-spectral in x (numpy FFT, 2/3-rule dealiasing) and integrating-factor RK4
in time, in float64, vectorised over samples. The integrating factor treats the
viscous term exactly, so it sets no step-size limit; the step comes from the
advective CFL condition `dt * max|u| * k_max <= _RK4_CFL`, re-evaluated at every
output time (viscous Burgers obeys a maximum principle, so max|u| only decays).

The solve runs on a finer internal grid than the output (`internal_resolution`)
so that shocks of width ~nu/|u| are resolved, and is cell-averaged down to `nx`
cells: the output is finite-volume-like data, as in PDEBench. Mass (the spatial
mean) is conserved to round-off and energy (mean u^2) never increases.

Initial conditions follow PDEBench: a sum of 1..max_modes sines with random integer
wavenumbers, amplitudes and phases, half of them windowed, scaled to a peak in
[0.5, 1]. Same config and seed give identical bytes (on one numpy build; across
CPUs/FFT builds, expect agreement to float64 round-off before the float32 cast).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import h5py
import numpy as np

from ups.config import SPLITS, DataConfig, GeneratorConfig
from ups.data.pdebench import T_KEY, TENSOR_KEY, X_KEY, PDEBenchFile
from ups.errors import DataError
from ups.resume.atomic import atomic_path

# Bump when the solver or the initial conditions change: stored files then regenerate.
SOLVER_VERSION = 1
GENERATOR_ATTR = "generator"

_MAX_WAVENUMBER = 4  # initial sines have 1..4 periods on [0, 1)
_WINDOW_PROB = 0.5
_WINDOW_EDGE = 0.02  # tanh edge width of the window
_PEAK_RANGE = (0.5, 1.0)  # max|u0|; the resolution rule below relies on max|u0| <= 1
_RE_CELL = 0.5  # largest max|u| * dx / nu on the internal grid (0.5: ~1e-3 max error at the defaults)
_MAX_REFINE = 32
_RK4_CFL = 1.5  # RK4 is stable up to 2.83 on the imaginary axis; keep a margin
_BATCH = 256  # samples solved together: bounds memory for large n


# --- solver -------------------------------------------------------------


def internal_resolution(nx: int, viscosity: float, u_max: float = 1.0) -> int:
    """Grid the solver uses: nx times the smallest power of two with `u_max*dx/nu <= _RE_CELL`.

    Capped at `_MAX_REFINE` times nx: the cost grows as the square of the refinement
    (CFL), and past the cap a tiny viscosity is simply under-resolved (the dealiased
    scheme stays bounded, with some ringing near shocks).
    """
    refine = 1
    while u_max / (nx * refine * viscosity) > _RE_CELL and refine < _MAX_REFINE:
        refine *= 2
    return nx * refine


def solve_burgers(u0: np.ndarray, viscosity: float, times: Sequence[float]) -> np.ndarray:
    """Evolve `u0` [n, m] (samples on m periodic cells of [0, 1)) to each of `times`.

    `times[0]` is the time of `u0`. Returns [n, len(times), m] float64. The state is
    kept in the dealiased space (top third of modes zero), where the discrete energy
    obeys the same dissipation law as the PDE.
    """
    u0 = np.atleast_2d(np.asarray(u0, dtype=np.float64))
    n, m = u0.shape
    k = 2 * np.pi * np.fft.rfftfreq(m, d=1.0 / m)
    keep = np.arange(k.size) < m / 3
    lin = -viscosity * k**2
    # (u^2/2)_x in Fourier space is i k FFT(u^2) / 2; the mask is the 2/3 rule.
    g = -0.5j * k * keep
    k_max = float(k[keep].max()) if keep.any() else 0.0
    v = np.fft.rfft(u0) * keep
    out = np.empty((n, len(times), m))
    out[:, 0] = np.fft.irfft(v, n=m)
    for j in range(1, len(times)):
        span = float(times[j] - times[j - 1])
        u_max = float(np.abs(out[:, j - 1]).max())
        steps = max(1, math.ceil(span * u_max * k_max / _RK4_CFL))
        dt = span / steps
        half = np.exp(lin * dt / 2)
        for _ in range(steps):
            v = _if_rk4_step(v, dt, half, g, m)
        out[:, j] = np.fft.irfft(v, n=m)
        if not np.isfinite(out[:, j]).all():
            raise DataError(f"Burgers solver diverged at t={times[j]:.4g} (data.generator.viscosity={viscosity})")
    return out


def _if_rk4_step(v: np.ndarray, dt: float, half: np.ndarray, g: np.ndarray, m: int) -> np.ndarray:
    """One integrating-factor RK4 step (Trefethen, Spectral Methods in MATLAB, p27)."""
    full = half * half

    def nonlinear(w: np.ndarray) -> np.ndarray:
        u = np.fft.irfft(w, n=m)
        return g * np.fft.rfft(u * u)

    a = nonlinear(v)
    b = nonlinear(half * (v + 0.5 * dt * a))
    c = nonlinear(half * v + 0.5 * dt * b)
    d = nonlinear(full * v + dt * half * c)
    return full * v + dt / 6 * (full * a + 2 * half * (b + c) + d)


# --- initial conditions -------------------------------------------------


def _draw_params(rng: np.random.Generator, n: int, max_modes: int) -> dict[str, np.ndarray]:
    """Per-sample random parameters, drawn sample by sample with a fixed number of draws
    each, so the first k samples do not depend on n."""
    rows = []
    for _ in range(n):
        n_modes = rng.integers(1, max_modes + 1)
        amps = rng.uniform(0.0, 1.0, max_modes) * (np.arange(max_modes) < n_modes)
        waves = rng.integers(1, _MAX_WAVENUMBER + 1, max_modes)
        phases = rng.uniform(0.0, 2 * np.pi, max_modes)
        window = rng.uniform(size=3)  # [use it?, centre, half-width]
        peak = rng.uniform(*_PEAK_RANGE)
        rows.append((amps, waves, phases, window, peak))
    names = ("amps", "waves", "phases", "window", "peak")
    return {name: np.array([r[i] for r in rows]) for i, name in enumerate(names)}


def initial_conditions(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """[n, len(x)] float64 initial fields from `_draw_params` output, on points `x`."""
    arg = 2 * np.pi * params["waves"][:, :, None] * x + params["phases"][:, :, None]
    u = np.einsum("nm,nmx->nx", params["amps"], np.sin(arg))
    use, centre, width = params["window"].T
    d = (x[None, :] - centre[:, None] + 0.5) % 1.0 - 0.5  # periodic distance to centre
    half_width = (0.1 + 0.25 * width)[:, None]
    mask = 0.5 * (np.tanh((d + half_width) / _WINDOW_EDGE) - np.tanh((d - half_width) / _WINDOW_EDGE))
    u = np.where((use < _WINDOW_PROB)[:, None], u * mask, u)
    scale = params["peak"] / np.maximum(np.abs(u).max(axis=1), 1e-12)
    return u * scale[:, None]


def generate_burgers(gen: GeneratorConfig, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` trajectories: tensor [n, nt, nx] float32, x [nx] cell centres, t [nt] in [0, t_end]."""
    fine = internal_resolution(gen.nx, gen.viscosity)
    x_fine = (np.arange(fine) + 0.5) / fine
    t = np.linspace(0.0, gen.t_end, gen.nt)
    params = _draw_params(np.random.default_rng(seed), n, gen.max_modes)
    tensor = np.empty((n, gen.nt, gen.nx), np.float32)
    for lo in range(0, n, _BATCH):
        batch = {k: v[lo : lo + _BATCH] for k, v in params.items()}
        u = solve_burgers(initial_conditions(batch, x_fine), gen.viscosity, t)
        # Cell averages over fine // nx sub-cells: the coarse cell centres are exact.
        tensor[lo : lo + len(u)] = u.reshape(len(u), gen.nt, gen.nx, -1).mean(axis=-1)
    x = (np.arange(gen.nx) + 0.5) / gen.nx
    return tensor, x.astype(np.float32), t.astype(np.float32)


# --- files --------------------------------------------------------------


def write_pdebench_h5(path: str | Path, tensor: np.ndarray, x: np.ndarray, t: np.ndarray, attrs: dict) -> None:
    """Write the PDEBench layout crash-consistently (temp file, fsync, rename, fsync dir)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            # One chunk per trajectory: the streaming reader reads trajectories at random.
            f.create_dataset(TENSOR_KEY, data=tensor, chunks=(1, *tensor.shape[1:]))
            f.create_dataset(X_KEY, data=x)
            f.create_dataset(T_KEY, data=t)
            for key, value in attrs.items():
                f.attrs[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def split_seed(base_seed: int, split: str) -> int:
    """The seed of one split: first 63 bits of sha256("ups-burgers:<base>:<split>").

    Distinct per split (so train, val and test never share a trajectory), stable
    across Python versions and machines (unlike `hash()`), and non-negative even for
    a negative base seed, as `np.random.default_rng` requires.
    """
    digest = hashlib.sha256(f"ups-burgers:{base_seed}:{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator_record(gen: GeneratorConfig, split: str) -> dict[str, Any]:
    """What a generated split depends on; stored as the `generator` attr to detect stale files.

    The other splits' sizes are left out: changing `n_val` must not regenerate train.
    Under the "pdebench" protocol every split lives in one file, with one record.
    """
    if gen.protocol == "pdebench":
        from ups.data.pdebench_protocol import protocol_record

        return protocol_record(gen, split_seed(gen.seed, "pdebench"))
    # The protocol fields are left out at their defaults: files generated before they
    # existed stay valid.
    physics = gen.model_dump(exclude={"n_train", "n_val", "n_test", "seed", "protocol", "internal_nx"})
    n = getattr(gen, f"n_{split}")
    return {**physics, "split": split, "n": n, "base_seed": gen.seed,
            "seed": split_seed(gen.seed, split), "solver_version": SOLVER_VERSION}


def ensure_data(
    data: DataConfig,
    splits: Sequence[str] = SPLITS,
    log: Callable[[str], Any] = print,
    force: bool = False,
) -> dict[str, Path]:
    """Make sure each split's file exists and has the PDEBench layout; generate it if allowed.

    A file we generated whose recorded generator settings differ from the config is
    regenerated (when `data.generate`); any other existing file is only validated, never
    overwritten (`force` regenerates regardless). Raises DataError for a missing file
    when generation is off.
    """
    paths = {}
    for split in splits:
        path = data.split_path(split)
        if path in paths.values():  # one file holds several splits (the "pdebench" protocol)
            log(f"Using data for split '{split}': {path}")
            paths[split] = path
            continue
        want = generator_record(data.generator, split)
        if not path.exists():
            reason = "missing"
        elif force and data.generate:
            reason = "forced"  # without opening it: a damaged file is what --force is for
        else:
            reason = _stale_reason(path, want, data.generate)
        if reason is None:
            log(f"Using data for split '{split}': {path}")
            paths[split] = path
            continue
        if reason == "missing" and not data.generate:
            raise DataError(_missing_message(data, split, path))
        if reason != "missing":
            log(f"Regenerating {path}: {reason}")
        _generate_split(data.generator, split, path, want, log)
        paths[split] = path
    return paths


def _stale_reason(path: Path, want: dict[str, Any], may_generate: bool) -> str | None:
    """Why an existing file must be regenerated, or None to keep it (after validating it)."""
    with PDEBenchFile(path) as f:
        stored = f.attrs.get(GENERATOR_ATTR)
    if stored is None or not may_generate:
        return None
    try:
        have = json.loads(stored)
    except (TypeError, ValueError):
        return f"its '{GENERATOR_ATTR}' attribute is not valid JSON"
    changed = [f"{k} {have.get(k)!r} -> {want[k]!r}" for k in want if have.get(k) != want[k]]
    return f"the generator config changed ({', '.join(changed)})" if changed else None


def _missing_message(data: DataConfig, split: str, path: Path) -> str:
    key = f"data.files.{split}" if split in data.files else "data.root"
    return (
        f"data file for split '{split}' not found: {path} (from {key}); run "
        f"scripts/download_data.py --dataset burgers --split {split}, or set data.generate: true"
    )


def _generate_split(gen: GeneratorConfig, split: str, path: Path, record: dict[str, Any], log: Callable) -> None:
    n = record["n"]
    if gen.protocol == "pdebench":
        _generate_protocol_file(gen, path, record, log)
        return
    log(
        f"Generating Burgers data for split '{split}': {n} trajectories, nx={gen.nx}, "
        f"nt={gen.nt}, seed={gen.seed} -> {path}"
    )
    started = time.perf_counter()
    tensor, x, t = generate_burgers(gen, n, record["seed"])
    attrs = {GENERATOR_ATTR: record, "equation": "burgers1d", "viscosity": str(gen.viscosity)}
    write_pdebench_h5(path, tensor, x, t, attrs)
    log(f"Generated {path} in {time.perf_counter() - started:.2f} s")


def _generate_protocol_file(gen: GeneratorConfig, path: Path, record: dict[str, Any], log: Callable) -> None:
    from ups.data.pdebench_protocol import equation_viscosity, write_protocol_file

    log(
        f"Generating PDEBench-protocol Burgers data: {record['n']} trajectories (test, val, train), "
        f"nx={gen.nx}, nt={gen.nt}, nu={gen.viscosity} (nu/pi={equation_viscosity(gen.viscosity):.5g} "
        f"in the equation), seed={gen.seed} -> {path}"
    )
    started = time.perf_counter()
    attrs = {GENERATOR_ATTR: json.dumps(record, sort_keys=True), "equation": "burgers1d",
             "viscosity": str(gen.viscosity), "protocol": "pdebench"}
    write_protocol_file(gen, path, record, attrs, log)
    log(f"Generated {path} in {time.perf_counter() - started:.2f} s")
