"""Root cause of a regression of the new version alone that is not errors.

A slowdown or a drop of completed transactions, confined to the new version
(not shared: blame cleared nothing), with no log template, on a deploy whose
own event declares a code change, is `code` wherever it shows: service-wide,
on every endpoint, or on some. Without that declaration (or with `config`) the
judge does not guess: `unknown`. Errors keep their own rules (everywhere from
the first requests on: `config`).
"""

from __future__ import annotations

from detector.judge.rootcause import LogEvidence, hint
from detector.judge.verification import Finding


def _finding(signal: str, endpoint: int = -1, rule: str = "r") -> Finding:
    return Finding(rule=rule, signal=signal, action="ticket", endpoint=endpoint, observed=1.0, expected=1.0,
                   effect=1.0, score=5.0, n=1000, share=1.0, window_start=0.0, window_end=300.0,
                   reference="before")


def test_a_service_wide_transaction_drop_of_a_code_change_is_code():
    h = hint([_finding("transactions")], [], [], 3, None, "code")
    assert h.category == "code"
    assert "the deploy is a code change" in h.evidence
    assert any("no errors, nothing shared" in e for e in h.evidence)


def test_a_slowdown_on_every_endpoint_of_a_code_change_is_code():
    findings = [_finding("latency", ep) for ep in (1, 2, 3)]
    assert hint(findings, [], [], 3, None, "code").category == "code"


def test_without_a_declared_code_change_it_stays_unknown():
    for kind in (None, "config"):
        assert hint([_finding("latency")], [], [], 3, None, kind).category == "unknown"
        assert hint([_finding("transactions")], [], [], 3, None, kind).category == "unknown"


def test_errors_everywhere_are_not_covered_by_the_rule():
    # Errors on every endpoint, late (not from the first requests on): no rule names them.
    errors = [_finding("error_rate", -1)] + [_finding("error_rate", ep) for ep in (1, 2, 3)]
    assert hint(errors, [], [], 3, 600.0, "code").category == "unknown"
    # A slowdown alongside them does not make them a code fault either.
    assert hint(errors + [_finding("latency")], [], [], 3, 600.0, "code").category == "unknown"


def test_shared_or_configuration_signs_still_come_first():
    shared = Finding(**{**_finding("latency").__dict__, "shared": ("also in checkout",)})
    assert hint([], [shared], [], 3, None, "code").category == "data_or_infra"
    config_log = LogEvidence("invalid value for pool_size", "config", 20, 5.0, False)
    assert hint([_finding("latency")], [], [config_log], 3, None, "code").category == "config"


def test_errors_on_one_of_two_endpoints_are_some_code_paths_not_every_endpoint():
    """A service-wide error finding carried by one endpoint of two (its errors lift the service's
    rate) is a fault of some code paths: `code` on a declared code change, never `config`, even
    when the errors began with the new version's first requests."""
    errors = [_finding("error_rate"), _finding("error_rate", endpoint=0)]
    assert hint(errors, [], [], 2, 20.0, "code").category == "code"
    assert hint(errors, [], [], 2, 20.0, None).category == "unknown"
    # Four of five endpoints is (nearly) every endpoint: from the first requests on, configuration.
    everywhere = [_finding("error_rate")] + [_finding("error_rate", endpoint=ep) for ep in range(4)]
    assert hint(everywhere, [], [], 5, 20.0, "code").category == "config"
    # Two of three is not.
    assert hint(everywhere[:3], [], [], 3, 20.0, "code").category == "code"
