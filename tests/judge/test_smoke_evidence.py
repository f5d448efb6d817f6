"""Smoke checks as judge evidence: check events through a Core, rules, blame, verdicts, snapshots."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from detector.config import ConfigError, load_pipeline, parse_pipeline, to_toml
from detector.ingest.contract import decode_batch
from detector.core import Core
from detector.records import Anomaly, Verdict

T0 = 1_790_000_000.0  # a whole number of windows
DEPLOY_AT = T0 + 900.0


def _pipeline():
    p = load_pipeline()
    return dataclasses.replace(p, verification=dataclasses.replace(p.verification, period_s=400.0))


def _requests(t0: float, t1: float, version_of, rps: int = 5) -> list[dict]:
    out = []
    for i in range(int((t1 - t0) * rps)):
        ts = t0 + i / rps
        out.append({"type": "request", "ts": ts, "service": "pay", "endpoint": "GET /a", "status": 200,
                    "latency_ms": 20.0, "version": version_of(ts)})
    return out


def _deploy(**kw) -> dict:
    return {"type": "deploy", "ts": DEPLOY_AT, "service": "pay", "deploy_id": "d-1", "version": "v2",
            "previous_version": "v1", "strategy": "blue_green", **kw}


def _check(at: float, passed: bool, version: str | None = "v2", name: str = "health", **kw) -> dict:
    d = {"type": "check", "ts": DEPLOY_AT + at, "service": "pay", "name": name, "passed": passed,
         "deploy_id": "d-1", **kw}
    if version is not None:
        d["version"] = version
    if not passed:
        d.setdefault("message", "HTTP 503 from GET http://pay/health")
    return d


def _run(events: list[dict], pipeline=None, chunk: int = 400) -> tuple[list, Core]:
    """Every event in time order through one core, in chunks; (records, core)."""
    p = pipeline or _pipeline()
    core = Core(p)
    lines = [orjson.dumps(e) for e in sorted(events, key=lambda e: e["ts"])]
    out = []
    for i in range(0, len(lines), chunk):
        out.extend(core.process(decode_batch(lines[i:i + chunk], core.interner)))
    out.extend(core.finish())
    return out, core


def _traffic(until: float = DEPLOY_AT + 600) -> list[dict]:
    """v1 before the deploy; no traffic for v2 for its first 2 minutes (blue/green not yet switched)."""
    return _requests(T0, until, lambda ts: "v1" if ts < DEPLOY_AT + 120 else "v2")


def _verdict(records) -> Verdict:
    verdicts = [r for r in records if isinstance(r, Verdict)]
    assert len(verdicts) == 1, verdicts
    return verdicts[0]


def test_two_failures_of_a_check_that_passes_on_the_stable_version_roll_the_deploy_back():
    """The new version fails its check twice within 2 minutes while v1 passes: rollback, naming the check."""
    checks = []
    for k in range(3):
        checks += [_check(20 + 10 * k, False), _check(20 + 10 * k, True, version="v1")]
    records, _ = _run(_traffic() + [_deploy()] + checks)
    v = _verdict(records)
    assert v.decision == "rollback"
    assert v.ts <= DEPLOY_AT + 40  # the window holding the second failure, long before any traffic rule
    assert "smoke check 'health' failed 2 of 2 runs on version v2" in v.reasons[0]
    assert "stable version v1 it failed 0 of 2" in v.reasons[0]
    assert any(e.startswith("smoke check 'health': 2 of 2 runs failed on v2") for e in v.evidence)
    smoke = [r for r in records if isinstance(r, Anomaly) and r.signal == "smoke"]
    assert len(smoke) == 1 and smoke[0].deploy_id == "d-1" and smoke[0].severity == "critical"
    assert smoke[0].detail["check"] == "health" and smoke[0].id in v.anomalies


def test_a_check_that_also_fails_on_the_stable_version_is_not_the_deploys():
    """Failing on v2 and on v1 alike: reported without a deploy id, the deploy is confirmed."""
    checks = []
    for k in range(3):
        checks += [_check(20 + 10 * k, False), _check(20 + 10 * k, False, version="v1")]
    records, _ = _run(_traffic() + [_deploy()] + checks)
    v = _verdict(records)
    assert v.decision == "confirmed"
    assert v.root_cause == "data_or_infra"
    assert any("not the deploy's: check 'health' also failed on version v1" in r for r in v.reasons)
    smoke = [r for r in records if isinstance(r, Anomaly) and r.signal == "smoke"]
    assert smoke and smoke[0].deploy_id is None and smoke[0].detail["suspected_deploy_id"] == "d-1"


def test_a_check_that_was_failing_before_the_deploy_is_not_blamed_on_it():
    """An unaimed check (no version) failing before and after the deploy: confirmed, with the reason."""
    before = [{**_check(-60 + 20 * k, False, version=None), "deploy_id": None} for k in range(3)]
    after = [{**_check(20 + 10 * k, False, version=None), "deploy_id": None} for k in range(3)]
    for e in before + after:
        del e["deploy_id"]
    records, _ = _run(_traffic() + [_deploy()] + before + after)
    v = _verdict(records)
    assert v.decision == "confirmed"
    assert any("was already failing before the deploy" in r for r in v.reasons)


def test_a_check_that_passed_before_the_deploy_is_the_reference_without_a_stable_version():
    """Unaimed check: passed before, fails twice after -> rollback with 'its last run before the deploy passed'."""
    before = [_check(-60 + 20 * k, True, version=None) for k in range(3)]
    after = [_check(20 + 10 * k, False, version=None, message="HTTP 500: missing configuration key db.url")
             for k in range(2)]
    for e in before:
        e["deploy_id"] = "d-0"
    records, _ = _run(_traffic() + [_deploy()] + before + after)
    v = _verdict(records)
    assert v.decision == "rollback"
    assert "its last run before the deploy passed" in v.reasons[0]
    assert v.root_cause == "config"  # what the failing check said
    assert any("missing configuration key" in e for e in v.evidence)


def test_one_failure_or_failures_after_the_rule_span_do_not_act():
    """One failure within 2 minutes, the next ones later: no smoke rollback (the rule's span is from the deploy)."""
    checks = [_check(20, False), _check(20, True, version="v1"), _check(200, False), _check(210, False)]
    records, _ = _run(_traffic() + [_deploy()] + checks)
    assert _verdict(records).decision == "confirmed"
    assert not [r for r in records if isinstance(r, Anomaly) and r.signal == "smoke"]


def test_a_check_with_no_pass_anywhere_is_reported_but_not_acted_on():
    """Failures with nothing to compare with: an info anomaly, action none, the deploy is not rolled back."""
    checks = [_check(20, False), _check(30, False)]
    records, _ = _run(_traffic() + [_deploy()] + checks)
    assert _verdict(records).decision == "confirmed"
    smoke = [r for r in records if isinstance(r, Anomaly) and r.signal == "smoke"]
    assert smoke and smoke[0].severity == "info" and smoke[0].detail["action"] == "none"


def test_arrival_order_of_checks_does_not_change_any_record():
    """Checks delivered late (after their windows closed) and shuffled give the same verdict decision and reasons."""
    checks = []
    for k in range(3):
        checks += [_check(20 + 10 * k, False), _check(20 + 10 * k, True, version="v1")]
    in_time, _ = _run(_traffic() + [_deploy()] + checks)
    p = _pipeline()
    core = Core(p)
    lines = [orjson.dumps(e) for e in sorted(_traffic() + [_deploy()], key=lambda e: e["ts"])]
    late = []
    cut = next(i for i, ln in enumerate(lines) if orjson.loads(ln)["ts"] > DEPLOY_AT + 35)
    for i in range(0, cut, 400):
        late.extend(core.process(decode_batch(lines[i:min(i + 400, cut)], core.interner)))
    late.extend(core.process(decode_batch([orjson.dumps(c) for c in reversed(checks)], core.interner), source=None))
    late.extend(core.process(decode_batch(lines[cut:], core.interner)))
    late.extend(core.finish())
    a, b = _verdict(in_time), _verdict(late)
    assert (a.decision, a.reasons) == (b.decision, b.reasons)


def test_smoke_state_survives_a_snapshot_and_restore():
    """Runs kept as evidence and pending checks round-trip through a checkpoint; the restored core decides alike."""
    events = _traffic() + [_deploy()] + [_check(-30, True, version=None)]
    events += [_check(20, False), _check(20, True, version="v1"), _check(30, False), _check(30, True, version="v1")]
    lines = [orjson.dumps(e) for e in sorted(events, key=lambda e: e["ts"])]
    cut = next(i for i, ln in enumerate(lines) if orjson.loads(ln)["ts"] >= DEPLOY_AT + 25)
    p = _pipeline()
    core = Core(p)
    first = core.process(decode_batch(lines[:cut], core.interner))
    data = core.snapshot()
    restored = Core.restore(p, data)
    assert restored.snapshot() == data
    assert restored.judge.smoke.to_state() == core.judge.smoke.to_state()
    assert restored._pending_checks == core._pending_checks
    rest = restored.process(decode_batch(lines[cut:], restored.interner)) + restored.finish()
    whole, _ = _run(events, chunk=len(lines))
    assert _verdict(first + rest).to_dict() == _verdict(whole).to_dict()


def test_the_same_check_result_delivered_twice_counts_once():
    """A producer's retry duplicates a result: one failure stays one failure (no rollback)."""
    checks = [_check(20, False), _check(20, False), _check(20, True, version="v1")]
    records, _ = _run(_traffic() + [_deploy()] + checks)
    assert _verdict(records).decision == "confirmed"


# --- pipeline validation ---

SMOKE = """
[[smoke]]
service = "pay"
name = "health"
url = "http://127.0.0.1:1/health/{version}"
headers = { Authorization = "Bearer ${TOKEN}", X-Version = "{version}" }
expect_status = 200
runs = 3
"""


def test_smoke_entries_parse_and_write_back():
    """[[smoke]] entries and [prober] are read, aimed by {version}, and to_toml writes them back equal."""
    p = parse_pipeline(SMOKE)
    (c,) = p.smoke
    assert c.aimed and c.runs == 3 and dict(c.headers)["X-Version"] == "{version}"
    assert "Bearer" not in repr(c)
    again = parse_pipeline(to_toml(p))
    assert again.smoke == p.smoke and again.prober == p.prober


@pytest.mark.parametrize("text, message", [
    (SMOKE.replace('runs = 3', 'runs = 0'), "smoke[0].runs must be an integer from 1 to 1000 (got 0)"),
    (SMOKE.replace('url = "http://127.0.0.1:1/health/{version}"', 'url = "ftp://x"'),
     "smoke[0].url must be an http:// or https:// URL"),
    (SMOKE.replace('{version}"\nheaders', '{ver}"\nheaders'), "smoke[0].url must be placeholders among"),
    (SMOKE + "timeout = 3\n", "smoke[0].timeout must be no such key"),
    (SMOKE.replace('name = "health"\n', ''), "smoke[0].name must be a value (this key is required)"),
    (SMOKE + SMOKE, "smoke[1].name must be a name not used by another check of 'pay'"),
    ("[prober]\nmax_in_flight = 0\n", "prober.max_in_flight must be an integer >= 1"),
    ('[[rules]]\nname = "s"\nsignal = "smoke"\naction = "rollback"\nmin_score = 3\n',
     "rules[0].min_score must be left out: it does not apply to a smoke rule"),
    ('[[rules]]\nname = "s"\nsignal = "smoke"\naction = "rollback"\nmin_effect = 1.5\n',
     "rules[0].min_effect must be a whole number of failed runs >= 1"),
])
def test_bad_smoke_settings_fail_naming_the_key(text, message):
    """Every wrong smoke setting fails at load with the file, the key and what was expected."""
    with pytest.raises(ConfigError) as e:
        parse_pipeline(text, "pipelines/mine.toml")
    assert str(e.value).startswith("pipelines/mine.toml: ") and message in str(e.value)


def test_a_bad_header_placeholder_does_not_show_the_header_value():
    """A header value is possibly a secret: the error names the key but never echoes the value."""
    text = SMOKE.replace('"Bearer ${TOKEN}"', '"Bearer s3cret{oops}"')
    with pytest.raises(ConfigError) as e:
        parse_pipeline(text)
    assert "smoke[0].headers.Authorization" in str(e.value) and "s3cret" not in str(e.value)


def test_the_default_pipeline_rolls_back_on_two_smoke_failures_within_two_minutes():
    """The shipped smoke rule: 2 failed runs within 120 s -> rollback."""
    (rule,) = [r for r in load_pipeline().rules if r.signal == "smoke"]
    assert (rule.min_effect, rule.duration_s, rule.action) == (2, 120, "rollback")
    assert dataclasses.replace(rule).name == "smoke-failed"


def test_a_smoke_finding_of_an_open_verification_round_trips_through_a_checkpoint():
    """A blamed smoke finding (the verification stays open) is restored equal, and the snapshot is byte-stable."""
    checks = []
    for k in range(3):
        checks += [_check(20 + 10 * k, False), _check(20 + 10 * k, False, version="v1")]
    lines = [orjson.dumps(e) for e in sorted(_traffic() + [_deploy()] + checks, key=lambda e: e["ts"])]
    cut = next(i for i, ln in enumerate(lines) if orjson.loads(ln)["ts"] >= DEPLOY_AT + 90)
    p = _pipeline()
    core = Core(p)
    core.process(decode_batch(lines[:cut], core.interner))
    (v,) = core.judge.verifications.values()
    assert v.open and ("smoke-failed", "health") in v.findings
    data = core.snapshot()
    restored = Core.restore(p, data)
    assert restored.snapshot() == data
    assert next(iter(restored.judge.verifications.values())).findings == v.findings


def test_detector_run_reads_the_checks_topic_as_a_control_stream():
    """`detector run` subscribes to the checks topic, which (like deploys) never holds the watermark back."""
    from detector.runtime.app import Sidecar

    p = load_pipeline()
    sidecar = Sidecar(p, "127.0.0.1:1", http_port=-1)
    assert p.topics.checks in sidecar.inputs and p.topics.checks not in sidecar.watermark_inputs
    core = Core(p)
    core.process(decode_batch([orjson.dumps(_check(20, False))], core.interner), source=None)
    assert core.windows.max_ts == {} and len(core._pending_checks) == 1


def test_header_secrets_come_from_the_environment_and_a_missing_one_fails_naming_the_key():
    """${NAME} in a header is read at start; an unset variable stops the start, naming the header, not a value."""
    from detector.smoke.settings import SmokeSettingError, resolve_env

    (c,) = resolve_env(parse_pipeline(SMOKE).smoke, {"TOKEN": "abc"})
    assert dict(c.headers)["Authorization"] == "Bearer abc"
    with pytest.raises(SmokeSettingError) as e:
        resolve_env(parse_pipeline(SMOKE).smoke, {})
    assert e.value.key == "smoke[0].headers.Authorization" and "set TOKEN" in e.value.expected
