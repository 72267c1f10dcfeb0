"""How an fsspec remote says "no", told apart from "nothing there", and the checks made before training.

s3fs (checked against moto's S3 server on loopback) maps S3's answers onto Python's:
`NoSuchBucket` and `NoSuchKey` become FileNotFoundError, `AccessDenied` /
`InvalidAccessKeyId` / `SignatureDoesNotMatch` (403) PermissionError, and missing
credentials stay botocore's `NoCredentialsError` (s3fs/core.py `translate_boto_error`).
Only a FileNotFoundError is a definite "not there". fsspec's own `exists()` answers
False for *any* exception (fsspec/spec.py `AbstractFileSystem.exists`: a bare
`except`), so ups never calls it.

A *permanent* failure (no bucket, no rights, no credentials) does not go away by
waiting: it is reported at once, before training (`probe`), and the background sync
does not spend the exit grace period retrying it.
"""

from __future__ import annotations

import contextlib
import posixpath
import secrets
from typing import Any, Optional

from ups.errors import RemoteUnavailableError
from ups.resume.atomic import TEMP_PREFIX

PROBE_PREFIX = TEMP_PREFIX + "probe-"
_NO_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError")


def is_not_found(e: BaseException) -> bool:
    return isinstance(e, FileNotFoundError)


def is_permanent(e: BaseException) -> bool:
    """Waiting will not fix it: missing bucket, refused key, no credentials."""
    seen: Optional[BaseException] = e
    while seen is not None:
        if isinstance(seen, (PermissionError, FileNotFoundError)) or type(seen).__name__ in _NO_CREDENTIALS:
            return True
        seen = seen.__cause__
    return False


def hint(e: BaseException) -> str:
    """What to fix, for the errors a user can fix."""
    text = str(e).lower()
    if type(e).__name__ in _NO_CREDENTIALS:
        return "no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    if isinstance(e, PermissionError):
        return ("the credentials were refused or lack rights on this prefix (need list, get, put and delete); "
                "check the key pair and AWS_ENDPOINT_URL")
    if isinstance(e, FileNotFoundError) and "bucket" in text:
        return "the bucket does not exist: create it, or fix the URI"
    return "check the URI, the endpoint (AWS_ENDPOINT_URL) and the network"


def describe(e: BaseException) -> str:
    from ups.errors import one_line

    return f"{one_line(e, typed=True)} ({hint(e)})"


def probe(fs: Any, root: str, uri: str, local: bool) -> None:
    """Write, read back and delete one small object under `root`: every right a copy needs.

    Raises RemoteUnavailableError naming the answer; nothing has been trained yet.
    """
    path = posixpath.join(root, PROBE_PREFIX + secrets.token_hex(6))
    try:
        if local:  # never on an object store: s3fs `makedirs` would create a missing (misspelled) bucket
            with contextlib.suppress(FileExistsError):
                fs.makedirs(root, exist_ok=True)
        fs.pipe_file(path, b"ups")
        if fs.cat_file(path) != b"ups":
            raise OSError(f"{path} did not read back what was written")
        fs.rm_file(path)
    except Exception as e:  # noqa: BLE001 - every failure here is reported, none retried
        raise RemoteUnavailableError(f"--checkpoint-remote {uri}: cannot keep a copy there: {describe(e)}; "
                                     "nothing was trained") from e


def abort_incomplete_uploads(fs: Any, root: str) -> int:
    """Abort multipart uploads under `root` that a killed uploader left (S3 bills their parts).

    Only for s3fs; other stores discard an unfinished upload themselves. Returns how many.
    The caller holds the checkpoint directory's lock, so no live upload of ours is under `root`.
    """
    if not hasattr(fs, "call_s3"):
        return 0
    bucket, _, prefix = root.strip("/").partition("/")
    prefix = (prefix.rstrip("/") + "/") if prefix else ""
    listing = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix)
    count = 0
    for upload in listing.get("Uploads", []):
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        count += 1
    return count
