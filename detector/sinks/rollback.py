"""Rollback hook: on a ``rollback`` verdict, run the configured action once per verdict id.

An early ticket escalated by a rollback rule (an ``anomaly`` whose detail has
``escalates``: the ticket verdict's id, and ``action: "rollback"``) runs the
same action once for that verdict id: the verdict went out as a ticket before
the rollback rule held, and the verdict is never sent twice. Its action record
adds ``escalation_id``; over HTTP the body carries ``escalation`` (the anomaly)
instead of ``verdict``.

The action is either a command template or an HTTP POST:

* ``command``, e.g. ``kubectl rollout undo deployment/{service}``: split with
  ``shlex.split`` first, then each argument is filled in (``{service}``,
  ``{deploy_id}``, ``{version}``, ``{verdict_id}``), and the argument vector is
  executed without a shell. A value such as ``"x; rm -rf /"`` stays one
  argument, never a second command. The command runs in its own process group
  and the whole group is killed when it exceeds ``timeout_s``.
* ``url``: POST ``{"action": "rollback", "verdict_id", "service", "deploy_id",
  "version", "verdict": {...}}`` with header ``Idempotency-Key: <action id>``.

``dry_run`` (the default) runs nothing: the outcome says what would have run.

Once per verdict id, across restarts: the ids handled so far (dry runs
included) are kept in a small JSON state file, written atomically
(``statefile.py``: temporary file, fsync, rename). The id is recorded
*before* the action runs, so the guarantee is at most once: after a crash
mid-action the action is not repeated. That is the safe side for a rollback: ``kubectl rollout undo`` run
twice undoes the undo.

Each handled verdict yields an action record, returned by ``execute`` and
kept for the runtime to publish on the alerts topic (``take_outcomes``)::

    {"type": "action", "id": "act-v-d-981", "action": "rollback",
     "verdict_id": "v-d-981", "service": "checkout", "deploy_id": "d-981", "version": "v43",
     "verdict_ts": 1764140520.0,          # event time of the verdict
     "ts": 1764401234.5,                  # wall clock when the action finished
     "via": "command",                    # or "http"
     "target": "kubectl rollout undo deployment/checkout",   # rendered argv, or the URL's scheme://host
     "outcome": "ok",                     # ok | failed | dry_run | skipped
     "exit_code": 0, "http_status": null, "output_tail": "...", "duration_s": 1.23,
     "error": ""}

``skipped`` means the verdict was older than ``max_verdict_age_s`` (wall
clock minus event time), e.g. a replay of last week's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import string
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from detector.records import Anomaly, Record, Verdict
from detector.sinks.base import QueuedSink
from detector.sinks.describe import record_dict
from detector.sinks.http import HttpClient, check_url, redact_url
from detector.sinks.statefile import write_atomically

PLACEHOLDERS = ("service", "deploy_id", "version", "verdict_id")
OUTPUT_TAIL_CHARS = 2_000
STATE_IDS_MAX = 10_000  # ids remembered; older ones are forgotten first
KILL_GRACE_S = 2.0  # after killing the group, how long to wait for its output pipe to close
STATE_VERSION = 1


class RollbackConfigError(ValueError):
    """The rollback command or state file cannot be used; the message says what to change."""


def action_id(verdict_id: str) -> str:
    return f"act-{verdict_id}"


def encode_action(outcome: dict[str, Any]) -> bytes:
    """Canonical JSON bytes of an action record (sorted keys), like `records.encode` for anomalies and verdicts."""
    return orjson.dumps(outcome, option=orjson.OPT_SORT_KEYS)


def parse_command(template: str) -> list[str]:
    """Split a command template and check its placeholders; RollbackConfigError names what is wrong."""
    try:
        argv = shlex.split(template)
    except ValueError as e:
        raise RollbackConfigError(f"sinks.rollback_command cannot be split into arguments ({e}): {template!r}; "
                                  "check its quotes") from None
    if not argv:
        raise RollbackConfigError("sinks.rollback_command is empty after splitting; give a program and arguments")
    for arg in argv:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
        except ValueError as e:
            raise RollbackConfigError(f"sinks.rollback_command argument {arg!r} is not a valid template ({e}); "
                                      "write literal braces as {{ and }}") from None
        for f in fields:
            if f not in PLACEHOLDERS:
                raise RollbackConfigError(f"sinks.rollback_command uses placeholder {{{f}}} in {arg!r}; known "
                                          f"placeholders: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    return argv


def render_command(argv_template: list[str], verdict: Verdict | Anomaly) -> list[str]:
    values = {"service": verdict.service, "deploy_id": verdict.deploy_id, "version": verdict.version,
              "verdict_id": _verdict_id(verdict)}
    return [arg.format_map(values) for arg in argv_template]


def is_rollback_escalation(record: Record) -> bool:
    """An anomaly escalating an early ticket because a rollback rule held after it."""
    return isinstance(record, Anomaly) and "escalates" in record.detail and record.detail.get("action") == "rollback"


def _verdict_id(record: Verdict | Anomaly) -> str:
    return record.detail["escalates"] if isinstance(record, Anomaly) else record.id


class ExecutedIds:
    """The set of verdict ids already handled, persisted to `path` (None: kept in memory only)."""

    def __init__(self, path: str | Path | None, max_ids: int = STATE_IDS_MAX) -> None:
        self.path = Path(path) if path is not None else None
        self.max_ids = max_ids
        self._ids: dict[str, None] = {}  # insertion-ordered: oldest first
        if self.path is not None and self.path.exists():
            try:
                data = orjson.loads(self.path.read_bytes())
                ids = data["executed"]
                if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                    raise TypeError("executed is not a list of strings")
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as e:
                raise RollbackConfigError(
                    f"rollback state file {self.path} is unreadable ({type(e).__name__}: {e}); restore it, or delete "
                    "it knowing that rollback verdicts seen again (replay, restart) will then run again") from None
            self._ids = dict.fromkeys(ids[-max_ids:])

    def __contains__(self, verdict_id: str) -> bool:
        return verdict_id in self._ids

    def add(self, verdict_id: str) -> None:
        """Record `verdict_id` and persist; raises OSError when the file cannot be written."""
        self._ids[verdict_id] = None
        while len(self._ids) > self.max_ids:
            del self._ids[next(iter(self._ids))]
        if self.path is None:
            return
        write_atomically(self.path, orjson.dumps({"version": STATE_VERSION, "executed": list(self._ids)}))


class RollbackHook(QueuedSink):
    name = "rollback"

    def __init__(self, *, command: str = "", url: str = "", dry_run: bool = True, timeout_s: float = 60.0,
                 state_path: str | Path | None = None, client: HttpClient | None = None, queue_max: int = 1_000,
                 max_verdict_age_s: float | None = None, outcomes_max: int = 1_000,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(queue_max=queue_max)
        if bool(command) == bool(url):
            raise RollbackConfigError("set exactly one of sinks.rollback_command and sinks.rollback_url "
                                      f"(got command={command!r}, url={redact_url(url) if url else ''!r})")
        if timeout_s <= 0:
            raise RollbackConfigError(f"sinks.rollback_timeout_s must be > 0 (got {timeout_s})")
        self.argv_template = parse_command(command) if command else None
        if url:
            check_url(url, "sinks.rollback_url")
        self.url = url
        self.dry_run = dry_run
        self.timeout_s = timeout_s
        self.max_verdict_age_s = max_verdict_age_s
        self.clock = clock
        # Retries of an HTTP action are safe: the receiver deduplicates them by Idempotency-Key.
        self.client = client if client is not None or not url else HttpClient(timeout_s=timeout_s)
        self.executed = ExecutedIds(state_path)
        self._pending: set[str] = set()
        self._outcomes: deque[dict[str, Any]] = deque(maxlen=outcomes_max)

    def items_for(self, record: Record) -> list[Verdict | Anomaly]:
        if not (isinstance(record, Verdict) and record.decision == "rollback") and not is_rollback_escalation(record):
            return []
        vid = _verdict_id(record)  # type: ignore[arg-type]
        if vid in self.executed or vid in self._pending:
            return []
        self._pending.add(vid)
        return [record]  # type: ignore[list-item]

    def take_outcomes(self) -> list[dict[str, Any]]:
        """Action records produced since the last call, oldest first, for the runtime to publish."""
        out = list(self._outcomes)
        self._outcomes.clear()
        return out

    async def deliver(self, verdict: Verdict | Anomaly) -> bool:
        try:
            outcome = await self.execute(verdict)
        finally:
            self._pending.discard(_verdict_id(verdict))
        return outcome is not None and outcome["outcome"] in ("ok", "dry_run", "skipped")

    async def execute(self, verdict: Verdict | Anomaly) -> dict[str, Any] | None:
        """Handle one rollback verdict (or a rollback escalation of an early ticket); None when its
        verdict id was handled before (by this or an earlier process)."""
        if isinstance(verdict, Anomaly):
            if not is_rollback_escalation(verdict):
                raise ValueError(f"rollback hook got anomaly {verdict.id}, which escalates no verdict to a rollback")
        elif verdict.decision != "rollback":
            raise ValueError(f"rollback hook got verdict {verdict.id} with decision {verdict.decision!r}; "
                             "only 'rollback' verdicts run the action")
        vid = _verdict_id(verdict)
        if vid in self.executed:
            return None
        started = time.monotonic()
        if self.argv_template is not None:
            argv = render_command(self.argv_template, verdict)
            via, target = "command", shlex.join(argv)
        else:
            argv, via, target = [], "http", redact_url(self.url)
        result: dict[str, Any] = {"outcome": "failed", "exit_code": None, "http_status": None, "output_tail": "",
                                  "error": ""}
        age_s = self.clock() - verdict.ts
        if self.max_verdict_age_s is not None and age_s > self.max_verdict_age_s:
            result.update(outcome="skipped", error=f"verdict is {age_s:.0f} s old by the wall clock, over "
                                                   f"max_verdict_age_s={self.max_verdict_age_s:g}")
        else:
            try:
                self.executed.add(vid)  # before acting: at most once, see the module docstring
            except OSError as e:
                result["error"] = (f"cannot record verdict {vid} in {self.executed.path} ({e.strerror}); "
                                   "the action was not run; make the state directory writable")
            else:
                if self.dry_run:
                    result["outcome"] = "dry_run"
                elif argv:
                    result.update(await self._run_command(argv))
                else:
                    result.update(await self._post(verdict))
        escalation = {"escalation_id": verdict.id} if isinstance(verdict, Anomaly) else {}
        outcome = {"type": "action", "id": action_id(vid), "action": "rollback", "verdict_id": vid, **escalation,
                   "service": verdict.service, "deploy_id": verdict.deploy_id, "version": verdict.version,
                   "verdict_ts": verdict.ts, "ts": round(self.clock(), 3), "via": via, "target": target,
                   **result, "duration_s": round(time.monotonic() - started, 3)}
        level = self._log.info if outcome["outcome"] in ("ok", "dry_run", "skipped") else self._log.error
        level("rollback_action", **{k: v for k, v in outcome.items() if k not in ("type", "output_tail")},
              output_tail=outcome["output_tail"][-500:])
        self._outcomes.append(outcome)
        return outcome

    async def _run_command(self, argv: list[str]) -> dict[str, Any]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            return {"error": f"cannot run {argv[0]!r}: {e.strerror or e}; check sinks.rollback_command and PATH"}
        tail = bytearray()
        assert proc.stdout is not None
        reader = asyncio.create_task(_read_tail(proc.stdout, tail, OUTPUT_TAIL_CHARS * 4))
        try:
            await asyncio.wait_for(proc.wait(), self.timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group: kubectl's children die with it
            await proc.wait()
            await _settle(reader)
            return {"exit_code": proc.returncode, "output_tail": _tail_text(tail),
                    "error": f"timed out after {self.timeout_s:g} s; the process group was killed "
                             "(raise sinks.rollback_timeout_s if the action needs longer)"}
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            reader.cancel()
            raise
        await _settle(reader)
        ok = proc.returncode == 0
        return {"outcome": "ok" if ok else "failed", "exit_code": proc.returncode, "output_tail": _tail_text(tail),
                "error": "" if ok else f"exit code {proc.returncode}"}

    async def _post(self, verdict: Verdict | Anomaly) -> dict[str, Any]:
        assert self.client is not None
        vid = _verdict_id(verdict)
        body = {"action": "rollback", "verdict_id": vid, "service": verdict.service,
                "deploy_id": verdict.deploy_id, "version": verdict.version,
                "escalation" if isinstance(verdict, Anomaly) else "verdict": record_dict(verdict)}
        r = await self.client.post_json(self.url, body, headers={"Idempotency-Key": action_id(vid)})
        text = r.body.decode("utf-8", "replace")[-OUTPUT_TAIL_CHARS:]
        return {"outcome": "ok" if r.ok else "failed", "http_status": r.status or None, "output_tail": text,
                "error": r.error[:500]}

    async def aclose(self) -> None:
        if self.client is not None:
            self.client.close()


async def _read_tail(stream: asyncio.StreamReader, tail: bytearray, max_bytes: int) -> None:
    while chunk := await stream.read(65536):
        tail.extend(chunk)
        if len(tail) > max_bytes:
            del tail[:-max_bytes]


async def _settle(reader: asyncio.Task[None]) -> None:
    # A process that left the group (setsid) can keep the pipe open; do not wait for it forever.
    try:
        await asyncio.wait_for(reader, KILL_GRACE_S)
    except TimeoutError:
        pass


def _tail_text(tail: bytearray) -> str:
    return bytes(tail).decode("utf-8", "replace")[-OUTPUT_TAIL_CHARS:]
