#!/usr/bin/env bash
# Install Alertmanager from the distribution (Debian package prometheus-alertmanager)
# when it is missing, so the integration tests in tests/sinks/test_alertmanager.py can run.
# Idempotent: does nothing when the binary is already there. Needs root (or sudo) and
# apt-get (scripts/apt-install.sh); on other systems it says what to install and exits non-zero.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"

BINARY=/usr/bin/prometheus-alertmanager

if [ -x "$BINARY" ]; then
    exit 0
fi

apt_install install-alertmanager prometheus-alertmanager \
    "install Alertmanager so that $BINARY exists (or the Alertmanager tests are skipped)"

# The package starts a system service on installation where an init system runs;
# the test starts its own instance on a free loopback port, so that one is not needed.
if [ ! -x "$BINARY" ]; then
    echo "install-alertmanager: prometheus-alertmanager installed but $BINARY is missing" >&2
    exit 1
fi
