#!/usr/bin/env bash
# Install Alertmanager from the distribution (Debian package prometheus-alertmanager)
# when it is missing, so the integration test in tests/test_alertmanager.py can run.
# Idempotent: does nothing when the binary is already there. Needs root (or sudo)
# and apt-get; on other systems it says what to install and exits non-zero.
set -euo pipefail

BINARY=/usr/bin/prometheus-alertmanager

if [ -x "$BINARY" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-alertmanager: apt-get not found; install Alertmanager so that $BINARY exists" \
         "(or the Alertmanager test is skipped)" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-alertmanager: needs root to run apt-get; run as root or install prometheus-alertmanager" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: the binary is all the test needs, not the web UI extras.
$SUDO apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null

# The package starts a system service on installation where an init system runs;
# the test starts its own instance on a free loopback port, so that one is not needed.
if [ ! -x "$BINARY" ]; then
    echo "install-alertmanager: prometheus-alertmanager installed but $BINARY is missing" >&2
    exit 1
fi
