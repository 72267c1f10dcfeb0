"""Put a data file in place: fetch it from a URL / fsspec URI with a checksum, or generate it.

A multi-GB download that dies halfway must not leave a file that looks complete, and
a corrupted one must not replace a good one. So bytes stream into a temp file beside
the destination, are hashed on the way, and are renamed into place only after the
checksum verifies (`ups.resume.atomic.atomic_path`). The sha256 of what was fetched is
always printed, so a user can pin it next time.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import fsspec

from ups.config import SPLITS, Config
from ups.data.burgers import ensure_data
from ups.data.pdebench import PDEBenchFile
from ups.errors import DataError, one_line
from ups.resume.atomic import Digest, atomic_path, file_digest

_CHUNK = 1 << 20
_LINE_EVERY = 0.1  # without a TTY, print a progress line every 10% (or every 64 chunks)

Log = Callable[[str], Any]


def _fetch_errors() -> tuple[type[BaseException], ...]:
    """What a failed transfer raises: OS-level errors, a missing fsspec backend
    (ImportError naming the package to install), a bad URI, and aiohttp's own errors."""
    errors: tuple[type[BaseException], ...] = (OSError, ImportError, ValueError)
    try:
        import aiohttp
    except ImportError:  # fsspec's HTTP backend is absent; fsspec itself raises ImportError
        return errors
    return (*errors, aiohttp.ClientError)


@dataclass(frozen=True)
class KnownSource:
    url: str
    md5: str
    filename: str
    note: str


# From PDEBench's own table (pdebench/data_download/pdebench_data_urls.csv, DaRUS
# doi:10.18419/darus-2986). One file holds every trajectory: point all splits'
# `data.files.*` at it and separate them with `data.index_range`.
KNOWN_SOURCES = {
    "burgers": KnownSource(
        url="https://darus.uni-stuttgart.de/api/access/datafile/268190",
        md5="44cb784d5a07aa2b1c864cabdcf625f9",
        filename="1D_Burgers_Sols_Nu0.001.hdf5",
        note="PDEBench 1D Burgers, nu=0.001: tensor [10000, 201, 1024] float32, about 7.7 GB",
    ),
}


_HEX_LENGTH = {"sha256": 64, "md5": 32}


@dataclass(frozen=True)
class Checksum:
    algo: str  # "sha256" or "md5"
    hexdigest: str

    def __post_init__(self) -> None:
        digest = self.hexdigest.strip().lower()
        size = _HEX_LENGTH.get(self.algo)
        if size is None or len(digest) != size or any(c not in "0123456789abcdef" for c in digest):
            raise DataError(f"--{self.algo} must be {size} hex digits, got {self.hexdigest!r}")
        object.__setattr__(self, "hexdigest", digest)

    def __str__(self) -> str:
        return f"{self.algo} {self.hexdigest}"


def fetch(url: str, dest: str | Path, checksum: Optional[Checksum] = None, force: bool = False,
          check: Optional[Callable[[Path], None]] = None, log: Log = print) -> Path:
    """Stream `url` (any fsspec URI or plain path) to `dest`, verified and atomically renamed.

    An existing `dest` that matches `checksum` is kept unless `force`; one that does not
    match is re-fetched. `check(tmp)` may reject the fetched bytes (e.g. a wrong layout)
    before they replace anything. On any failure nothing at `dest` changes and DataError
    is raised.
    """
    dest = Path(dest)
    if dest.exists() and not force and _keep_existing(dest, checksum, log):
        return dest
    algos = ["sha256"] + ([checksum.algo] if checksum and checksum.algo != "sha256" else [])
    log(f"Fetching {url} -> {dest}")
    with atomic_path(dest) as tmp:
        digests = _stream(url, tmp, algos, dest.name, log)
        log(f"sha256 {digests['sha256']}  {dest.name}")
        if checksum and digests[checksum.algo] != checksum.hexdigest:
            raise DataError(
                f"checksum mismatch for {url}: expected {checksum}, got {digests[checksum.algo]}; "
                f"nothing written to {dest}"
            )
        if check is not None:
            check(tmp)
    log(f"Saved {dest}" + (f" ({checksum.algo} verified)" if checksum else ""))
    return dest


def _keep_existing(dest: Path, checksum: Optional[Checksum], log: Log) -> bool:
    if checksum is None:
        log(f"{dest} exists (no checksum given to verify it); use --force to fetch it again")
        return True
    if file_digest(dest, [checksum.algo])[checksum.algo] == checksum.hexdigest:
        log(f"{dest} exists and its {checksum.algo} matches; skipping (use --force to fetch again)")
        return True
    log(f"{dest} exists but its {checksum.algo} does not match; fetching it again")
    return False


def _stream(url: str, tmp: Path, algos: Sequence[str], label: str, log: Log) -> dict[str, Any]:
    digest = Digest(algos)
    # block_size=0 makes HTTP a plain sequential stream (no range requests needed).
    options = {"block_size": 0} if url.startswith(("http://", "https://")) else {}
    progress = _Progress(_size_of(url), label, log)
    try:
        with fsspec.open(url, "rb", **options) as src, open(tmp, "wb") as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                progress.update(len(chunk))
    except _fetch_errors() as e:  # evaluated only on failure: aiohttp stays unimported
        raise DataError(f"cannot fetch {url}: {one_line(e, whole=True, typed=True)}") from e
    finally:
        progress.close()
    return digest.record()


def _size_of(url: str) -> Optional[int]:
    try:
        fs, path = fsspec.core.url_to_fs(url)
        return fs.size(path)
    except Exception:  # the size only feeds the progress display; unknown is fine
        return None


class _Progress:
    """A tqdm bar on a terminal; otherwise a few plain lines that read well in a log file."""

    def __init__(self, total: Optional[int], label: str, log: Log):
        self.total, self.done, self.log, self._next = total, 0, log, 0
        self.bar = None
        if sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=label)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        step = int(self.total * _LINE_EVERY) if self.total else 64 * _CHUNK
        if self.done >= self._next:
            pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            self.log(f"  {self.done / 2**20:.1f} MiB{pct}")
            self._next = self.done + max(step, 1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- the download_data.py entry point -------------------------------------


def resolve_splits(split: str) -> tuple[str, ...]:
    return SPLITS if split == "all" else (split,)


def download_dataset(cfg: Config, dataset: str, split: str, url: Optional[str] = None,
                     checksum: Optional[Checksum] = None, output: Optional[str] = None,
                     generate: bool = False, force: bool = False, log: Log = print) -> list[Path]:
    """Fetch or generate `split` ("all" for every split) of `dataset`; return the paths."""
    if dataset not in KNOWN_SOURCES:
        raise DataError(f"unknown dataset '{dataset}'; known: {', '.join(sorted(KNOWN_SOURCES))}")
    splits = resolve_splits(split)
    if output is not None and len(splits) > 1:
        raise DataError("--output names one file; use it with a single --split")
    data = cfg.data
    if output is not None:
        data = data.model_copy(update={"files": {**data.files, splits[0]: output}})
    if generate or (url is None and data.generate):
        if url is not None:
            raise DataError("--generate and --url exclude each other: generate the data or fetch it")
        data = data.model_copy(update={"generate": True})
        return list(ensure_data(data, splits, log=log, force=force).values())
    if url is None:
        known = KNOWN_SOURCES[dataset]
        url, checksum = known.url, checksum or Checksum("md5", known.md5)
        log(f"Using the known source for '{dataset}': {known.note}")
    dests = {data.split_path(s) for s in splits}
    if len(dests) > 1:
        raise DataError(
            f"one URL is one file, but --split {split} maps to {len(dests)} different paths; "
            "fetch one --split at a time, or point data.files.* at one file and use data.index_range"
        )
    dest = dests.pop()
    return [fetch(url, dest, checksum, force=force, check=_pdebench_check(url, dest), log=log)]


def _pdebench_check(url: str, dest: Path) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        try:
            PDEBenchFile(tmp).open().close()
        except DataError as e:
            reason = str(e).split(": ", 1)[-1]
            raise DataError(f"{url} is not a PDEBench-layout HDF5 file ({reason}); nothing written to {dest}") from e

    return check
