"""The embedded broker starts, answers Kafka requests, and never outlives its owner."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from detector.runtime.embedded import EmbeddedBroker, EmbeddedBrokerError, resolve_broker_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
ON_LINUX = sys.platform.startswith("linux")

try:
    resolve_broker_binary()
except EmbeddedBrokerError as exc:  # pragma: no cover - depends on the install
    if os.environ.get("CI"):
        pytest.fail(f"embedded broker unavailable: {exc} (CI is set: a missing real part fails the run)",
                    pytrace=False)
    pytest.skip(f"embedded broker unavailable: {exc}", allow_module_level=True)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie awaiting its reaper counts as dead)."""
    if ON_LINUX:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        # The state letter follows the parenthesised command name.
        return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _children(pid: int) -> set[int]:
    """Direct child pids of ``pid`` (Linux ``/proc``)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


async def _describe_cluster(bootstrap: str) -> dict:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    try:
        await admin.start()
        return await admin.describe_cluster()
    finally:
        await admin.close()


async def _list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    try:
        await admin.start()
        return await admin.list_topics()
    finally:
        await admin.close()


def _fake_broker(tmp_path: Path, body: str) -> str:
    """An executable standing in for the broker binary, running the shell ``body``."""
    script = tmp_path / "fake-broker"
    script.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


async def test_broker_answers_metadata_at_its_bootstrap() -> None:
    """A started broker answers a metadata request and advertises exactly its loopback bootstrap."""
    async with EmbeddedBroker() as broker:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", broker.bootstrap)
        cluster = await _describe_cluster(broker.bootstrap)
        advertised = [f"{b['host']}:{b['port']}" for b in cluster["brokers"]]
        assert advertised == [broker.bootstrap]
        assert broker.startup_s is not None and broker.startup_s < broker.start_timeout_s


def test_stop_leaves_no_process() -> None:
    """After stop() the broker's pid and process group are gone, and a second stop() is harmless."""
    broker = EmbeddedBroker().start()
    pid = broker.pid
    assert _alive(pid)
    broker.stop()
    assert not _alive(pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not broker.running
    broker.stop()
    with pytest.raises(EmbeddedBrokerError, match="not running"):
        _ = broker.bootstrap


def test_two_brokers_get_two_ports_and_separate_topics() -> None:
    """Two brokers run side by side on different ports, and a topic made on one is absent from the
    other.
    """
    with EmbeddedBroker() as first, EmbeddedBroker() as second:
        assert first.port != second.port
        assert first.create_topics(["only-on-first"], partitions=2) == {"only-on-first": 2}
        assert "only-on-first" in asyncio.run(_list_topics(first.bootstrap))
        assert "only-on-first" not in asyncio.run(_list_topics(second.bootstrap))


def test_context_manager_stops_broker_when_body_raises() -> None:
    """An exception inside the with-block propagates and the broker is stopped anyway."""
    with pytest.raises(ZeroDivisionError):
        with EmbeddedBroker() as broker:
            pid = broker.pid
            _ = 1 / 0
    assert not _alive(pid)


@pytest.mark.skipif(not ON_LINUX, reason="reads /proc to find child processes")
def test_port_held_by_another_broker_is_an_error_naming_the_port() -> None:
    """Starting on a port another broker already serves fails with that port named, leaves no
    child, and the first broker keeps serving.
    """
    with EmbeddedBroker() as first:
        children_before = _children(os.getpid())
        with pytest.raises(EmbeddedBrokerError, match=str(first.port)):
            EmbeddedBroker(port=first.port, start_timeout_s=5).start()
        assert _children(os.getpid()) <= children_before
        assert first.create_topics(["still-serving"]) == {"still-serving": 1}


def test_bound_port_failure_reports_broker_output() -> None:
    """A port bound by a plain socket makes the broker exit, and the error carries its AddrInUse
    output.
    """
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(EmbeddedBrokerError, match="AddrInUse"):
            EmbeddedBroker(port=port, start_timeout_s=5).start()


def test_silent_broker_times_out_with_output_tail_and_is_killed(tmp_path: Path) -> None:
    """A broker that never answers fails after start_timeout_s with its stderr tail, and its
    process is gone.
    """
    pid_file = tmp_path / "pid"
    binary = _fake_broker(
        tmp_path,
        f"""
        echo $$ > {pid_file}
        echo "storage unreachable: permission denied" >&2
        exec sleep 30
        """,
    )
    started = time.monotonic()
    with pytest.raises(EmbeddedBrokerError, match="storage unreachable: permission denied") as info:
        EmbeddedBroker(start_timeout_s=0.5, binary=binary).start()
    assert time.monotonic() - started < 5
    assert "start_timeout_s=0.5" in str(info.value)
    assert _wait_dead(int(pid_file.read_text()), timeout_s=2)


def test_broker_that_exits_early_reports_exit_code(tmp_path: Path) -> None:
    """A broker that exits before answering fails fast with its exit code and output, without
    waiting out the timeout.
    """
    binary = _fake_broker(tmp_path, 'echo "unsupported storage url" >&2\nexit 3\n')
    started = time.monotonic()
    with pytest.raises(EmbeddedBrokerError, match=r"code 3[\s\S]*unsupported storage url"):
        EmbeddedBroker(start_timeout_s=10, binary=binary).start()
    assert time.monotonic() - started < 5


@pytest.mark.skipif(not ON_LINUX, reason="PR_SET_PDEATHSIG is Linux-only")
def test_broker_dies_when_its_parent_is_killed() -> None:
    """SIGKILL of the owning process (no cleanup runs) still takes the broker down."""
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from detector.runtime.embedded import EmbeddedBroker\n"
            "broker = EmbeddedBroker().start()\n"
            "print(broker.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        broker_pid = int(owner.stdout.readline())
        assert _alive(broker_pid)
    finally:
        owner.kill()
        owner.wait()
    assert _wait_dead(broker_pid, timeout_s=5)


@pytest.mark.skipif(not ON_LINUX, reason="reads /proc to find the broker under the CLI")
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_cli_prints_bootstrap_and_stops_broker_on_signal(stop_signal: signal.Signals) -> None:
    """`python -m detector.runtime.embedded` prints a reachable bootstrap first and, on SIGTERM or Ctrl-C,
    exits 0 with its broker gone.
    """
    cli = subprocess.Popen(
        [sys.executable, "-m", "detector.runtime.embedded", "--topic", "cli-topic", "--partitions", "3"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        bootstrap = cli.stdout.readline().strip()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", bootstrap), cli.stderr.read() if not bootstrap else bootstrap
        (broker_pid,) = _children(cli.pid)
        assert "cli-topic" in asyncio.run(_list_topics(bootstrap))
        cli.send_signal(stop_signal)
        assert cli.wait(timeout=10) == 0
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert not _alive(broker_pid)
