#!/usr/bin/env bash
# Set up and run the test suite (what CI runs). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
UPS_EXTRAS=dev bash tools/setup.sh
if [ -f tools/ensure_chromium.sh ]; then
  bash tools/ensure_chromium.sh || echo "warning: chromium could not be installed; the browser test will say so"
fi
. .venv/bin/activate
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
