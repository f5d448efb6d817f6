"""Headless Chromium for tests that look at pages the way a browser does (Debian's `chromium`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from realparts import missing

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def binary() -> str:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    missing("headless Chromium is not installed (Debian: apt-get install chromium; `make test` installs it)")
    raise AssertionError("unreachable")


def _run(args: list[str], profile: Path, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    # --no-sandbox: the tests may run as root in a container, where Chromium's sandbox refuses to start.
    cmd = [binary(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)


def dump_dom(url: str, profile: Path) -> str:
    """The DOM after the page loaded and ran (serialised by Chromium)."""
    run = _run(["--dump-dom", url], profile)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def screenshot(url: str, out: Path, profile: Path, size: str = "1100,1600") -> Path:
    run = _run([f"--window-size={size}", f"--screenshot={out}", url], profile)
    assert run.returncode == 0 and out.exists(), run.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    return out
