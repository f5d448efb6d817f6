"""`detector report` on a simulated config fault with hostile strings mixed in: pages, charts, escaping."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import orjson
import pytest

from chromium import dump_dom, screenshot
from detector.config import load_pipeline
from detector.replay import run_replay
from detector.report.build import read_alerts, run_report, summarise
from detector.report.pages import page_file
from detector.report.summaries import ALL
from sidecar import scenario_events

HOSTILE_LOG = "<script>document.title='pwned'</script> payment <b>token</b> rejected"
HOSTILE_SERVICE = "<img src=x onerror=alert(1)>"
HOSTILE_DEPLOY = "d-<i>x</i>/../evil"
DEPLOY_TS = 1795687800.0  # config_fault: d-cfg-1 of payments v2.14.0 at start + 600 s
# A resource the browser would fetch: src/href/action attributes, CSS url() and @import.
RESOURCE = re.compile(r"""(?:\b(?:src|href|action|srcset|poster|data)\s*=\s*["']?\s*(?:https?:)?//)"""
                      r"""|url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)


def _hostile_lines() -> list[dict]:
    out = []
    for i in range(12):  # a new template from the new version after the deploy
        out.append({"type": "log", "ts": DEPLOY_TS + 40 + i, "service": "payments", "version": "v2.14.0",
                    "level": "ERROR", "message": HOSTILE_LOG})
    out.append({"type": "check", "ts": DEPLOY_TS + 30, "service": "payments", "deploy_id": "d-cfg-1",
                "version": "v2.14.0", "name": "<script>smoke</script>", "passed": False, "duration_ms": 412,
                "message": "<img src=x onerror=alert(2)> 500 from /pay", "url": "https://pay.example/health"})
    out.append({"type": "check", "ts": DEPLOY_TS + 35, "service": "payments", "deploy_id": "d-cfg-1",
                "version": "v2.14.0", "name": "GET /healthz", "passed": True, "duration_ms": 12})
    out.append({"type": "deploy", "ts": DEPLOY_TS + 60, "service": HOSTILE_SERVICE, "deploy_id": HOSTILE_DEPLOY,
                "version": "v<1>", "previous_version": "v0", "strategy": "rolling"})
    for i in range(300):
        out.append({"type": "request", "ts": DEPLOY_TS - 200 + 2 * i, "service": HOSTILE_SERVICE,
                    "endpoint": "GET /<svg onload=alert(3)>", "status": 200, "latency_ms": 20 + i % 7,
                    "version": "v<1>" if i > 140 else "v0"})
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("report")
    plain = tmp / "plain.jsonl"
    truth, _, _ = scenario_events("config_fault", plain)
    extra = sorted(_hostile_lines(), key=lambda d: d["ts"])
    events = tmp / "events.jsonl"
    with open(plain, "rb") as src, open(events, "wb") as dst:
        j = 0
        for line in src:
            ts = orjson.loads(line)["ts"]
            while j < len(extra) and extra[j]["ts"] <= ts:
                dst.write(orjson.dumps(extra[j]) + b"\n")
                j += 1
            dst.write(line)
        for doc in extra[j:]:
            dst.write(orjson.dumps(doc) + b"\n")
    pipeline = load_pipeline()
    alerts = tmp / "alerts.jsonl"
    run_replay([str(events)], str(alerts), pipeline, quiet=True)
    out = tmp / "site"
    result = run_report(str(events), str(alerts), str(out), pipeline)
    return {"tmp": tmp, "events": events, "alerts": alerts, "out": out, "result": result, "truth": truth,
            "pipeline": pipeline}


def _pages(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text(encoding="utf-8") for p in sorted(out.rglob("*.html"))}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    return p


def test_one_page_per_deploy_with_at_least_three_charts(report):
    """Every started deploy in the events gets its own page, and each page draws at least three charts."""
    started = {"d-cfg-1", HOSTILE_DEPLOY}
    files = {p.name for p in (report["out"] / "deploys").iterdir()}
    assert files == {page_file(d) for d in started}
    assert report["result"].deploys == len(started)
    for name in files:
        html = (report["out"] / "deploys" / name).read_text()
        assert html.count('<svg class="chart"') >= 3, name
    index = (report["out"] / "index.html").read_text()
    assert index.count('class="spark"') == len(started)
    assert '<svg class="timeline"' in index


def test_pages_load_nothing_from_outside(report):
    """No page references a resource over the network (the report opens from the file system)."""
    for name, html in _pages(report["out"]).items():
        assert not RESOURCE.search(html), (name, RESOURCE.search(html).group(0))
        assert "<link" not in html and "<script" not in html.lower(), name


def test_event_strings_are_shown_as_text_never_as_markup(report):
    """A log line, a check, a service name and a deploy id holding markup appear as text; no tag from them exists."""
    for name, html in _pages(report["out"]).items():
        parsed = _parse(html)
        assert not parsed.tags & {"script", "img", "b", "i"}, (name, parsed.tags)
    page = _parse((report["out"] / "deploys" / "d-cfg-1.html").read_text())
    text = "".join(page.text)
    assert "<script>document.title='pwned'</script>" in text  # the new log template, as text
    assert "<img src=x onerror=alert(2)> 500 from /pay" in text  # the failed smoke check's message
    assert "failed" in text and "GET /healthz" in text
    index = "".join(_parse((report["out"] / "index.html").read_text()).text)
    assert HOSTILE_SERVICE in index and HOSTILE_DEPLOY in index


def test_the_rollback_page_shows_its_rule_threshold_and_evidence(report):
    """The rollback's page marks the moment the rule held, draws its threshold and lists reasons and evidence."""
    html = (report["out"] / "deploys" / "d-cfg-1.html").read_text()
    text = "".join(_parse(html).text)
    assert "rule 'errors-everywhere' held" in text
    assert "errors-everywhere: +5 points -> rollback" in text
    assert "missing configuration key" in text
    verdict = next(r for r in read_alerts(report["alerts"]) if r["type"] == "verdict")
    for reason in verdict["reasons"]:
        assert reason in text


def test_window_summaries_count_what_the_events_hold(report):
    """Requests and errors per window of the new version, and of the service, equal counts made from the events."""
    pipeline = report["pipeline"]
    history = summarise(report["events"], pipeline)
    w = pipeline.windows.width_s
    want: dict[tuple[str, float], list[int]] = {}
    with open(report["events"], "rb") as fh:
        for line in fh:
            d = orjson.loads(line)
            if d["type"] != "request" or d["service"] != "payments":
                continue
            k = float(np.floor(d["ts"] / w) * w)
            for ver in (d.get("version"), ALL):
                row = want.setdefault((ver, k), [0, 0])
                row[0] += 1
                row[1] += d["status"] >= 500
    for ver in ("v2.14.0", "v2.13.4", ALL):
        got = history.summaries.series("payments", ver, 0, 1e12)
        expect = {k: v for (v_, k), v in want.items() if v_ == ver}
        assert {float(s): [int(n), int(e)] for s, n, e in zip(got["start"], got["requests"], got["errors"])} == expect
    new = history.summaries.series("payments", "v2.14.0", 0, 1e12)
    assert np.nanmax(new["p99"]) >= np.nanmax(new["p50"]) > 0


def test_chromium_renders_the_index_and_a_deploy_page(report):
    """Headless Chromium loads the index and a deploy page from files: every deploy id is in the DOM; screenshots."""
    out, tmp = report["out"], report["tmp"]
    dom = dump_dom((out / "index.html").as_uri(), tmp / "profile")
    for dep in ("d-cfg-1", HOSTILE_DEPLOY):
        assert dep.replace("<", "&lt;").replace(">", "&gt;") in dom, dep
    page = dump_dom((out / "deploys" / "d-cfg-1.html").as_uri(), tmp / "profile")
    assert page.split("<title>")[1].split("</title>")[0] == "d-cfg-1 payments v2.14.0: rollback"  # no script ran
    assert "<script" not in page and "&lt;script&gt;document.title='pwned'" in page
    for name, path in (("index", out / "index.html"), ("deploy", out / "deploys" / "d-cfg-1.html")):
        shot = screenshot(path.as_uri(), tmp / f"{name}.png", tmp / "profile")
        assert shot.stat().st_size > 10_000


def test_saved_summaries_rebuild_the_same_pages_without_the_pass(report, tmp_path):
    """With --summaries a second build reads the summaries back and draws the same pages; a changed
    input file is summarised again."""
    events, alerts, pipeline = str(report["events"]), str(report["alerts"]), report["pipeline"]
    saved = tmp_path / "summaries.npz"
    first = run_report(events, alerts, str(tmp_path / "a"), pipeline, str(saved))
    second = run_report(events, alerts, str(tmp_path / "b"), pipeline, str(saved))
    assert not first.reused and second.reused and saved.exists()
    assert _pages(tmp_path / "a") == _pages(tmp_path / "b") == _pages(report["out"])
    copy = tmp_path / "events.jsonl"
    copy.write_bytes(report["events"].read_bytes())
    assert not run_report(str(copy), alerts, str(tmp_path / "c"), pipeline, str(saved)).reused
