"""The built-in Burgers generator: physics sanity, determinism, files and ensure_data."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from ups.config import DataConfig, GeneratorConfig
from ups.data import burgers
from ups.data.burgers import (
    GENERATOR_ATTR,
    ensure_data,
    generate_burgers,
    solve_burgers,
    split_seed,
    write_pdebench_h5,
)
from ups.data.pdebench import PDEBenchFile
from ups.errors import DataError

SMALL = GeneratorConfig(nx=32, nt=11, n_train=6, n_val=3, n_test=3, seed=7)


def small_data(tmp_path, **kw) -> DataConfig:
    return DataConfig(root=str(tmp_path / "data"), generator=SMALL, **kw)


def test_generated_arrays_have_pdebench_shapes_and_grids():
    tensor, x, t = generate_burgers(SMALL, 4, seed=1)
    assert tensor.shape == (4, SMALL.nt, SMALL.nx) and tensor.dtype == np.float32
    np.testing.assert_allclose(x, (np.arange(SMALL.nx) + 0.5) / SMALL.nx, rtol=1e-6)
    assert t[0] == 0 and t[-1] == pytest.approx(SMALL.t_end) and x.dtype == t.dtype == np.float32
    peak = np.abs(tensor[:, 0]).max(axis=1)
    assert (peak > 0.4).all() and (peak <= 1.0 + 1e-6).all()


def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    a, _, _ = generate_burgers(SMALL, 5, seed=3)
    b, _, _ = generate_burgers(SMALL, 5, seed=3)
    c, _, _ = generate_burgers(SMALL, 5, seed=4)
    assert a.tobytes() == b.tobytes()
    assert not np.allclose(a[:, 0], c[:, 0])


def test_first_initial_conditions_do_not_depend_on_sample_count():
    few, _, _ = generate_burgers(SMALL, 2, seed=3)
    many, _, _ = generate_burgers(SMALL, 6, seed=3)
    np.testing.assert_array_equal(few[:, 0], many[:2, 0])


def test_split_seeds_are_distinct_deterministic_and_valid_for_negative_bases():
    seeds = {split_seed(1234, s) for s in ("train", "val", "test")}
    assert len(seeds) == 3 and split_seed(1234, "val") == split_seed(1234, "val")
    assert split_seed(-5, "train") >= 0


def test_spatial_mean_is_conserved_and_energy_never_increases():
    tensor, _, _ = generate_burgers(GeneratorConfig(), 8, seed=11)
    u = tensor.astype(np.float64)
    mass = u.mean(axis=-1)
    assert np.abs(mass - mass[:, :1]).max() < 1e-6
    energy = (u**2).mean(axis=-1)
    assert (np.diff(energy, axis=1) <= 1e-7).all()
    assert (energy[:, -1] < energy[:, 0]).all()  # viscosity dissipates


def test_tiny_amplitude_follows_the_heat_equation():
    nu, eps, m = 0.05, 1e-6, 64
    x = (np.arange(m) + 0.5) / m
    t = np.linspace(0.0, 0.5, 6)
    u = solve_burgers(eps * np.sin(2 * np.pi * x)[None], nu, t)[0]
    exact = eps * np.exp(-nu * (2 * np.pi) ** 2 * t)[:, None] * np.sin(2 * np.pi * x)
    # The nonlinear term is O(eps^2): relative error ~eps.
    assert np.abs(u - exact).max() < 1e-4 * eps


def test_default_resolution_matches_a_four_times_finer_reference():
    gen = GeneratorConfig(n_train=4)
    tensor, _, t = generate_burgers(gen, 4, seed=5)
    params = burgers._draw_params(np.random.default_rng(5), 4, gen.max_modes)
    fine = 4 * burgers.internal_resolution(gen.nx, gen.viscosity)
    x_fine = (np.arange(fine) + 0.5) / fine
    ref = solve_burgers(burgers.initial_conditions(params, x_fine), gen.viscosity, t)
    ref = ref.reshape(4, gen.nt, gen.nx, -1).mean(axis=-1)
    assert np.abs(tensor - ref).max() < 1e-2
    assert np.abs(tensor - ref).mean() < 1e-3


def test_written_file_has_layout_and_string_attrs(tmp_path):
    tensor, x, t = generate_burgers(SMALL, 2, seed=1)
    path = tmp_path / "sub" / "f.h5"
    write_pdebench_h5(path, tensor, x, t, {"note": "hi", "record": {"a": 1}})
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["tensor"][:], tensor)
        assert f["x-coordinate"].shape == (SMALL.nx,) and f["t-coordinate"].shape == (SMALL.nt,)
        assert f.attrs["note"] == "hi" and json.loads(f.attrs["record"]) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["f.h5"]  # no temp file left


def test_ensure_data_generates_missing_splits_with_distinct_data(tmp_path):
    lines = []
    paths = ensure_data(small_data(tmp_path), log=lines.append)
    assert set(paths) == {"train", "val", "test"}
    assert "Generating Burgers data for split 'train': 6 trajectories, nx=32, nt=11, seed=7 ->" in lines[0]
    with PDEBenchFile(paths["train"]) as tr, PDEBenchFile(paths["val"]) as va:
        assert (tr.n_samples, va.n_samples) == (6, 3)
        assert not np.allclose(tr.tensor[0, 0], va.tensor[0, 0])


def test_ensure_data_twice_is_byte_identical_and_keeps_the_file(tmp_path):
    data = small_data(tmp_path)
    path = ensure_data(data, ["train"], log=lambda _: None)["train"]
    first, mtime = _sha(path), path.stat().st_mtime_ns
    lines = []
    ensure_data(data, ["train"], log=lines.append)
    assert path.stat().st_mtime_ns == mtime and "Using data" in lines[0]
    path.unlink()
    ensure_data(data, ["train"], log=lambda _: None)
    assert _sha(path) == first


def test_changed_generator_config_regenerates_and_says_why(tmp_path):
    data = small_data(tmp_path)
    ensure_data(data, ["train"], log=lambda _: None)
    changed = data.model_copy(update={"generator": SMALL.model_copy(update={"viscosity": 0.02})})
    lines = []
    path = ensure_data(changed, ["train"], log=lines.append)["train"]
    assert "Regenerating" in lines[0] and "viscosity 0.01 -> 0.02" in lines[0]
    with PDEBenchFile(path) as f:
        assert json.loads(f.attrs[GENERATOR_ATTR])["viscosity"] == 0.02


def test_changing_another_splits_size_does_not_regenerate_train(tmp_path):
    data = small_data(tmp_path)
    path = ensure_data(data, ["train"], log=lambda _: None)["train"]
    mtime = path.stat().st_mtime_ns
    other = data.model_copy(update={"generator": SMALL.model_copy(update={"n_val": 9})})
    ensure_data(other, ["train"], log=lambda _: None)
    assert path.stat().st_mtime_ns == mtime


def test_foreign_file_is_validated_not_overwritten(tmp_path):
    path = tmp_path / "mine.h5"
    tensor, x, t = generate_burgers(SMALL, 2, seed=1)
    write_pdebench_h5(path, tensor, x, t, {})
    before = _sha(path)
    ensure_data(small_data(tmp_path, files={"train": str(path)}), ["train"], log=lambda _: None)
    assert _sha(path) == before


def test_missing_file_without_generation_names_path_key_and_fix(tmp_path):
    data = small_data(tmp_path, generate=False)
    with pytest.raises(DataError) as e:
        ensure_data(data, ["val"])
    msg = str(e.value)
    assert "burgers1d_val.h5" in msg and "data.root" in msg
    assert "scripts/download_data.py --dataset burgers --split val" in msg and "data.generate: true" in msg
    with pytest.raises(DataError, match="data.files.train"):
        ensure_data(small_data(tmp_path, generate=False, files={"train": str(tmp_path / "x.h5")}), ["train"])


def test_existing_file_with_wrong_layout_is_a_data_error(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(DataError, match="x-coordinate"):
        ensure_data(small_data(tmp_path, files={"train": str(path)}), ["train"])


def test_force_regenerates_even_a_damaged_file(tmp_path):
    data = small_data(tmp_path)
    path = data.split_path("train")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"torn")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        ensure_data(data, ["train"], log=lambda _: None)
    lines = []
    ensure_data(data, ["train"], log=lines.append, force=True)
    assert lines[0].startswith(f"Regenerating {path}: forced")
    with PDEBenchFile(path) as f:
        assert f.n_samples == SMALL.n_train


def test_two_processes_generating_at_once_both_end_with_a_valid_file(tmp_path):
    root = tmp_path / "data"
    code = textwrap.dedent(f"""
        from ups.config import DataConfig, GeneratorConfig
        from ups.data.burgers import ensure_data
        gen = GeneratorConfig(nx=64, nt=21, n_train=64, seed=3)
        ensure_data(DataConfig(root={str(root)!r}, generator=gen), ["train"], log=lambda _: None)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    with PDEBenchFile(root / "burgers1d_train.h5") as f:
        assert f.n_samples == 64 and np.isfinite(f.tensor[:]).all()
    assert [p.name for p in root.iterdir()] == ["burgers1d_train.h5"]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
