"""Ctrl-C in `make demo` at any moment: it stops within seconds, says what was done, writes the
report so far and leaves no broker behind; a second Ctrl-C skips the waiting."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

NOISE = ("Traceback", "Task was destroyed but it is pending", "Unclosed", "was never awaited")


def _start(tmp_path) -> subprocess.Popen:
    # A session of its own: the test signals the whole process group, as a terminal's Ctrl-C does.
    return subprocess.Popen([sys.executable, "-m", "detector.demo", "--scenario", "config_fault", "--speed", "100",
                             "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_line(proc: subprocess.Popen, pattern: str, timeout_s: float, seen: list[str]) -> re.Match:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"no line matching {pattern!r} within {timeout_s} s: {''.join(seen)[-2000:]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _interrupt(proc: subprocess.Popen, times: int, seen: list[str]) -> tuple[int, float, str, str]:
    t0 = time.monotonic()
    for _ in range(times):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.1)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, time.monotonic() - t0, "".join(seen) + out, err


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="the demo always uses its own broker")
@pytest.mark.parametrize("times", [1, 2])
def test_ctrl_c_mid_stream_stops_the_demo_writes_the_report_and_leaves_no_broker(tmp_path, times):
    """Ctrl-C (once, or twice) while events stream: exit 130 within seconds, a summary line, the report so far,
    the broker process gone, and no pending-task or unclosed-client warnings."""
    proc = _start(tmp_path)
    seen: list[str] = []
    try:
        broker_pid = int(_wait_for_line(proc, r"embedded broker on \S+ \(pid (\d+)\)", 120, seen).group(1))
        time.sleep(4)  # streaming, the sidecar busy
        code, took_s, out, err = _interrupt(proc, times, seen)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 130, out[-2000:] + err[-2000:]
    assert took_s < 10, took_s
    assert re.search(r"demo: interrupted: after \d+ s of streaming: about [\d,]+ of [\d,]+ events sent", out), out
    report = (tmp_path / "demo-report.md").read_text()
    assert "**Interrupted after" in report and "| d-cfg-1 | payments |" in report
    assert not _alive(broker_pid)
    for bad in NOISE:
        assert bad not in err, err[-3000:]


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="the demo always uses its own broker")
def test_ctrl_c_before_streaming_starts_stops_at_once(tmp_path):
    """Ctrl-C right after the start (events being written or the broker starting): exit 130 at once, no traceback."""
    proc = _start(tmp_path)
    try:
        # The demo writes its events before it prints its first line; wait for the file to appear.
        deadline = time.monotonic() + 60
        while not (tmp_path / "demo-events.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        code, took_s, out, err = _interrupt(proc, 1, [])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 130, out + err
    assert took_s < 5, took_s
    assert "interrupted" in out
    for bad in NOISE:
        assert bad not in err, err[-3000:]
