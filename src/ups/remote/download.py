"""Bring a remote copy into a checkpoint directory, trusting nothing that did not verify.

Files land where training looks for them (the checkpoint directory itself,
`state/<stage>/` for resumable states). Each is written to a temp file beside
its target, re-hashed against the digest the downloaded status records, and
only then renamed into place; a truncated or corrupt copy is fetched again. A
file that still does not verify is never vouched for: the status written
locally marks its completed stage `failed` (or makes an unfinished stage start
over), so `--auto-resume` reruns it and says why. The status is written last.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from ups.errors import RemoteError, StatusFileError, one_line
from ups.resume.atomic import atomic_path, atomic_write_bytes
from ups.resume.layout import METADATA_FILE, METRICS_FILE, STATE_DIR, STATUS_FILE
from ups.resume.tracker import parse_status, read_status_file
from ups.remote.snapshot import (
    NamedFile, encode_status, fall_back_to_previous_state, is_remote_ahead, named_files, previous_state_file,
    without_unverified,
)
from ups.remote.store import NoRemoteCheckpoint, RemoteReader, RemoteStore, check_file

RETRIES = 3
SIDE_FILES = (METADATA_FILE, METRICS_FILE)


class _Unverified(Exception):
    pass


@dataclass
class DownloadReport:
    source: str
    downloaded: list[Path] = field(default_factory=list)  # files written (fetched and verified)
    kept: list[str] = field(default_factory=list)  # already present locally with the right digest
    unverified: list[str] = field(default_factory=list)  # named by the remote, never verified
    replaced_local: bool = True  # False: local progress was as far along; nothing was written
    seconds: float = 0.0
    bytes: int = 0


def download_checkpoint(
    store: RemoteStore, dest: Path, *, force: bool = False, only: Optional[Iterable[str]] = None,
    retries: int = RETRIES, log: Callable[[str], Any] = print, reader: Optional[RemoteReader] = None,
) -> DownloadReport:
    """Copy the store's latest snapshot into `dest`; see the module docstring for the rules.

    `only` restricts the data files fetched (the status still names the rest; their
    completed stages are then not vouched for). Without `force`, files already
    present with the recorded digest are kept, and a local status that is at least
    as far along as the remote one is left alone. The caller holds the directory lock.
    """
    started = time.perf_counter()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    reader = reader or store.open_reader()
    report = DownloadReport(source=store.description)
    status = _remote_status(reader, dest, store.description)
    if not force and not _should_replace(dest, status):
        report.replaced_local = False
        log(f"Local progress in {dest} is at least as far along as {store.description}; keeping it "
            "(force=True replaces it)")
        return report
    wanted = set(only) if only is not None else None
    failed: list[NamedFile] = []
    for f in named_files(status):
        if wanted is not None and f.name not in wanted:
            failed.append(f)
            continue
        if _fetch_verified(reader, f, dest, force, retries, report, log):
            continue
        previous = previous_state_file(status, f.stage) if f.name.startswith(f"{STATE_DIR}/") else None
        if previous is not None and _fetch_verified(reader, previous, dest, force, retries, report, log):
            log(f"  {f.stage} resumes from its previous saved state {previous.name} instead")
            status = fall_back_to_previous_state(status, f.stage)
            continue
        failed.append(f)
        report.unverified.append(f.name)
    _fetch_side_files(reader, dest, report)
    if failed:
        status = without_unverified(status, failed, "was not downloaded and verified from the remote")
    atomic_write_bytes(dest / STATUS_FILE, encode_status(status))  # last
    report.seconds = time.perf_counter() - started
    return report


def _remote_status(reader: RemoteReader, dest: Path, source: str) -> dict[str, Any]:
    data = reader.read_bytes(STATUS_FILE)
    if data is None:
        raise NoRemoteCheckpoint(f"{source} holds no checkpoint ({STATUS_FILE} not found)")
    try:
        return parse_status(data, f"{source}: {STATUS_FILE}", str(dest))
    except StatusFileError as e:
        raise RemoteError(f"the {STATUS_FILE} at {source} is unusable: {e}") from e


def _should_replace(dest: Path, remote: dict[str, Any]) -> bool:
    path = dest / STATUS_FILE
    if not path.exists():
        return True
    try:
        local = read_status_file(path)
    except StatusFileError:
        return True  # a corrupt local status vouches for nothing
    return is_remote_ahead(local, remote)


def _fetch_verified(reader: RemoteReader, f: NamedFile, dest: Path, force: bool, retries: int,
                    report: DownloadReport, log: Callable[[str], Any]) -> bool:
    """Fetch `f` until it verifies (up to `retries` times); True once it is in place."""
    target = dest / f.name
    if not force and target.is_file() and check_file(target, f) is None:
        report.kept.append(f.name)
        return True
    for attempt in range(1, retries + 1):
        try:
            with atomic_path(target) as tmp:
                reader.fetch(f.name, tmp)
                problem = check_file(tmp, f)
                if problem:
                    raise _Unverified(problem)
        except (_Unverified, RemoteError) as e:
            log(f"  download of {f.name} failed (attempt {attempt}/{retries}): {one_line(e, typed=True)}")
            time.sleep(min(0.1 * attempt, 1.0))
            continue
        report.downloaded.append(target)
        report.bytes += f.size
        return True
    log(f"⚠️  {f.name} did not verify after {retries} attempts; its stage will be rerun")
    return False


def _fetch_side_files(reader: RemoteReader, dest: Path, report: DownloadReport) -> None:
    """metadata.json (the W&B run id, eval results) and the metrics log: useful, not vouched for."""
    for name in SIDE_FILES:
        data = reader.read_bytes(name)
        if data is None:
            continue
        if name == METADATA_FILE:
            data = _merged_metadata(dest, data)
        atomic_write_bytes(dest / name, data)
        report.downloaded.append(dest / name)


def _merged_metadata(dest: Path, data: bytes) -> bytes:
    """The remote's metadata over the local one; a run id that is not valid is dropped."""
    from ups.remote.wandb_run import validate_run_id

    try:
        remote = json.loads(data)
        assert isinstance(remote, dict)
    except (ValueError, AssertionError):
        return (dest / METADATA_FILE).read_bytes() if (dest / METADATA_FILE).exists() else b"{}\n"
    run_id = (remote.get("training_wandb") or {}).get("id")
    if run_id is not None:
        validate_run_id(run_id, f"{METADATA_FILE} training_wandb.id from the remote")
    local = {}
    if (dest / METADATA_FILE).exists():
        try:
            local = json.loads((dest / METADATA_FILE).read_text())
        except ValueError:
            local = {}
    return (json.dumps({**local, **remote}, indent=2) + "\n").encode()


def describe_download(report: DownloadReport, dest: Path) -> str:
    """What a download did, as the trainer and `CheckpointManager` print it."""
    if not report.replaced_local:
        return f"Kept the local checkpoints in {dest} (as far along as {report.source})"
    mb = report.bytes / 1e6
    line = (f"✓ Downloaded {len(report.downloaded)} file(s) ({mb:.2f} MB, {report.seconds:.1f}s) from "
            f"{report.source} into {dest}, verified against the recorded sha256")
    if report.kept:
        line += f"; {len(report.kept)} already present and verified"
    if report.unverified:
        line += f"\n⚠️  did not verify, their stages will be rerun: {', '.join(report.unverified)}"
    return line
