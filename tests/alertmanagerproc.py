"""A real Alertmanager for tests: Debian's prometheus-alertmanager on a free loopback port.

``scripts/install-alertmanager.sh`` installs it; ``ALERTMANAGER_BIN`` names
another binary. Clustering is off and the data directory is the test's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from realparts import missing

READY_TIMEOUT_S = 15.0


def require_alertmanager() -> None:
    """Skip (fail in CI) when no Alertmanager binary is installed."""
    if alertmanager_binary() is None:
        missing("Alertmanager is not installed: run scripts/install-alertmanager.sh (Debian package "
                "prometheus-alertmanager) or set ALERTMANAGER_BIN to an alertmanager binary")


def alertmanager_binary() -> str | None:
    explicit = os.environ.get("ALERTMANAGER_BIN")
    if explicit:
        return explicit
    for candidate in ("/usr/bin/prometheus-alertmanager", shutil.which("alertmanager")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_alertmanager(config: str, tmp_path: Path) -> Iterator[str]:
    """Start Alertmanager with `config` on a free loopback port; yield its base URL; stop it."""
    binary = alertmanager_binary()
    assert binary is not None
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(config)
    port = free_port()
    log_file = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={config_file}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                log_text = (tmp_path / "alertmanager.log").read_text()
                pytest.fail(f"alertmanager exited with {proc.returncode}: {log_text}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"alertmanager not ready within {READY_TIMEOUT_S} s: "
                            f"{(tmp_path / 'alertmanager.log').read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log_file.close()


def get_alerts(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as r:
        return json.loads(r.read())
