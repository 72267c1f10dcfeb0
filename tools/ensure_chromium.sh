#!/bin/sh
# Make a headless Chromium available for tests/integration/test_eval_report_browser.py.
#
# Idempotent: does nothing when a chromium binary is already on PATH. Otherwise
# installs Debian's `chromium` package with apt-get (needs root and a reachable
# package mirror). Never fails the caller: if the install is impossible it says why
# and exits 0, and the browser test skips with that reason.
set -u

for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "ensure_chromium: found $(command -v "$name")"
        exit 0
    fi
done

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: no chromium on PATH and no apt-get to install it; the browser test will skip"
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo -n"
else
    SUDO=""
fi

echo "ensure_chromium: installing Debian's chromium package"
if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/tmp/ensure_chromium.log 2>&1 \
   || { $SUDO apt-get update >>/tmp/ensure_chromium.log 2>&1 \
        && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >>/tmp/ensure_chromium.log 2>&1; }; then
    echo "ensure_chromium: installed $(command -v chromium)"
else
    echo "ensure_chromium: apt-get install chromium failed (see /tmp/ensure_chromium.log); the browser test will skip"
fi
exit 0
