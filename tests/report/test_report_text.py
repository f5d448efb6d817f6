"""Console lines and the markdown report: units, simulated event time, readable counts, evidence."""

from __future__ import annotations

from detector.simulate.scoring import score, table
from detector.report.text import console_lines, counts_line, markdown, measure

LOG = {"type": "anomaly", "ts": 1795687840.0, "service": "payments", "endpoint": None, "signal": "log_errors",
       "observed": 7.0, "expected": 0.00662, "severity": "critical", "deploy_id": "d-cfg-1",
       "window": {"start": 1795687830.0, "end": 1795687840.0}, "detail": {}}
ERR = {**LOG, "signal": "error_rate", "observed": 0.112676, "expected": 0.00304646,
       "window": {"start": 1795687800.0, "end": 1795687860.0}}
VERDICT = {"type": "verdict", "id": "v-d-cfg-1", "ts": 1795687860.0, "service": "payments", "deploy_id": "d-cfg-1",
           "version": "v2.14.0", "decision": "rollback", "reasons": ["error rate 11.27% vs 0.30% ..."],
           "root_cause": {"category": "config", "evidence": ["new log template: missing configuration key <*>"]},
           "anomalies": [], "verification": {"started": 1795687800.0, "ended": 1795687860.0}}
TRUTH = {"scenario": "config_fault", "verification_s": 600, "counts": {"request": 134601, "log": 21900, "deploy": 2},
         "deploys": [{"deploy_id": "d-cfg-1", "service": "payments", "strategy": "rolling", "started_ts": 1795687800.0,
                      "expect": "rollback", "expect_root_cause": "config"}]}


def test_measures_say_their_units():
    """Log counts are lines per window, error rates percentages over the rule's span."""
    assert measure(LOG) == "7 lines vs 0.0066 expected per 10 s window"
    assert measure(ERR) == "error rate 11.27% vs 0.30% expected over 60 s"
    assert measure({**LOG, "signal": "latency", "observed": 1002.0, "expected": 460.0,
                    "detail": {"quantile": 0.95}}).startswith("p95 1,002 ms vs 460 ms expected")


def test_console_lines_label_simulated_event_time():
    """Every console line starts with the event time marked as simulated."""
    text = ["".join(t for _, t in line) for line in console_lines(VERDICT) + console_lines(LOG)]
    assert text[0].startswith("[sim 10:11:00] VERDICT payments d-cfg-1 (v2.14.0): ROLLBACK")
    assert text[-1].startswith("[sim 10:10:40] anomaly critical payments/all endpoints log_errors: 7 lines vs")


def test_markdown_has_counts_times_and_evidence_not_a_dict():
    """The first paragraph counts events in words; each verdict has its times and evidence."""
    s = score(TRUTH, [VERDICT, LOG])
    md = markdown(TRUTH, [VERDICT, LOG], s, table([("detector", s)]))
    assert "{" not in md.splitlines()[2]
    assert counts_line(TRUTH["counts"]) == "156,503 events (134,601 requests, 21,900 log lines, 2 deploy events)"
    assert counts_line(TRUTH["counts"]) in md
    assert "| 10:10:00 |" in md  # the deploy time
    assert "verified 10:10:00 to 10:11:00, verdict at 10:11:00" in md
    assert "- evidence: new log template: missing configuration key <*>" in md
    assert "7 lines vs 0.0066 expected per 10 s window" in md
