"""Errors a user can act on: one line each, no traceback.

`UsageError` is a mistake in how the command was called (a missing input, an
output folder that does not exist, a bad number): exit code 2. `RuntimeFailure`
is something that went wrong while running (no broker answered, a port is
taken): exit code 1. The message names the thing and what to do about it.
"""

from __future__ import annotations


class UsageError(Exception):
    exit_code = 2


class RuntimeFailure(Exception):
    exit_code = 1
