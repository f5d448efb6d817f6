"""The live status page of `detector run`: deploys, verdicts and charts at / of its HTTP port."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from html.parser import HTMLParser

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from chromium import dump_dom, screenshot
from sidecar import SidecarProcess, pipeline_for_test, produce_scenario, read_topic, scenario_events, verdicts, \
    write_pipeline

from detector.report.pages import page_file

pytestmark = pytest.mark.kafka

HOSTILE_SERVICE = "<script>alert(1)</script>"
HOSTILE_DEPLOY = "d-<b>evil</b>"
HOSTILE_LOG = "<img src=x onerror=alert(2)> card declined"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)


def _get(url: str) -> tuple[int, dict, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, dict(r.headers), r.read().decode()


async def _produce_hostile(bootstrap: str, pipeline, after_ts: float) -> None:
    """A service, deploy and log line whose strings are markup, after the scenario's last event."""
    t = pipeline.topics
    key = HOSTILE_SERVICE.encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(100):
            ts = after_ts + 5 + 2 * i
            if i == 30:
                await producer.send_and_wait(t.deploys, orjson.dumps(
                    {"type": "deploy", "ts": ts, "service": HOSTILE_SERVICE, "deploy_id": HOSTILE_DEPLOY,
                     "version": "v<2>", "previous_version": "v1", "strategy": "rolling"}), key=key)
            await producer.send_and_wait(t.requests, orjson.dumps(
                {"type": "request", "ts": ts, "service": HOSTILE_SERVICE, "endpoint": "GET /", "status": 200,
                 "latency_ms": 30.0, "version": "v<2>" if i > 30 else "v1"}), key=key)
            if i > 30 and i % 5 == 0:
                await producer.send_and_wait(t.logs, orjson.dumps(
                    {"type": "log", "ts": ts, "service": HOSTILE_SERVICE, "version": "v<2>", "level": "ERROR",
                     "message": HOSTILE_LOG}), key=key)
    finally:
        await producer.stop()


def test_the_status_page_shows_deploys_verdicts_and_charts_escaped(tmp_path, kafka_bootstrap, topic_prefix):
    """A running sidecar serves its deploys at /: the verdict, a deploy page with charts, hostile names as
    text; headless Chromium finds every deploy id in the DOM and takes a screenshot."""
    truth, _, sc = scenario_events("config_fault", tmp_path / "events.jsonl", rate_scale=0.5)
    pipeline = pipeline_for_test(topic_prefix, truth["verification_s"])
    det = SidecarProcess(kafka_bootstrap, write_pipeline(tmp_path, pipeline), tmp_path / "detector.log")
    try:
        url = det.wait_for_log("health endpoint", 30)["url"]
        assert url.startswith("http://127.0.0.1:")  # loopback by default
        det.wait_for_log("partition started cold", 30)
        asyncio.run(produce_scenario(sc, kafka_bootstrap, pipeline))
        asyncio.run(_produce_hostile(kafka_bootstrap, pipeline, truth["end_ts"]))
        asyncio.run(read_topic(kafka_bootstrap, pipeline.topics.alerts, lambda m: "v-d-cfg-1" in verdicts(m), 120))
        escaped_deploy = HOSTILE_DEPLOY.replace("<", "&lt;").replace(">", "&gt;")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status, headers, index = _get(url + "/")
            if "d-cfg-1" in index and escaped_deploy in index:
                break
            time.sleep(1)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "d-cfg-1" in index and escaped_deploy in index, index[-3000:]
        assert ">rollback<" in index and ">verifying<" in index
        assert "script" not in {t for t in _tag_names(index)} and "b" not in _tag_names(index)

        status, _, page = _get(url + "/deploys/d-cfg-1.html")
        assert status == 200 and page.count('<svg class="chart"') >= 3
        assert "rule &#x27;errors-everywhere&#x27; held" in page
        _, _, evil = _get(url + f"/deploys/{page_file(HOSTILE_DEPLOY)}")
        assert evil.count('<svg class="chart"') >= 3 and "Verifying for" in evil
        assert not _tag_names(evil) & {"script", "img", "b"}
        assert "<code>&lt;img src=x onerror=" in evil and "card declined</code>" in evil  # the new log template
        with pytest.raises(urllib.error.HTTPError):
            _get(url + "/deploys/nothing.html")

        dom = dump_dom(url + "/", tmp_path / "profile")
        assert "d-cfg-1" in dom and escaped_deploy in dom and "<script" not in dom
        shot = screenshot(url + "/", tmp_path / "status.png", tmp_path / "profile")
        assert shot.stat().st_size > 10_000
    finally:
        det.close()


def _tag_names(html: str) -> set[str]:
    p = _Tags()
    p.feed(html)
    return p.tags
