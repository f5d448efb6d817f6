"""The built-in smoke prober against a loopback HTTP server playing production.

The server answers 200 for the stable version and 503 (a configuration error)
for the new one, aimed by the `X-Version` header; one path never answers in
time. The unit tests drive the prober alone; the live test runs `detector run`
on the broker: the prober's results reach the checks topic, the judge rolls
the bad deploy back naming the failing check, a check that fails on the
stable version too is not blamed on its deploy, and a replay of the topics
gives the same verdicts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from sidecar import SidecarProcess, pipeline_for_test, read_topic, verdicts, write_pipeline

from detector.ingest.columns import DeployEvent
from detector.config import parse_pipeline
from detector.records import encode
from detector.replay import replay
from detector.smoke.prober import SmokeProber, public_url
from detector.smoke.settings import Prober

SECRET = "s3cret-token-never-logged"


class _Production(BaseHTTPRequestHandler):
    """/pay/health: 200 for v1, 503 for v2. /cart/health: 503 for everyone. /slow: answers after 1 s
    (and counts how many requests it serves at once)."""

    lock = threading.Lock()
    active = 0
    peak = 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        version = self.headers.get("X-Version", "")
        if self.path.startswith("/slow"):
            cls = type(self)
            with cls.lock:
                cls.active += 1
                cls.peak = max(cls.peak, cls.active)
            time.sleep(1.0)
            with cls.lock:
                cls.active -= 1
            code, body = 200, b"ok"
        elif self.path.startswith("/pay/health"):
            code, body = (200, b"ok") if version != "v2" else (503, b"missing configuration key db.url")
        else:
            code, body = 503, b"upstream connect error"
        try:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the prober gave up on a slow answer (its timeout): nobody is left to send it to

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def production():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Production)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _checks(base: str, **kw) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in kw.items())
    return f"""
[[smoke]]
service = "pay"
name = "pay-health"
url = "{base}/pay/health?token=abc"
headers = {{ X-Version = "{{version}}", Authorization = "Bearer {SECRET}" }}
expect_status = 200
expect_body = "ok"
timeout_s = 1.5
{extra}
[[smoke]]
service = "cart"
name = "cart-health"
url = "{base}/cart/health"
headers = {{ X-Version = "{{version}}" }}
timeout_s = 1.5
{extra}
"""


def _deploy(service: str, ts: float, deploy_id: str = "d-1") -> DeployEvent:
    return DeployEvent(pos=0, ts=ts, service=service, deploy_id=deploy_id, version="v2", previous_version="v1")


async def _probe(smoke: str, deploys, wait_s: float) -> tuple[list[dict], SmokeProber]:
    got: list[dict] = []

    async def publish(key: bytes, value: bytes) -> None:
        got.append(orjson.loads(value))

    prober = SmokeProber(parse_pipeline(smoke).smoke, Prober(max_in_flight=2), publish)
    await prober.start()
    prober.on_deploys(deploys)
    await asyncio.sleep(wait_s)
    await prober.stop()
    return got, prober


def test_each_run_probes_the_new_and_the_stable_version_and_publishes_check_events(production):
    """v2 fails with the server's answer as its reason, v1 passes; events carry version, deploy and duration."""
    smoke = _checks(production, delay_s=0, interval_s=0.3, runs=2)
    got, prober = asyncio.run(_probe(smoke, [_deploy("pay", time.time())], 1.5))
    pay = [e for e in got if e["name"] == "pay-health"]
    assert sorted((e["version"], e["passed"]) for e in pay) == [("v1", True), ("v1", True), ("v2", False),
                                                                 ("v2", False)]
    bad = next(e for e in pay if not e["passed"])
    assert bad["message"].startswith("HTTP 503 from GET ") and "missing configuration key db.url" in bad["message"]
    assert bad["type"] == "check" and bad["deploy_id"] == "d-1" and bad["duration_ms"] >= 0
    assert bad["url"] == production + "/pay/health"  # no query string (it may hold a token)
    assert all(SECRET not in orjson.dumps(e).decode() for e in got)
    assert prober.stats.published == len(got) == 4


def test_a_timeout_counts_as_a_failure_with_its_reason(production):
    """A check that gets no answer within timeout_s is published as failed, saying it timed out."""
    smoke = _checks(production, delay_s=0, runs=1).replace("/pay/health?token=abc", "/slow").replace(
        "timeout_s = 1.5", "timeout_s = 0.3", 1)
    got, _ = asyncio.run(_probe(smoke, [_deploy("pay", time.time())], 1.0))
    slow = [e for e in got if e["name"] == "pay-health"]
    assert slow and all(not e["passed"] for e in slow)
    assert all(e["message"].startswith("timed out after 0.3 s: GET ") for e in slow)
    assert all(e["duration_ms"] < 1500 for e in slow)


def test_deploys_that_are_history_or_seen_before_are_not_probed_again(production):
    """A deploy re-read long after its checks were due, or delivered twice, is not probed (again)."""
    smoke = _checks(production, delay_s=0, interval_s=0.2, runs=1)
    old = _deploy("pay", time.time() - 3600, "d-old")
    fresh = _deploy("pay", time.time(), "d-new")
    got, prober = asyncio.run(_probe(smoke, [old, fresh, fresh], 1.0))
    assert {e["deploy_id"] for e in got} == {"d-new"} and len(got) == 2
    assert prober.stats.skipped_stale == 1


def test_in_flight_requests_are_bounded(production):
    """With max_in_flight = 2, six slow probes reach the server at most two at a time, and all complete."""
    smoke = "".join(f"""
[[smoke]]
service = "pay"
name = "slow-{i}"
url = "{production}/slow"
headers = {{ X-Version = "{{version}}" }}
delay_s = 0
runs = 1
""" for i in range(3))  # 3 checks x (v2 + v1) due at once
    _Production.peak = 0
    got, _ = asyncio.run(_probe(smoke, [_deploy("pay", time.time())], 4.5))
    slow = [e for e in got if e["name"].startswith("slow-")]
    assert len(slow) == 6 and all(e["passed"] for e in slow)
    assert _Production.peak == 2


def test_public_url_drops_credentials_and_query():
    """What is published or logged of a URL holds no user info and no query string."""
    assert public_url("https://user:pw@host:8443/a/b?token=x#f") == "https://host:8443/a/b"


# --- live: detector run on the broker -------------------------------------------------------------

def _requests(service: str, t0: float, t1: float, version_of, rps: float = 5.0) -> list[tuple[str, bytes]]:
    n = int((t1 - t0) * rps)
    return [(service, orjson.dumps({"type": "request", "ts": round(t0 + i / rps, 3), "service": service,
                                    "endpoint": "GET /health", "status": 200, "latency_ms": 12.0,
                                    "version": version_of(t0 + i / rps)})) for i in range(n)]


async def _produce(bootstrap: str, topic: str, messages: list[tuple[str, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await prod.start()
    try:
        for key, value in messages:
            await prod.send(topic, value, key=key.encode())
        await prod.flush()
    finally:
        await prod.stop()


@pytest.mark.kafka
def test_live_prober_results_reach_the_checks_topic_and_the_judge_rolls_the_deploy_back(
        production, tmp_path, kafka_bootstrap, topic_prefix):
    """`detector run` probes after each deploy: pay (v2 broken) is rolled back naming its check, cart (broken for
    every version) is not blamed, secrets stay out of the logs, and a replay of the topics agrees."""
    base = pipeline_for_test(topic_prefix, 60.0)
    smoke = parse_pipeline(_checks(production, delay_s=1, interval_s=1, runs=3))
    pipeline = dataclasses.replace(base, smoke=smoke.smoke)
    path = write_pipeline(tmp_path, pipeline)
    t = pipeline.topics
    det = SidecarProcess(kafka_bootstrap, path, tmp_path / "detector.log")
    try:
        det.wait_for_log("partition started cold", 30)
        now = time.time()
        history = _requests("pay", now - 300, now, lambda ts: "v1") + \
            _requests("cart", now - 300, now, lambda ts: "v1")
        asyncio.run(_produce(kafka_bootstrap, t.requests, history))
        deploys = [(s, orjson.dumps({"type": "deploy", "ts": round(now, 3), "service": s, "deploy_id": f"d-{s}",
                                     "version": "v2", "previous_version": "v1", "strategy": "rolling"}))
                   for s in ("pay", "cart")]
        asyncio.run(_produce(kafka_bootstrap, t.deploys, deploys))
        # 3 runs x 2 versions x 2 services
        checks = asyncio.run(read_topic(kafka_bootstrap, t.checks, lambda m: len(m) >= 12, 60))
        events = [orjson.loads(m.value) for m in checks]
        assert {(e["service"], e["version"], e["passed"]) for e in events} == {
            ("pay", "v2", False), ("pay", "v1", True), ("cart", "v2", False), ("cart", "v1", False)}
        # The sidecar has read every check before event time moves on (as live traffic would let it): the
        # results are judged in time, as a replay of the topics judges them.
        url = det.wait_for_log("health endpoint", 10)["url"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
                line = [ln for ln in r.read().decode().splitlines()
                        if ln.startswith("detector_events_in_total") and f'topic="{t.checks}"' in ln]
            if line and float(line[0].rsplit(" ", 1)[1]) >= len(checks):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the sidecar did not read the check results within 30 s")
        # traffic after the deploy (v2 takes it all) moves event time past the checks and the period
        later = _requests("pay", now, now + 90, lambda ts: "v2") + _requests("cart", now, now + 90, lambda ts: "v2")
        asyncio.run(_produce(kafka_bootstrap, t.requests, later))
        msgs = asyncio.run(read_topic(kafka_bootstrap, t.alerts, lambda m: len(verdicts(m)) >= 2, 60))
        live = {vid: copies[0] for vid, copies in verdicts(msgs).items()}
        pay, cart = live["v-d-pay"], live["v-d-cart"]
        assert pay["decision"] == "rollback"
        assert "smoke check 'pay-health' failed" in pay["reasons"][0]
        assert "missing configuration key db.url" in pay["reasons"][0]
        assert pay["root_cause"]["category"] == "config"
        assert cart["decision"] == "confirmed"
        assert any("not the deploy's: check 'cart-health' also failed on version v1" in r for r in cart["reasons"])
        anomalies = [orjson.loads(m.value) for m in msgs if orjson.loads(m.value)["type"] == "anomaly"]
        cart_smoke = [a for a in anomalies if a["signal"] == "smoke" and a["service"] == "cart"]
        assert cart_smoke and all(a["deploy_id"] is None for a in cart_smoke)
        assert SECRET not in (tmp_path / "detector.log").read_text()
        assert any(r.get("event") == "smoke check" for r in det.log_lines())
    finally:
        det.close()
    # A replay of what the topics hold (input topics, in event-time order) gives the same verdicts.
    inputs = []
    for topic, n in ((t.requests, len(history) + len(later)), (t.deploys, 2), (t.checks, len(checks))):
        inputs += [m.value for m in asyncio.run(read_topic(kafka_bootstrap, topic, lambda m: len(m) >= n, 30))]
    replay_file = tmp_path / "topics.jsonl"
    replay_file.write_bytes(b"\n".join(sorted(inputs, key=lambda v: orjson.loads(v)["ts"])) + b"\n")
    replayed = {}
    replay([replay_file], pipeline, lambda r: replayed.update(
        {orjson.loads(encode(r))["id"]: orjson.loads(encode(r))} if orjson.loads(encode(r))["type"] == "verdict"
        else {}), partitions=4)
    assert replayed == live


def test_a_newer_deploy_or_a_rollback_cancels_the_runs_still_waiting(production):
    """Runs of a superseded or rolled-back deploy that are not yet due are never sent."""
    smoke = _checks(production, delay_s=0.5, interval_s=0.3, runs=3)
    now = time.time()
    first, second = _deploy("pay", now, "d-a"), _deploy("pay", now, "d-b")
    back = dataclasses.replace(_deploy("cart", now, "d-c"), phase="rolled_back")

    async def go():
        got: list[dict] = []

        async def publish(key: bytes, value: bytes) -> None:
            got.append(orjson.loads(value))

        prober = SmokeProber(parse_pipeline(smoke).smoke, Prober(), publish)
        await prober.start()
        prober.on_deploys([first, _deploy("cart", now, "d-c")])
        await asyncio.sleep(0.1)
        prober.on_deploys([second, back])
        await asyncio.sleep(1.8)
        await prober.stop()
        return got

    got = asyncio.run(go())
    assert {e["deploy_id"] for e in got} == {"d-b"}
    assert len(got) == 6  # 3 runs x (v2 + v1) of the newer deploy only
