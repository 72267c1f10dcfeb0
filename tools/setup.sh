#!/usr/bin/env bash
# Create .venv (once) and install ups into it. Idempotent; used by quickstart.sh and test.sh.
#   UPS_PYTHON      interpreter to build the venv with (default: python3.11, else python3)
#   UPS_TORCH_SPEC  torch requirement installed first (default: torch==2.13.0, a CPU build;
#                   set e.g. "torch" on a GPU machine to take your platform's default build)
#   UPS_EXTRAS      extras to install (default: none; test.sh uses "dev")
set -euo pipefail
cd "$(dirname "$0")/.."
py="${UPS_PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $py"
  "$py" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
if ! python -c "import torch" 2>/dev/null; then
  echo "==> installing ${UPS_TORCH_SPEC:-torch==2.13.0}"
  python -m pip install -q "${UPS_TORCH_SPEC:-torch==2.13.0}"
fi
target="."
[ -n "${UPS_EXTRAS:-}" ] && target=".[${UPS_EXTRAS}]"
# The torch build installed above (or brought by the user: CUDA, ROCm) stays: without this
# pin, pip's resolver may backtrack through the extras' dependencies (s3fs, aiobotocore)
# and replace it with another release that also satisfies "torch>=2.3,<3".
torch_pin="$(mktemp)"
trap 'rm -f "$torch_pin"' EXIT
python -c "import torch; print('torch==' + torch.__version__)" > "$torch_pin"
echo "==> installing ups ($target), keeping $(cat "$torch_pin")"
python -m pip install -q -e "$target" -c "$torch_pin"
