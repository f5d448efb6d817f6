"""Small JSON state files of the sinks, replaced atomically.

The rollback hook's executed verdict ids and the Alertmanager sink's posted
verdict alerts survive a restart in such a file. A write goes to a temporary
file in the same directory, is fsynced, renamed over the old file, and the
directory is fsynced: after a crash or a power cut the file holds either the
old or the new state, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`; raises OSError when the file cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut only once the directory is synced
    finally:
        os.close(dir_fd)
