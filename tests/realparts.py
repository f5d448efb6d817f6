"""Real parts the tests need (a broker, Alertmanager, Chromium): skip locally, fail in CI."""

from __future__ import annotations

import os

import pytest


def missing(reason: str) -> None:
    """A real part a test needs is not here: skip on a workstation, fail in CI (`CI` set),
    where every real part must be installed and nothing may silently skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: a missing real part fails the run)", pytrace=False)
    pytest.skip(reason)
