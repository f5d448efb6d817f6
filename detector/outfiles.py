"""Output files that appear whole or not at all.

A replay writes its records and dead letters to temporary files in the target
folder and renames them into place only when it succeeds, so a failed run
never truncates the outputs of an earlier one, and never the input.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from detector.errors import UsageError


def check_input(path: str, what: str = "--input") -> None:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {path}: no such file; give a JSONL file of contract events")
    if p.is_dir():
        raise UsageError(f"{what} {path}: is a directory; give a JSONL file of contract events")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{what} {path}: not readable (permission denied)")


def check_output(path: str, what: str, inputs: list[str]) -> None:
    """An output must go to an existing folder and must not be one of the inputs."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{what} {path}: folder {folder} does not exist; create it first")
    if p.is_dir():
        raise UsageError(f"{what} {path}: is a directory; give a file name")
    for src in inputs:
        if Path(src).exists() and p.exists() and os.path.samefile(src, p):
            raise UsageError(f"{what} {path}: is also an input; writing it would destroy the input")


@contextmanager
def atomic_output(path: str) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces `path` only if the block succeeds."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
