"""`detector run` at start and stop: no broker, a taken HTTP port, Ctrl-C and SIGTERM at any moment.

Each failure the user must fix is one line on stderr and exit 1, never a
traceback; a stop request ends the process within seconds whatever it is
waiting for, and says what was done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from realparts import missing
from sidecar import SidecarProcess, pipeline_for_test, produce_scenario, scenario_events, write_pipeline

from detector.runtime.embedded import _free_loopback_port

NOISE = ("Traceback", "Task was destroyed but it is pending", "Unclosed", "was never awaited")


def _pipeline(tmp_path, prefix: str, **kafka):
    p = pipeline_for_test(prefix, 600.0)
    p = dataclasses.replace(p, kafka=dataclasses.replace(p.kafka, **kafka))
    return write_pipeline(tmp_path, p), p


def _run(args: list[str], timeout_s: float) -> tuple[int, str, float]:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "detector.cli", "run", *args], capture_output=True, text=True,
                       timeout=timeout_s, env={**os.environ, "DETECTOR_LOG_LEVEL": "info"})
    return r.returncode, r.stderr, time.monotonic() - t0


def _clean(text: str) -> None:
    for bad in NOISE:
        assert bad not in text, f"{bad!r} in output:\n{text[-3000:]}"


def test_run_without_a_broker_retries_then_exits_1_naming_the_address(tmp_path, topic_prefix):
    """No broker on the address: retries are logged, then one line names the address and the setting; exit 1."""
    path, _ = _pipeline(tmp_path, topic_prefix, connect_timeout_s=3.0)
    port = _free_loopback_port()
    code, err, took_s = _run(["--bootstrap-servers", f"127.0.0.1:{port}", "--pipeline", str(path)], 60)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"detector: no Kafka broker answered at 127.0.0.1:{port} within "
                           "kafka.connect_timeout_s=3 s"), last
    assert '"broker not answering, retrying"' in err
    assert took_s < 30
    _clean(err)


def test_run_with_the_http_port_taken_exits_1_with_one_line(tmp_path, topic_prefix):
    """A taken /metrics port is one line naming it and what to do; exit 1, before any broker is contacted."""
    path, _ = _pipeline(tmp_path, topic_prefix)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, err, _ = _run(["--bootstrap-servers", "127.0.0.1:1", "--pipeline", str(path),
                             "--http-port", str(port)], 60)
    assert code == 1
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("{")]
    assert lines == [f"detector: cannot serve /healthz /readyz /metrics on 127.0.0.1:{port}: address already in "
                     "use; pass --http-port with a free port (0 picks one, -1 turns it off) or set kafka.http_port"]
    _clean(err)


def test_ctrl_c_while_no_broker_answers_stops_at_once(tmp_path, topic_prefix):
    """Ctrl-C (SIGINT to the process group) during the start-up retries: exit 0 within seconds, no traceback."""
    path, _ = _pipeline(tmp_path, topic_prefix, connect_timeout_s=120.0)
    det = SidecarProcess(f"127.0.0.1:{_free_loopback_port()}", path, tmp_path / "d.log", own_group=True)
    try:
        det.wait_for_log("broker not answering, retrying", 30)
        t0 = time.monotonic()
        os.killpg(det.proc.pid, signal.SIGINT)
        assert det.proc.wait(10) == 0
        assert time.monotonic() - t0 < 5
        _clean(det.log_path.read_text())
    finally:
        det.close()


@pytest.fixture
def running(tmp_path, kafka_bootstrap, topic_prefix):
    truth, _services, sc = scenario_events("config_fault", tmp_path / "events.jsonl", rate_scale=0.5)
    path, pipeline = _pipeline(tmp_path, topic_prefix)
    det = SidecarProcess(kafka_bootstrap, path, tmp_path / "d.log", own_group=True)
    det.wait_for_log("partition started cold", 30)

    def stream_and(signal_at_s: list[float]) -> tuple[int, float]:
        """Stream the scenario paced; send SIGINT to the process group at each of `signal_at_s`;
        return the exit code and the seconds from the first signal to the exit."""
        async def go():
            task = asyncio.create_task(produce_scenario(sc, kafka_bootstrap, pipeline, speed=150))
            t0 = time.monotonic()
            for at in signal_at_s:
                await asyncio.sleep(max(0.0, at - (time.monotonic() - t0)))
                os.killpg(det.proc.pid, signal.SIGINT)
            code = await asyncio.to_thread(det.proc.wait, 30)
            took_s = time.monotonic() - t0 - signal_at_s[0]
            await task
            return code, took_s
        return asyncio.run(go())

    yield det, stream_and
    det.close()


def _stopped(det: SidecarProcess) -> dict:
    return next(r for r in det.log_lines() if r.get("event") == "stopped")


@pytest.mark.kafka
def test_ctrl_c_mid_stream_checkpoints_and_says_what_was_done(running):
    """One Ctrl-C mid-stream: final checkpoint, exit 0 within a few seconds, a summary of the work."""
    det, stream_and = running
    code, took_s = stream_and([3.0])
    assert code == 0
    assert took_s < 8, took_s
    done = _stopped(det)
    assert done["final_checkpoint"] == "written" and done["events"] > 0 and done["checkpoints"] > 0
    last = det.log_path.read_text().strip().splitlines()[-1]
    assert re.fullmatch(r"detector: stopped after \d+ s: [\d,]+ events read \(\d+ to the dead-letter topic\), "
                        r"\d+ anomalies and \d+ verdicts produced, \d+ checkpoints; final checkpoint written", last), last
    _clean(det.log_path.read_text())


@pytest.fixture
def frozen(tmp_path, topic_prefix):
    """A sidecar on its own embedded broker, which is frozen (SIGSTOP) after the first events were read;
    yields (sidecar, pipeline); the broker is resumed and stopped afterwards."""
    from detector.runtime.embedded import EmbeddedBroker, EmbeddedBrokerError, resolve_broker_binary

    try:
        resolve_broker_binary()
    except EmbeddedBrokerError as exc:
        missing(f"this test freezes its own embedded broker: {exc}")
    truth, _services, sc = scenario_events("config_fault", tmp_path / "events.jsonl", rate_scale=0.5)
    path, pipeline = _pipeline(tmp_path, topic_prefix, shutdown_timeout_s=5.0)  # the default
    with EmbeddedBroker() as broker:
        det = SidecarProcess(broker.bootstrap, path, tmp_path / "d.log", own_group=True)
        try:
            det.wait_for_log("partition started cold", 30)
            asyncio.run(produce_scenario(sc, broker.bootstrap, pipeline))
            det.wait_until("events read", lambda: det.metric("detector_events_in_total") > 0, 60)
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                det.wait_for_log("broker unreachable", 20)
                yield det
            finally:
                os.kill(broker.pid, signal.SIGCONT)
        finally:
            det.close()


@pytest.mark.kafka
@pytest.mark.slow
def test_sigterm_while_the_broker_is_frozen_exits_within_the_shutdown_budget(frozen):
    """SIGTERM while the broker does not answer: no final checkpoint is possible; exit 0 within
    kafka.shutdown_timeout_s (5 s) plus a second or two, saying the checkpoint was not written."""
    code, took_s = frozen.terminate(20)
    assert code == 0 and took_s < 5.0 + 3, took_s
    assert _stopped(frozen)["final_checkpoint"] == "timed out"
    _clean(frozen.log_path.read_text())


@pytest.mark.kafka
@pytest.mark.slow
def test_a_second_ctrl_c_cuts_a_hanging_final_checkpoint_short(frozen):
    """Ctrl-C while the broker is frozen starts a final checkpoint that cannot finish (it would give up
    after about 4 s); a second Ctrl-C to the whole process group ends it at once: exit 130, the
    checkpoint reported as skipped."""
    os.killpg(frozen.proc.pid, signal.SIGINT)
    frozen.wait_for_log("stopping: final checkpoint and commit", 10)
    t0 = time.monotonic()
    os.killpg(frozen.proc.pid, signal.SIGINT)
    assert frozen.proc.wait(10) == 130
    assert time.monotonic() - t0 < 1.5
    assert _stopped(frozen)["final_checkpoint"] == "skipped (stopped again)"
    _clean(frozen.log_path.read_text())


async def test_a_stop_interrupts_the_main_loops_wait_for_acknowledgements_and_keeps_them_pending():
    """A periodic checkpoint waits for the acknowledgement of every record produced so far; on a frozen
    broker that wait lasts kafka.op_timeout_s (10 s). A stop request ends it at once (`Stopped`), the
    record's delivery future is left alone and the record stays pending for the final checkpoint;
    after the stop, a broker operation of the main loop is not even attempted."""
    from detector.config import load_pipeline
    from detector.runtime.app import Sidecar
    from detector.runtime.failures import Stopped

    sidecar = Sidecar(load_pipeline(), "127.0.0.1:1", http_port=-1)
    assert sidecar.k.op_timeout_s >= 5
    delivery = asyncio.get_running_loop().create_future()  # never acknowledged: a frozen broker
    msg = ("alerts", b"{}", b"svc", None)
    sidecar.out.unacked = [(delivery, msg)]
    drain = asyncio.create_task(sidecar.out.drain())
    await asyncio.sleep(0.2)
    assert not drain.done()
    t0 = time.monotonic()
    sidecar.stopping.set()
    with pytest.raises(Stopped):
        await asyncio.wait_for(drain, 3)
    assert time.monotonic() - t0 < 1.0
    assert not delivery.done() and sidecar.out.unacked == [(delivery, msg)]

    attempts = []

    async def op():
        attempts.append(1)

    with pytest.raises(Stopped):
        await sidecar._retry("produce", op)
    assert attempts == []
    delivery.cancel()
