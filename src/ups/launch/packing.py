"""The onstart script as the create request carries it: packed to fit Vast's field.

The Vast API takes at most 4096 characters of `args` + `onstart` together
(vast-ai/docs create_instance.yaml, x-input-validation), less than the script
`ups.launch.onstart` writes. So the script travels gzip+base64 encoded inside a
tiny `sh` loader that unpacks it into the workspace (where it can also be rerun by
hand) and runs it. Only base64 text and validated paths appear in the loader.
"""

from __future__ import annotations

import base64
import gzip
import re

from ups.errors import LaunchError
from ups.launch.onstart import DEFAULT_WORKSPACE, STATE_DIR_NAME, shell_assign
from ups.launch.validate import validate_workspace

# vast-ai/docs create_instance.yaml x-input-validation: args + args_str + onstart <= 4096
VAST_ONSTART_MAX_CHARS = 4096


def onstart_field(script: str, workspace: str = DEFAULT_WORKSPACE) -> str:
    """What goes in the create request's `onstart` field (the API takes 4096 characters).

    The script travels gzip+base64 encoded and is unpacked into the workspace, where it
    can also be rerun by hand. Only base64 text and validated paths appear here.
    """
    ws = validate_workspace(workspace).rstrip("/")
    packed = base64.b64encode(gzip.compress(script.encode(), mtime=0)).decode()
    field = "\n".join([
        "#!/bin/sh",
        "# ups onstart loader: unpacks the real script (gzip+base64) and runs it",
        "set -eu",
        shell_assign("D", f"{ws}/{STATE_DIR_NAME}"),
        'mkdir -p "$D"',
        f'echo {packed} | base64 -d | gzip -dc > "$D/onstart.sh"',
        'exec bash "$D/onstart.sh"',
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
