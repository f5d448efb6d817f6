"""Fixtures of the sink tests: the recording server, and a rollback command that logs its runs."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


from recorder import Recorder, recording_server


@pytest.fixture
def server() -> Iterator[Recorder]:
    with recording_server() as rec:
        yield rec


RECORDER_SCRIPT = """
import json, sys, pathlib
pathlib.Path(sys.argv[1]).open("a").write(json.dumps(sys.argv[2:]) + "\\n")
print("rolled back", *sys.argv[2:])
"""


@pytest.fixture
def rollback_cmd(tmp_path: Path) -> tuple[str, Path]:
    """A command template that appends its arguments to a log file, and that file."""
    script = tmp_path / "undo.py"
    script.write_text(RECORDER_SCRIPT)
    log_file = tmp_path / "runs.jsonl"
    template = (f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(str(log_file))} "
                "deployment/{service} --to-revision-of={deploy_id} {version}")
    return template, log_file


