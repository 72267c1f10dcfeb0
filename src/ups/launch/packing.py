"""The onstart script as the create request carries it: packed to fit Vast's field.

The Vast API takes at most 4096 characters of `args` + `onstart` together
(vast-ai/docs create_instance.yaml, x-input-validation), less than the script
`ups.launch.onstart` writes. So the script travels gzip+base64 encoded inside a
tiny `sh` loader that unpacks it into `~/ups_onstart.sh` (where it can also be rerun
by hand) and runs it. Only base64 text appears in the loader.
"""

from __future__ import annotations

import base64
import gzip
import re

from ups.errors import LaunchError

# vast-ai/docs create_instance.yaml x-input-validation: args + args_str + onstart <= 4096
VAST_ONSTART_MAX_CHARS = 4096
# Docker sets HOME for the container's user (root on Vast); the fallback is for an image that unsets it
LOADED_SCRIPT = "${HOME:-/root}/ups_onstart.sh"


def onstart_field(script: str) -> str:
    """What goes in the create request's `onstart` field (the API takes 4096 characters).

    The script travels gzip+base64 encoded and is unpacked into `~/ups_onstart.sh`, where
    it can also be rerun by hand. Only base64 text appears here, so no input of the user's
    takes room twice.
    """
    packed = base64.b64encode(gzip.compress(script.encode(), mtime=0)).decode()
    field = "\n".join([
        "#!/bin/sh",
        "# ups onstart loader: unpacks the real script (gzip+base64) and runs it",
        "set -eu",
        f'echo {packed} | base64 -d | gzip -dc > "{LOADED_SCRIPT}"',
        f'exec bash "{LOADED_SCRIPT}"',
    ]) + "\n"
    if len(field) > VAST_ONSTART_MAX_CHARS:
        raise LaunchError(
            f"packed onstart is {len(field)} characters; Vast accepts {VAST_ONSTART_MAX_CHARS}"
        )
    return field


def script_from_onstart_field(field: str) -> str:
    """The script inside an `onstart_field` loader (for dry runs, tests and debugging)."""
    match = re.search(r"^echo ([A-Za-z0-9+/=]+) \| base64", field, re.MULTILINE)
    if not match:
        raise LaunchError("onstart field: not a ups onstart loader")
    return gzip.decompress(base64.b64decode(match.group(1))).decode()
