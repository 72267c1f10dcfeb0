"""Read Burgers trajectories in the PDEBench HDF5 layout without loading the file.

Real PDEBench files are several GB (`1D_Burgers_Sols_Nu0.001.hdf5` holds a
`tensor` of [10000, 201, 1024] float32), so everything here reads only the rows
it is asked for: a training batch of (u[t], u[t+stride]) pairs costs a few
hyperslab reads, never a pass over the file. Small generated files can still be
loaded whole (`load_all`), and `should_preload` decides which way to go.

Layout: `tensor` [N, T, X], `x-coordinate` [X], `t-coordinate` [T] or [T+1]
(PDEBench stores one more time entry than snapshots; we keep the first T).
Any deviation is a `DataError` naming the file and the key.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal, Sequence, Union

import h5py
import numpy as np

from ups.config import DataConfig
from ups.errors import DataError

TENSOR_KEY = "tensor"
X_KEY = "x-coordinate"
T_KEY = "t-coordinate"
LAYOUT = f"'{TENSOR_KEY}' [N, T, X], '{X_KEY}' [X], '{T_KEY}' [T or T+1]"
PRELOAD_AUTO_MAX_BYTES = 512 * 2**20

Preload = Union[bool, Literal["auto"]]


class PDEBenchFile:
    """One PDEBench-layout HDF5 file, opened on first use and validated on open."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._pid: int | None = None

    def open(self) -> "PDEBenchFile":
        # A handle inherited across fork() is unsafe in h5py; reopen in a new process.
        if self._h5 is not None and self._pid == os.getpid():
            return self
        if not self.path.is_file():
            raise DataError(f"data file not found: {self.path}")
        try:
            h5 = h5py.File(self.path, "r")
        except OSError as e:
            raise DataError(f"{self.path}: not a readable HDF5 file ({e})") from e
        try:
            _validate_layout(self.path, h5)
        except DataError:
            h5.close()
            raise
        self._h5, self._pid = h5, os.getpid()
        return self

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = self._pid = None

    def __enter__(self) -> "PDEBenchFile":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def tensor(self) -> h5py.Dataset:
        return self.open()._h5[TENSOR_KEY]

    @property
    def n_samples(self) -> int:
        return int(self.tensor.shape[0])

    @property
    def n_times(self) -> int:
        return int(self.tensor.shape[1])

    @property
    def nx(self) -> int:
        return int(self.tensor.shape[2])

    @property
    def x(self) -> np.ndarray:
        return np.asarray(self.open()._h5[X_KEY][:], dtype=np.float32)

    @property
    def t(self) -> np.ndarray:
        """Snapshot times; a T+1-long coordinate is cut to the first T entries."""
        return np.asarray(self.open()._h5[T_KEY][: self.n_times], dtype=np.float32)

    @property
    def attrs(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self.open()._h5.attrs.items()}


def _validate_layout(path: Path, h5: h5py.File) -> None:
    for key in (TENSOR_KEY, X_KEY, T_KEY):
        if not isinstance(h5.get(key), h5py.Dataset):
            raise DataError(f"{path}: missing dataset '{key}' (expected PDEBench layout {LAYOUT})")
    tensor, x, t = h5[TENSOR_KEY], h5[X_KEY], h5[T_KEY]
    if tensor.ndim != 3 or tensor.dtype.kind != "f":
        raise DataError(
            f"{path}: '{TENSOR_KEY}' must be a 3-D float array [N, T, X], "
            f"got shape {tensor.shape} dtype {tensor.dtype}"
        )
    _, n_t, n_x = tensor.shape
    if x.shape != (n_x,):
        raise DataError(f"{path}: '{X_KEY}' has shape {x.shape}, expected ({n_x},) to match '{TENSOR_KEY}'")
    if t.shape not in ((n_t,), (n_t + 1,)):
        raise DataError(
            f"{path}: '{T_KEY}' has shape {t.shape}, expected ({n_t},) or ({n_t + 1},) "
            f"to match '{TENSOR_KEY}'"
        )


def _plain(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class FieldSplit:
    """The trajectories one split uses: rows [start, stop) of a file's `tensor`, every
    `space_stride`-th grid point of them.

    Positions passed to the methods are 0-based within the split, so callers never
    see `data.index_range`, `data.limit` or `data.space_stride`.
    """

    def __init__(self, file: PDEBenchFile, start: int, stop: int, split: str = "", space_stride: int = 1):
        self.file, self.start, self.stop, self.split = file, start, stop, split
        self.space_stride = space_stride
        self.columns = slice(None, None, space_stride)

    @property
    def path(self) -> Path:
        return self.file.path

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def n_times(self) -> int:
        return self.file.n_times

    @property
    def nx(self) -> int:
        return len(range(self.file.nx)[self.columns])

    @property
    def x(self) -> np.ndarray:
        return self.file.x[self.columns]

    @property
    def t(self) -> np.ndarray:
        return self.file.t

    @property
    def nbytes(self) -> int:
        """Size of the selected trajectories as float32 (what preloading would cost)."""
        return len(self) * self.n_times * self.nx * 4

    def close(self) -> None:
        self.file.close()

    def should_preload(self, preload: Preload) -> bool:
        if preload == "auto":
            return self.nbytes <= PRELOAD_AUTO_MAX_BYTES
        return bool(preload)

    def load_all(self) -> np.ndarray:
        return np.asarray(self.file.tensor[self.start : self.stop, :, self.columns], dtype=np.float32)

    def trajectories(self, indices: Sequence[int]) -> np.ndarray:
        """[k, T, X] float32 for the given split positions (any order, repeats allowed)."""
        pos = self._positions(indices)
        if pos.size == 0:
            return np.empty((0, self.n_times, self.nx), np.float32)
        # h5py point selections must be increasing and unique; read sorted, then reorder.
        rows, inverse = np.unique(pos, return_inverse=True)
        block = np.asarray(self.file.tensor[(rows + self.start).tolist()], dtype=np.float32)
        return np.ascontiguousarray(block[inverse][..., self.columns])

    def read_pairs(self, items: Sequence[tuple[int, int]], stride: int) -> np.ndarray:
        """[B, 2, X] float32: (u[i, t], u[i, t + stride]) for each (split position i, time t)."""
        items = [(int(i), int(t)) for i, t in items]
        self._check_pairs(items, stride)
        by_row: dict[int, set[int]] = defaultdict(set)
        for i, t in items:
            by_row[i].update((t, t + stride))
        rows = {i: self._read_times(i, sorted(times)) for i, times in sorted(by_row.items())}
        out = np.empty((len(items), 2, self.nx), np.float32)
        for b, (i, t) in enumerate(items):
            times, block = rows[i]
            out[b, 0] = block[times[t]]
            out[b, 1] = block[times[t + stride]]
        return out

    def _read_times(self, pos: int, times: list[int]) -> tuple[dict[int, int], np.ndarray]:
        """Rows `times` of one trajectory, and where each time landed in the block read."""
        row, lo, hi = self.start + pos, times[0], times[-1] + 1
        # A point selection in h5py is slow per element; when the wanted times are dense,
        # one contiguous hyperslab over [lo, hi) is cheaper than picking them out.
        if 2 * len(times) >= hi - lo:
            block = np.asarray(self.file.tensor[row, lo:hi, self.columns], dtype=np.float32)
            return {t: t - lo for t in times}, block
        block = np.asarray(self.file.tensor[row, times, self.columns], dtype=np.float32)
        return {t: k for k, t in enumerate(times)}, block

    def _positions(self, indices: Sequence[int]) -> np.ndarray:
        pos = np.asarray(indices, dtype=np.int64).reshape(-1)
        if pos.size and (pos.min() < 0 or pos.max() >= len(self)):
            raise IndexError(f"trajectory position out of range [0, {len(self)}) for split '{self.split}'")
        return pos

    def _check_pairs(self, items: list[tuple[int, int]], stride: int) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        for i, t in items:
            if not (0 <= i < len(self)) or not (0 <= t and t + stride < self.n_times):
                raise IndexError(
                    f"pair (trajectory {i}, time {t}) with stride {stride} is outside the split "
                    f"'{self.split}' of {len(self)} trajectories x {self.n_times} times"
                )


def open_split(data: DataConfig, split: str) -> FieldSplit:
    """The trajectories of `split`: `data.index_range[split]`, then at most `data.limit` of them."""
    file = PDEBenchFile(data.split_path(split)).open()
    n = file.n_samples
    start, stop = data.index_range.get(split) or data.default_range(split, n)
    if not (0 <= start < stop <= n):
        file.close()
        raise DataError(
            f"data.index_range.{split}=[{start}, {stop}) is not a non-empty range within the "
            f"{n} trajectories of {file.path}"
        )
    if data.limit is not None:
        stop = min(stop, start + data.limit)
    return FieldSplit(file, start, stop, split, data.space_stride)


def field_stats(split: FieldSplit, chunk: int = 64) -> tuple[float, float]:
    """Mean and (population) std of every value in the split, streamed `chunk` trajectories at a time.

    Each chunk's mean and sum of squared deviations are computed in float64 and merged
    with Chan's pairwise update, which avoids the cancellation of `E[u^2] - E[u]^2`.
    The result is a pure function of the file's bytes; a different `chunk` changes it
    only by float64 rounding (relative ~1e-15).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    count, mean, m2 = 0, 0.0, 0.0
    for lo in range(split.start, split.stop, chunk):
        block = np.asarray(split.file.tensor[lo : min(lo + chunk, split.stop), :, split.columns], dtype=np.float64)
        n_b = block.size
        mean_b = float(block.mean())
        m2_b = float(np.square(block - mean_b).sum())
        delta = mean_b - mean
        total = count + n_b
        mean += delta * n_b / total
        m2 += m2_b + delta * delta * count * n_b / total
        count = total
    return mean, float(np.sqrt(m2 / count))
