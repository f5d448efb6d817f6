#!/usr/bin/env bash
# Install headless Chromium from the distribution (Debian package chromium) when it is
# missing, so the page tests (tests/report/test_report.py, tests/report/test_status_page.py)
# can look at the report and the status page the way a browser does. Idempotent: does nothing
# when a Chromium is already on PATH. Needs root (or sudo) and apt-get (scripts/apt-install.sh);
# elsewhere it says what to install and exits non-zero.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"

for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then
        exit 0
    fi
done

apt_install install-chromium chromium \
    "install Chromium (or Chrome) so that 'chromium' is on PATH (or the page tests are skipped)"

if ! command -v chromium >/dev/null 2>&1; then
    echo "install-chromium: chromium installed but not on PATH" >&2
    exit 1
fi
