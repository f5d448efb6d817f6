"""The system-package installers `make test` runs (scripts/install-*.sh) share one apt-get step
(scripts/apt-install.sh): run here with a stand-in apt-get on a PATH that has no Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


def _bin(tmp_path: Path, *, apt: bool = True, root: bool = True) -> tuple[Path, Path]:
    """A PATH folder with only what the scripts call besides bash builtins, and the apt-get call log."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("dirname", "env"):
        os.symlink(shutil.which(tool), fake / tool)
    calls = tmp_path / "apt-calls"
    (fake / "id").write_text(f"#!/bin/sh\necho {0 if root else 1000}\n")
    if apt:
        (fake / "apt-get").write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> "{calls}"\n')
    for f in fake.iterdir():
        if not f.is_symlink():
            f.chmod(0o755)
    return fake, calls


def _run(script: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(SCRIPTS / script)], capture_output=True, text=True,
                          timeout=30, env={"PATH": str(path), "HOME": str(path)})


def test_both_installers_source_the_shared_apt_step():
    for script in ("install-chromium.sh", "install-alertmanager.sh"):
        text = (SCRIPTS / script).read_text()
        assert 'source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"' in text, script
        code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        assert not [line for line in code if "apt-get" in line], f"{script} repeats the apt-get step"


def test_a_missing_chromium_is_installed_through_apt_get(tmp_path):
    """update, then a quiet install of just the package, non-interactive; the script then checks the result."""
    fake, calls = _bin(tmp_path)
    done = _run("install-chromium.sh", fake)
    assert calls.read_text().splitlines() == [
        "noninteractive update -qq", "noninteractive install -y -qq --no-install-recommends chromium"]
    assert done.returncode == 1 and "chromium installed but not on PATH" in done.stderr  # the stand-in installs nothing


@pytest.mark.parametrize("apt, root, says", [
    (False, True, "install-chromium: apt-get not found; install Chromium (or Chrome)"),
    (True, False, "install-chromium: needs root to run apt-get; run as root or install chromium"),
])
def test_without_apt_get_or_root_it_says_what_to_install(tmp_path, apt, root, says):
    fake, calls = _bin(tmp_path, apt=apt, root=root)
    done = _run("install-chromium.sh", fake)
    assert done.returncode == 1 and says in done.stderr
    assert not calls.exists()
