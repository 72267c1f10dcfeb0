"""The PDEBench-protocol generator: init_multi's quirks, the solver, the one PDEBench-named file."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from ups.config import DataConfig, GeneratorConfig, pdebench_file_name
from ups.data import pdebench_protocol as pp
from ups.data.burgers import ensure_data, solve_burgers
from ups.data.pdebench import PDEBenchFile, open_split

TINY = GeneratorConfig(protocol="pdebench", nx=64, nt=11, t_end=0.1, viscosity=0.1, n_test=3, n_val=2, n_train=5,
                       seed=5)


def one(counts, amp, phase, is_abs=False, sign=1.0, window=0.5):
    return {"counts": np.array([counts]), "amp": np.array([amp], float), "phase": np.array([phase], float),
            "is_abs": np.array([is_abs]), "sign": np.array([sign]), "window": np.array([window])}


def test_file_names_follow_pdebench():
    assert pdebench_file_name(0.01) == "1D_Burgers_Sols_Nu0.01.hdf5"
    assert pdebench_file_name(0.1) == "1D_Burgers_Sols_Nu0.1.hdf5"
    assert pdebench_file_name(0.001) == "1D_Burgers_Sols_Nu0.001.hdf5"
    assert pdebench_file_name(1) == "1D_Burgers_Sols_Nu1.0.hdf5"
    assert pp.equation_viscosity(0.01) == pytest.approx(0.01 / math.pi)


def test_a_repeated_pick_doubles_the_wavenumber_scaled_by_the_grid_span():
    x = pp.cell_centres(1024)
    span = x[-1] - x[0]
    u = pp.initial_conditions(one([0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]), x, span)
    np.testing.assert_allclose(u[0], np.sin(2 * np.pi * 2 * 2 * x / span), atol=1e-12)


def test_unpicked_modes_add_constants_and_abs_and_sign_apply_in_that_order():
    x = pp.cell_centres(128)
    u = pp.initial_conditions(one([0, 0, 0, 0], [0.5, 1, 0, 0], [math.pi / 2, -math.pi / 2, 0, 0],
                                  is_abs=True, sign=-1.0), x, x[-1] - x[0])
    # 0.5*sin(pi/2) + 1*sin(-pi/2) = -0.5; abs -> 0.5; sign -> -0.5
    np.testing.assert_allclose(u[0], -0.5)


def test_window_decision_and_edges_come_from_one_number():
    params = pp.draw_params(np.random.default_rng(0), 4000)
    x = pp.cell_centres(1024)
    u = pp.initial_conditions(params, x, x[-1] - x[0])
    windowed = params["window"] < pp.WINDOW_PROB
    assert 0.08 < windowed.mean() < 0.12
    zero_near_left = np.abs(u[:, x < 0.05]).max(axis=1) < 1e-3
    zero_near_right = np.abs(u[:, x > 0.66]).max(axis=1) < 1e-3  # xR < 0.585 under the window
    np.testing.assert_array_equal(zero_near_left & zero_near_right, windowed & (np.abs(u).max(axis=1) > 1e-3))


def test_moving_frame_solve_equals_the_direct_solve():
    x = pp.cell_centres(128)
    params = pp.draw_params(np.random.default_rng(1), 3)
    u0 = pp.initial_conditions(params, x, 1.0)  # span 1: periodic, so both solvers see the same field
    times = np.linspace(0, 0.2, 5)
    direct = solve_burgers(u0, 0.05, times)
    moving = pp.solve_moving_frame(u0, 0.05, times)
    # Not to round-off: the moving frame takes fewer, longer RK4 steps (its CFL sees only u - mean).
    np.testing.assert_allclose(moving[:, 1:], direct[:, 1:], atol=2e-5)


def test_a_finer_solver_grid_changes_the_output_cells_little():
    gen = GeneratorConfig(protocol="pdebench", nx=128, nt=11, t_end=0.5, viscosity=0.1)
    params = pp.draw_params(np.random.default_rng(2), 4)
    coarse, fine = pp.solve_batch(params, gen, 128), pp.solve_batch(params, gen, 512)
    err = np.linalg.norm(coarse - fine, axis=-1) / np.linalg.norm(fine, axis=-1)
    assert err.max() < 1e-3


def test_one_file_holds_test_then_val_then_train_in_pdebench_layout(tmp_path):
    data = DataConfig(root=str(tmp_path), generator=TINY)
    paths = ensure_data(data, log=lambda m: None)
    assert set(paths.values()) == {tmp_path / "1D_Burgers_Sols_Nu0.1.hdf5"}
    with h5py.File(paths["train"]) as f:
        assert f["tensor"].shape == (10, 11, 64) and f["tensor"].dtype == np.float32
        assert f["t-coordinate"].shape == (12,)  # PDEBench stores one more time than snapshots
        np.testing.assert_allclose(f["x-coordinate"][:], pp.cell_centres(64), rtol=1e-6)
    sizes = {s: (open_split(data, s).start, open_split(data, s).stop) for s in ("test", "val", "train")}
    assert sizes == {"test": (0, 3), "val": (3, 5), "train": (5, 10)}
    # A second call finds the file current and does not regenerate it.
    logged = []
    ensure_data(data, log=logged.append)
    assert all(m.startswith("Using data") for m in logged)


def test_a_real_pdebench_file_and_a_generated_one_go_through_the_same_reader(tmp_path):
    generated = DataConfig(root=str(tmp_path / "gen"), generator=TINY, space_stride=4)
    path = ensure_data(generated, log=lambda m: None)["test"]
    real = tmp_path / "real" / "1D_Burgers_Sols_Nu0.1.hdf5"
    real.parent.mkdir()
    with h5py.File(path) as src, h5py.File(real, "w") as dst:  # PDEBench writes no attributes
        for key in ("tensor", "x-coordinate", "t-coordinate"):
            dst.create_dataset(key, data=src[key][:])
    as_real = DataConfig(generate=False, generator=TINY, files={s: str(real) for s in ("train", "val", "test")},
                         space_stride=4)
    a, b = open_split(generated, "test"), open_split(as_real, "test")
    assert (a.start, a.stop, a.nx) == (b.start, b.stop, b.nx) == (0, 3, 16)
    np.testing.assert_array_equal(a.trajectories([0, 2]), b.trajectories([0, 2]))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.t, b.t)
    assert PDEBenchFile(real).open().n_times == 11


@pytest.mark.parametrize("name, n_test", [("pdebench_burgers.yaml", 200), ("pdebench_burgers_gpu.yaml", 1000)])
def test_shipped_protocol_configs_are_pdebench_sized(name, n_test):
    from tests.helpers import REPO
    from ups.config import load_config

    cfg = load_config(REPO / "configs" / name)
    g = cfg.data.generator
    assert (g.protocol, g.nx, g.nt, g.t_end, g.viscosity, g.n_test) == ("pdebench", 1024, 201, 2.0, 0.01, n_test)
    assert (cfg.data.space_stride, cfg.data.time_stride) == (4, 5)
    p = cfg.eval.protocol
    assert (p.given, p.predicted, p.max_samples) == (10, 31, 1000)
    assert cfg.data.split_path("test").name == "1D_Burgers_Sols_Nu0.01.hdf5"
