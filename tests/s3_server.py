"""moto's S3 server on loopback, the way s3fs tests itself: a real HTTP endpoint speaking the
S3 protocol, in its own process, reached through s3fs/aiobotocore like any object store.

`MotoServer(auth=True)` enforces credentials (moto's `INITIAL_NO_AUTH_ACTION_COUNT=0`,
docs.getmoto.org "IAM-like Access Control"): an unknown access key gets the 403
`InvalidAccessKeyId` real S3 sends. `env()` is what a user sets for a non-AWS endpoint
(docs/checkpoint_resume_guide.md, "Object stores"): `AWS_ENDPOINT_URL` and a key pair.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Optional

# Nothing may leave the machine: no instance-metadata lookups, no shared credential files.
ISOLATED = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_CONFIG_FILE": os.devnull, "AWS_DEFAULT_REGION": "us-east-1"}
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
            "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "FSSPEC_S3_ENDPOINT_URL", "FSSPEC_S3_KEY",
            "FSSPEC_S3_SECRET")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    def __init__(self, auth: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **ISOLATED}
        if auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=2).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto server did not start")
                time.sleep(0.2)

    def env(self, key: Optional[str] = "testing", secret: str = "testing") -> dict[str, str]:
        """The documented setting: the endpoint, a key pair (key=None: no credentials at all)."""
        env = {**ISOLATED, "AWS_ENDPOINT_URL": self.url}
        if key is not None:
            env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
        return env

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.url + "/moto-api/reset", method="POST"), timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
