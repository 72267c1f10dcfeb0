"""The one helper per job every caller shares: digest, error line, status parser, URI front door."""

import hashlib
import io
import json

import pytest

from ups.commands.common import run_main
from ups.commands.status import main as status_main
from ups.errors import RemoteError, StatusFileError, error_line, one_line
from ups.remote.download import download_checkpoint
from ups.remote.store import open_store
from ups.resume.atomic import Digest, bytes_digest, file_digest, stream_digest
from ups.resume.layout import STATUS_FILE
from ups.resume.tracker import parse_status, read_status_file
from ups.status.rundir import RunDir


def test_every_digest_is_the_same_sha256_and_size_and_extra_algorithms_ride_along(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    want = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert file_digest(tmp_path / "f") == stream_digest(io.BytesIO(data)) == bytes_digest(data) == want
    both = file_digest(tmp_path / "f", ["md5"])
    assert both == {**want, "md5": hashlib.md5(data).hexdigest()}
    d = Digest(["sha256"])  # asking for sha256 again changes nothing
    d.update(data[:7])
    d.update(data[7:])
    assert d.record() == want


def test_one_line_takes_the_first_line_or_all_of_them_and_masks_secrets(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    e = OSError(f"refused\n  key {'k' * 40}\n at https://me:pw@host/x")
    assert one_line(e) == "refused"
    assert one_line(e, typed=True) == "OSError: refused"
    assert one_line(e, whole=True) == "refused key *** at https://me:***@host/x"
    assert one_line(e, whole=True, limit=12) == "refused key…"
    assert one_line(RemoteError("gone"), typed=True) == "gone"  # ours is written for the reader
    assert one_line(ValueError()) == "ValueError" and one_line("  ") == ""
    text, _ = error_line(RuntimeError(f"boom {'k' * 40}"))
    assert "k" * 40 not in text and "boom ***" in text


def test_the_status_parser_reads_bytes_and_names_where_they_came_from(tmp_path):
    with pytest.raises(StatusFileError, match=r"s3://b/r/stage_status.json is corrupt .*--rebuild s3://b/r"):
        parse_status(b"{", "s3://b/r/stage_status.json", "s3://b/r")
    path = tmp_path / STATUS_FILE
    path.write_text(json.dumps({"schema_version": 1, "stages": {}}))
    assert read_status_file(path) == parse_status(path.read_bytes(), str(path), str(tmp_path))


def test_a_corrupt_remote_status_is_refused_without_a_temp_file(tmp_path):
    remote, dest = tmp_path / "remote", tmp_path / "dest"
    remote.mkdir()
    (remote / STATUS_FILE).write_text("{")
    with pytest.raises(RemoteError, match="is unusable: .*is corrupt"):
        download_checkpoint(open_store(f"file://{remote}"), dest, log=lambda _: None)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("uri", ["s3://AKIA:secret@bucket/run1", "file://me:pw@host/tmp/run"])
def test_status_opens_a_uri_through_the_front_door_that_refuses_credentials(uri, capsys):
    with pytest.raises(RemoteError, match="no credentials in the URI"):
        RunDir(uri)
    assert run_main(status_main, [uri]) == 2
    err = capsys.readouterr().err
    assert "no credentials in the URI" in err and "secret" not in err and "pw" not in err
