"""Tickets as soon as they are known, and one escalation after an early ticket.

A ticket rule holding starts a hold of `verification.ticket_hold_s` of event
time: a page or rollback rule holding meanwhile decides the verdict; else the
ticket goes out at the hold's end, not at the period's end. The verification
is then watched until its period would have ended: a page or rollback rule
holding sends one `anomaly` (severity critical, detail.escalates = the
verdict's id), and the verdict is never sent again. The hold and the watch
are core state: a restored core continues to the same records.

The scenario: `config_fault` with the rollback rules in dry-run mode. Its new
configuration-error log template makes the `new-error-pattern` ticket rule
hold about a minute after the deploy; `errors-sustained` (page) holds at
+300 s.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import orjson
import pytest

from detector.config import ConfigError, load_pipeline
from detector.core import Core
from detector.ingest.contract import decode_batch
from detector.records import encode
from detector.simulate.main import resolve_scenario
from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import load_scenario
from detector.simulate.scoring import pipeline_for, replay_scenario

CHUNK_LINES = 500


def _policy(hold_s: float | None = None, mode: str = "always", dry: tuple[str, ...] = ("rollback",)):
    """The shipped rules with the rules of the actions in `dry` in dry-run mode, and the hold given."""
    base = load_pipeline()
    rules = tuple(dataclasses.replace(r, dry_run=True) if set(dry) & {r.action, r.critical_action} else r
                  for r in base.rules)
    ver = dataclasses.replace(base.verification, ticket_hold=mode)
    ver = ver if hold_s is None else dataclasses.replace(ver, ticket_hold_s=hold_s)
    return dataclasses.replace(base, rules=rules, verification=ver)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("hold")


def _run(workdir, hold_s, mode="always"):
    truth, records, _ = replay_scenario("config_fault", workdir, pipeline=_policy(hold_s, mode))
    deploy = truth["deploys"][0]
    verdicts = [r for r in records if r["type"] == "verdict" and r["deploy_id"] == deploy["deploy_id"]]
    assert len(verdicts) == 1
    mine = [r for r in records if r["type"] == "anomaly" and r["deploy_id"] == deploy["deploy_id"]]
    first_page = min(r["ts"] for r in mine if r["detail"].get("action") == "page" and not r["detail"].get("dry_run"))
    escalations = [r for r in mine if "escalates" in r["detail"]]
    return truth, deploy, verdicts[0], first_page, escalations


def test_with_no_hold_the_ticket_goes_out_in_the_window_its_rule_holds(workdir):
    """ticket_hold_s = 0: the ticket is decided where the log rule holds (a minute after the template's
    first lines), minutes before the page rule."""
    _truth, deploy, verdict, first_page, _ = _run(workdir, 0.0)
    assert verdict["decision"] == "ticket"
    rule = next(r for r in load_pipeline().rules if r.name == "new-error-pattern")
    assert rule.duration_s <= verdict["ts"] - deploy["started_ts"] <= rule.duration_s + 30
    assert verdict["ts"] < first_page


def test_a_ticket_goes_out_when_its_hold_ends_not_at_the_periods_end(workdir):
    """The ticket's verdict comes ticket_hold_s after its rule first held, long before the period's end."""
    hold_s = load_pipeline().verification.ticket_hold_s
    truth, deploy, verdict, _first_page, _ = _run(workdir, None)
    _truth, _deploy, at_once, _page, _ = _run(workdir, 0.0)
    assert verdict["decision"] == "ticket"
    assert verdict["ts"] == at_once["ts"] + hold_s
    assert verdict["ts"] < deploy["started_ts"] + truth["verification_s"]
    assert verdict["verification"]["ended"] == verdict["ts"]


def test_a_page_rule_holding_during_the_hold_decides_instead_of_the_ticket(workdir):
    """A hold longer than the gap between the ticket and the page rule: the page is the verdict,
    at the window its rule holds, and nothing is escalated."""
    _truth, _deploy, verdict, first_page, escalations = _run(workdir, 600.0)
    _truth, _deploy, at_once, _page, _ = _run(workdir, 0.0)
    assert (verdict["decision"], verdict["ts"]) == ("page", first_page)
    assert at_once["ts"] < verdict["ts"] < at_once["ts"] + 600.0
    assert escalations == []


def test_a_page_rule_holding_after_an_early_ticket_escalates_it_once(workdir):
    """After the ticket went out, the page rule holding sends exactly one critical anomaly naming
    the verdict, the rule and the action, with its own deterministic id; no second verdict."""
    _truth, deploy, verdict, _first, escalations = _run(workdir, None)
    assert verdict["decision"] == "ticket"
    (e,) = escalations
    assert e["severity"] == "critical" and e["ts"] > verdict["ts"]
    assert (e["detail"]["escalates"], e["detail"]["rule"], e["detail"]["action"]) == \
        (verdict["id"], "errors-sustained", "page")
    assert (e["signal"], e["endpoint"], e["deploy_id"]) == ("error_rate", None, deploy["deploy_id"])
    finding = [r for r in _run(workdir, None)[4]]
    assert [f["id"] for f in finding] == [e["id"]]  # the same id when replayed again
    assert e["detail"]["anomaly"] != e["id"]  # not the id of the rule's own anomaly
    assert e["detail"]["reason"].endswith("-> page")


def test_a_rollback_after_an_early_ticket_ends_the_watch(workdir, tmp_path):
    """A `rolled_back` deploy event after an early ticket: nothing is escalated any more."""
    truth, records, events = replay_scenario("config_fault", workdir, pipeline=_policy(None))
    verdict = next(r for r in records if r["type"] == "verdict")
    deploy = truth["deploys"][0]
    rollback = {"type": "deploy", "ts": verdict["ts"] + 5, "service": deploy["service"],
                "deploy_id": deploy["deploy_id"], "version": verdict["version"], "phase": "rolled_back"}
    lines = events.read_bytes().splitlines()
    cut = next(i for i, ln in enumerate(lines) if orjson.loads(ln)["ts"] > rollback["ts"])
    edited = tmp_path / "rolled-back.jsonl"
    edited.write_bytes(b"\n".join([*lines[:cut], orjson.dumps(rollback), *lines[cut:]]) + b"\n")
    from detector.replay import replay

    out: list[dict] = []
    replay([edited], pipeline_for(truth, _policy(None)), lambda r: out.append(orjson.loads(encode(r))))
    assert [r["decision"] for r in out if r["type"] == "verdict"] == ["ticket"]
    assert not [r for r in out if r["type"] == "anomaly" and "escalates" in r["detail"]]


def test_in_sight_a_page_rule_on_its_way_holds_the_ticket_as_always(workdir):
    """The shipped `ticket_hold = "in_sight"`: when the ticket rule holds, the page rule's errors are
    already there (its effect at the relaxed bar), so the ticket waits the whole hold, as with
    "always" (the page rule holds only later, and escalates)."""
    _t, _d, always, _p, esc_always = _run(workdir, None, "always")
    _t, _d, in_sight, _p, esc_sight = _run(workdir, None, "in_sight")
    assert (in_sight["decision"], in_sight["ts"]) == (always["decision"], always["ts"])
    assert [e["ts"] for e in esc_sight] == [e["ts"] for e in esc_always]


def test_in_sight_a_ticket_with_nothing_more_urgent_coming_goes_out_at_once(workdir):
    """With every page and rollback rule in dry-run mode nothing more urgent can come: under
    "in_sight" the ticket goes out in the window its rule holds (as with no hold at all), under
    "always" a hold later."""
    def verdict(hold_s, mode):
        _truth, records, _ = replay_scenario("config_fault", workdir,
                                             pipeline=_policy(hold_s, mode, dry=("rollback", "page")))
        return next(r for r in records if r["type"] == "verdict")
    hold_s = load_pipeline().verification.ticket_hold_s
    at_once = verdict(0.0, "always")
    assert at_once["decision"] == "ticket"
    assert verdict(None, "in_sight")["ts"] == at_once["ts"]
    assert verdict(None, "always")["ts"] == at_once["ts"] + hold_s


def test_an_unknown_hold_mode_is_refused_naming_the_key(tmp_path):
    """ticket_hold other than in_sight or always fails at load, naming the file, the key and the choices."""
    shipped = Path(load_pipeline().source).read_text()
    text = re.sub(r'(?m)^ticket_hold = "in_sight"', 'ticket_hold = "sometimes"', shipped)
    assert text != shipped
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.toml: verification\.ticket_hold must be one of in_sight, always"
                                          r".*got 'sometimes'"):
        load_pipeline(str(bad))


def test_a_negative_hold_is_refused_naming_the_key(tmp_path):
    """ticket_hold_s < 0 fails at load, naming the file, the key and what is expected."""
    shipped = Path(load_pipeline().source).read_text()
    text = re.sub(r"(?m)^ticket_hold_s = \d+", "ticket_hold_s = -1", shipped)
    assert text != shipped
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.toml: verification\.ticket_hold_s must be a number of seconds "
                                          r">= 0.*got -1"):
        load_pipeline(str(bad))


@pytest.mark.parametrize("mode", ["always", "in_sight"])
def test_a_core_restored_in_the_hold_and_in_the_watch_gives_the_same_records(tmp_path, mode):
    """Restoring after every batch, cuts inside the hold and inside the watch included, changes no record
    (what is in sight is never saved: it is worked out again from the verification at every window)."""
    sc = load_scenario(resolve_scenario("config_fault"), rate_scale=0.5)
    path = tmp_path / "events.jsonl"
    truth = simulate_to_file(sc, path)
    pipeline = pipeline_for(truth, _policy(None, mode))
    lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    chunks = [lines[i:i + CHUNK_LINES] for i in range(0, len(lines), CHUNK_LINES)]

    core = Core(pipeline)
    want = [[encode(r) for r in core.process(decode_batch(c, core.interner))] for c in chunks]
    want.append([encode(r) for r in core.finish()])
    final = core.snapshot()
    flat = [orjson.loads(r) for batch in want for r in batch]
    assert [r["decision"] for r in flat if r["type"] == "verdict"] == ["ticket"]
    assert len([r for r in flat if r["type"] == "anomaly" and "escalates" in r["detail"]]) == 1

    core = Core(pipeline)
    cuts = set()
    for i, chunk in enumerate(chunks):
        assert [encode(r) for r in core.process(decode_batch(chunk, core.interner))] == want[i], f"batch {i}"
        for v in core.judge.verifications.values():
            if v.open and v.ticket_hold_until is not None:
                cuts.add("in the hold")
            if v.watching:
                cuts.add("in the watch")
        core = Core.restore(pipeline, core.snapshot())
    assert [encode(r) for r in core.finish()] == want[-1]
    assert core.snapshot() == final
    assert cuts == {"in the hold", "in the watch"}
