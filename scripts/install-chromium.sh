#!/usr/bin/env bash
# Install headless Chromium from the distribution (Debian package chromium) when it is
# missing, so the page tests (tests/test_report.py, tests/test_status_page.py) can look at
# the report and the status page the way a browser does. Idempotent: does nothing when a
# Chromium is already on PATH. Needs root (or sudo) and apt-get; elsewhere it says what to
# install and exits non-zero.
set -euo pipefail

for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then
        exit 0
    fi
done

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: apt-get not found; install Chromium (or Chrome) so that 'chromium' is on PATH" \
         "(or the page tests are skipped)" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-chromium: needs root to run apt-get; run as root or install chromium" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: the headless browser is all the tests need (no fonts packs, no extensions).
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null

if ! command -v chromium >/dev/null 2>&1; then
    echo "install-chromium: chromium installed but not on PATH" >&2
    exit 1
fi
