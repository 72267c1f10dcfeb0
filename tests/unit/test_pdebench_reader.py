"""The streaming PDEBench reader: layout checks, split selection, partial reads, stats."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ups.config import DataConfig
from ups.data.pdebench import PDEBenchFile, field_stats, open_split
from ups.errors import DataError

N, T, X = 12, 9, 16


def make_file(path, n=N, t_len=T + 1, x_len=X, drop=None, tensor_shape=None):
    """A PDEBench-style file whose values encode their position: u[i, t, x] = i + t/100 + x/10000."""
    i, t, x = np.meshgrid(np.arange(n), np.arange(T), np.arange(X), indexing="ij")
    tensor = (i + t / 100 + x / 10000).astype(np.float32)
    arrays = {
        "tensor": tensor if tensor_shape is None else np.zeros(tensor_shape, np.float32),
        "x-coordinate": np.linspace(0, 1, x_len, dtype=np.float32),
        "t-coordinate": np.linspace(0, 2, t_len, dtype=np.float32),
    }
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if key != drop:
                f.create_dataset(key, data=value, chunks=(1, T, X) if value.ndim == 3 else None)
    return tensor


@pytest.fixture
def h5file(tmp_path):
    path = tmp_path / "burgers1d_train.h5"
    return path, make_file(path)


def data_for(path, **kw) -> DataConfig:
    return DataConfig(files={"train": str(path)}, generate=False, **kw)


def test_file_with_t_coordinate_one_longer_than_tensor_is_accepted(h5file):
    path, _ = h5file
    with PDEBenchFile(path) as f:
        assert (f.n_samples, f.n_times, f.nx) == (N, T, X)
        assert f.t.shape == (T,) and f.x.shape == (X,)


def test_t_coordinate_of_exactly_T_is_accepted(tmp_path):
    make_file(tmp_path / "f.h5", t_len=T)
    with PDEBenchFile(tmp_path / "f.h5") as f:
        assert f.t.shape == (T,)


@pytest.mark.parametrize("key", ["tensor", "x-coordinate", "t-coordinate"])
def test_missing_key_is_a_data_error_naming_it_and_the_file(tmp_path, key):
    make_file(tmp_path / "f.h5", drop=key)
    with pytest.raises(DataError, match=f"f.h5: missing dataset '{key}'"):
        PDEBenchFile(tmp_path / "f.h5").open()


@pytest.mark.parametrize(
    "kw, key",
    [({"x_len": X + 1}, "x-coordinate"), ({"t_len": T + 2}, "t-coordinate"), ({"tensor_shape": (N, T)}, "tensor")],
)
def test_wrong_shapes_are_data_errors_naming_the_key(tmp_path, kw, key):
    make_file(tmp_path / "f.h5", **kw)
    with pytest.raises(DataError, match=f"'{key}'"):
        PDEBenchFile(tmp_path / "f.h5").open()


def test_missing_or_non_hdf5_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        PDEBenchFile(tmp_path / "nope.h5").open()
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="junk.h5: not a readable HDF5 file"):
        PDEBenchFile(tmp_path / "junk.h5").open()


def test_index_range_and_limit_select_the_trajectories(h5file):
    path, tensor = h5file
    split = open_split(data_for(path, index_range={"train": (3, 10)}, limit=4), "train")
    assert len(split) == 4 and (split.n_times, split.nx) == (T, X)
    np.testing.assert_array_equal(split.load_all(), tensor[3:7])
    assert split.nbytes == 4 * T * X * 4
    assert len(open_split(data_for(path), "train")) == N


def test_index_range_outside_the_file_names_the_key(h5file):
    path, _ = h5file
    with pytest.raises(DataError, match=r"data.index_range.train=\[5, 99\)"):
        open_split(data_for(path, index_range={"train": (5, 99)}), "train")


def test_trajectories_reads_split_positions_in_the_requested_order(h5file):
    path, tensor = h5file
    split = open_split(data_for(path, index_range={"train": (2, 12)}), "train")
    np.testing.assert_array_equal(split.trajectories([5, 0, 5, 9]), tensor[[7, 2, 7, 11]])
    assert split.trajectories([]).shape == (0, T, X)
    with pytest.raises(IndexError):
        split.trajectories([10])


def test_read_pairs_matches_the_full_array(h5file):
    path, tensor = h5file
    split = open_split(data_for(path, index_range={"train": (1, 12)}), "train")
    items = [(0, 0), (4, 3), (0, 5), (10, 5), (4, 3), (7, 0)]
    for stride in (1, 2, 3):
        got = split.read_pairs(items, stride)
        want = np.stack([np.stack([tensor[1 + i, t], tensor[1 + i, t + stride]]) for i, t in items])
        np.testing.assert_array_equal(got, want)
    with pytest.raises(IndexError):
        split.read_pairs([(0, T - 1)], 1)


def test_streaming_reads_never_touch_the_whole_tensor(h5file, monkeypatch):
    path, _ = h5file
    split = open_split(data_for(path), "train")
    full = split.file.tensor.size
    largest = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        out = original(self, key)
        if self.name == "/tensor":
            largest.append(np.asarray(out).size)
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    split.read_pairs([(0, 0), (11, 7), (3, 2)], 1)
    split.trajectories([1, 4])
    field_stats(split, chunk=5)
    assert largest and max(largest) < full
    assert max(largest) <= 5 * T * X


def test_should_preload_auto_uses_the_size_threshold(h5file, monkeypatch):
    path, _ = h5file
    split = open_split(data_for(path), "train")
    assert split.should_preload("auto") and split.should_preload(True) and not split.should_preload(False)
    monkeypatch.setattr("ups.data.pdebench.PRELOAD_AUTO_MAX_BYTES", split.nbytes - 1)
    assert not split.should_preload("auto")


def test_field_stats_match_numpy_and_do_not_depend_on_chunk_size(h5file):
    path, tensor = h5file
    split = open_split(data_for(path, index_range={"train": (2, 11)}), "train")
    ref = tensor[2:11].astype(np.float64)
    for chunk in (1, 4, 64):
        mean, std = field_stats(split, chunk=chunk)
        assert mean == pytest.approx(ref.mean(), rel=1e-12)
        assert std == pytest.approx(ref.std(), rel=1e-12)
    assert field_stats(split) == field_stats(split)
