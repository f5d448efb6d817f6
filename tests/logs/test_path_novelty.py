"""Novelty that a request path alone does not make (issue 12, tenth round).

A failure line of the new version that a known template of the service
already says for another endpoint ("request <NUM> to GET /v1/items failed
..." known, "request <NUM> to PUT /v1/cart failed ..." first seen after the
deploy) is not a new error pattern of the release. The miner keeps the two
apart (the method is a word), so template ids, texts and counts stay as they
are; only novelty compares the templates' path-free keys.
"""

from __future__ import annotations

import random

import pytest

from detector.ingest.columns import LEVEL_ERROR, LEVEL_WARN
from detector.ingest.interner import Interner
from detector.logs import DeployContext, LogTemplates
from detector.logs.registry import TemplateRegistry, path_free_key

from tests.logs.test_logs import DEPLOY_TS, feed, healthy_stream

FAIL = "request {n} to {endpoint} failed with status 503 after {ms} ms"


def _deploy(stable: str | None = "v1") -> DeployContext:
    return DeployContext(service="checkout", deploy_id="d-7", deploy_ts=DEPLOY_TS, new_version="v2",
                         stable_version=stable)


def _lines(rng: random.Random, start: float, n: int, service: str, version: str, endpoint: str,
           msg: str = FAIL, level: int = LEVEL_ERROR, step: float = 7.0):
    return [(start + i * step, service, version, level,
             msg.format(n=rng.randint(1, 10**9), endpoint=endpoint, ms=rng.randint(5, 900))) for i in range(n)]


def _novel(rows, deploys=None):
    it, lt = Interner(), LogTemplates()
    found = feed(lt, rows, it, deploys or [_deploy()])
    return [f for f in found if f.signal == "log_novelty"], lt


@pytest.mark.parametrize("text, key", [
    ("request <NUM> to PUT /v1/cart failed", "request <NUM> to <*> <*> failed"),
    ("request <NUM> to GET <*> failed", "request <NUM> to <*> <*> failed"),
    ("request completed method=GET path=/v1/items/<NUM> status=<NUM>", "request completed <*> <*> status=<NUM>"),
    ('"POST /v2/pay HTTP/<NUM>" <NUM>', '<*> <*> HTTP/<NUM>" <NUM>'),
    ("rejecting request DELETE /v1/orders: queue full", "rejecting request <*> <*> queue full"),
    ("cannot open /etc/app.yaml: no such file", "cannot open <*> no such file"),
    # a method word not in front of a path, and words, stay
    ("PUT failed for user <NUM>", "PUT failed for user <NUM>"),
    ("deadlock detected on <HOST>", "deadlock detected on <HOST>"),
])
def test_path_free_key(text, key):
    assert path_free_key(text) == key


def test_a_failure_on_another_endpoint_is_not_a_new_pattern():
    """The new version fails on an endpoint that never failed before, with the service's known failure
    line: no log_novelty. The line keeps its own template (id, text and count unchanged)."""
    rng = random.Random(1)
    rows = healthy_stream(seed=31, end_ts=1_300.0)
    rows += _lines(rng, 200.0, 30, "checkout", "v1", "GET /v1/items", step=20.0)
    cart = _lines(rng, DEPLOY_TS + 30.0, 25, "checkout", "v2", "PUT /v1/cart")
    novel, lt = _novel(rows + cart)
    assert novel == []
    texts = {t.text: t for t in lt.templates("checkout")}
    put = texts["request <NUM> to PUT /v1/cart failed with status <NUM> after <DUR>"]
    assert put.counts_by_level["error"] == 25 and put.versions.keys() == {"v2"}
    assert "request <NUM> to GET /v1/items failed with status <NUM> after <DUR>" in texts


def test_without_the_known_failure_line_the_same_lines_are_new():
    """The same post-deploy lines with no path kin known before the deploy are novel, from 3 lines."""
    rng = random.Random(1)
    rows = healthy_stream(seed=31, end_ts=1_300.0)
    cart = _lines(rng, DEPLOY_TS + 30.0, 3, "checkout", "v2", "PUT /v1/cart", step=20.0)
    novel, _ = _novel(rows + cart)
    assert [(f.template, f.scope, f.count_since_deploy) for f in novel] == [
        ("request <NUM> to PUT /v1/cart failed with status <NUM> after <DUR>", "version", 3)]


def test_a_new_error_next_to_a_path_is_still_new():
    """A path in both lines does not hide a different word: a new error on a known endpoint is new."""
    rng = random.Random(2)
    rows = healthy_stream(seed=32, end_ts=1_300.0)
    rows += _lines(rng, 200.0, 30, "checkout", "v1", "GET /v1/items", step=20.0)
    crash = "unhandled KeyError while processing {endpoint} trace_id={n}"
    new = _lines(rng, DEPLOY_TS + 30.0, 4, "checkout", "v2", "GET /v1/items", msg=crash, step=20.0)
    novel, _ = _novel(rows + new)
    assert [f.template for f in novel] == ["unhandled KeyError while processing GET /v1/items trace_id=<NUM>"]


def test_a_path_kin_known_only_in_another_service_is_not_enough():
    """Only the service's own templates (and other versions) make a line known: another service's
    path kin before the deploy does not, and the finding is the deploy's (only v2 logs it)."""
    rng = random.Random(3)
    rows = healthy_stream(seed=33, end_ts=1_300.0)
    rows += _lines(rng, 200.0, 30, "payments", "v1", "GET /v1/items", step=20.0)
    cart = _lines(rng, DEPLOY_TS + 30.0, 6, "checkout", "v2", "PUT /v1/cart", step=20.0)
    novel, _ = _novel(rows + cart)
    assert [(f.scope, f.services) for f in novel] == [("version", ("checkout",))]


def test_path_kin_from_every_version_and_another_service_since_the_deploy_is_shared():
    """Since the deploy the stable version fails on one endpoint, the new one on another, and another
    service too (a shared slowdown): the new version's line is shared evidence, not the deploy's."""
    rng = random.Random(4)
    rows = healthy_stream(seed=34, end_ts=1_300.0)
    rows += _lines(rng, DEPLOY_TS + 20.0, 30, "checkout", "v1", "GET /v1/items", step=5.0)
    rows += _lines(rng, DEPLOY_TS + 21.0, 30, "checkout", "v2", "PUT /v1/cart", step=5.0)
    rows += _lines(rng, DEPLOY_TS + 22.0, 30, "payments", "v1", "POST /v1/pay", step=5.0)
    novel, _ = _novel(rows)
    assert {f.scope for f in novel} == {"shared"} and novel
    assert all(f.services == ("checkout", "payments") and f.versions == ("v1", "v2") for f in novel)


def test_a_path_kin_the_new_version_logged_long_before_the_deploy_makes_it_known():
    """The new version's own path kin from before the grace period counts like any known template."""
    rng = random.Random(5)
    rows = healthy_stream(seed=35, end_ts=1_300.0)
    rows += _lines(rng, 100.0, 10, "checkout", "v2", "GET /v1/items", level=LEVEL_WARN)
    cart = _lines(rng, DEPLOY_TS + 30.0, 10, "checkout", "v2", "PUT /v1/cart")
    novel, _ = _novel(rows + cart)
    assert novel == []


def test_the_key_follows_the_template_text_as_the_miner_generalises_it():
    """A template's text changes (a position becomes <*>): its path-free key and group follow, the
    old key's group loses it."""
    it = Interner()
    reg = TemplateRegistry(it)
    svc = it.intern("checkout")
    a = reg.add(svc, ("request", "<NUM>", "to", "GET", "/v1/items", "failed"))
    b = reg.add(svc, ("request", "<NUM>", "to", "PUT", "/v1/cart", "failed"))
    c = reg.add(svc, ("timeout", "on", "/v1/cart"))
    assert reg.path_kin(a) == reg.path_kin(b) == [a, b] and reg.path_kin(c) == [c]
    reg.set_text(c, "timeout on <*>")
    assert reg.path_kin(c) == [c] and reg.path_key[c] == "timeout on <*>"
    reg.set_text(a, "request <NUM> to <*> <*> failed")  # the method became a parameter too
    assert reg.path_kin(b) == [a, b]
    reg.set_text(a, "request <NUM> to <*> <*> refused")
    assert reg.path_kin(a) == [a] and reg.path_kin(b) == [b]
    assert sum(len(v) for v in reg.by_key.values()) == len(reg)
    empty = reg.add(svc, ())  # a line of no tokens: its template's text stays empty
    assert reg.path_kin(empty) == [empty]


def test_the_miner_generalising_a_known_path_keeps_a_new_endpoint_known():
    """Before the deploy two GET paths fail, so the known template becomes "... GET <*> failed ...";
    a PUT failure after the deploy is its path kin all the same."""
    rng = random.Random(6)
    rows = healthy_stream(seed=36, end_ts=1_300.0)
    rows += _lines(rng, 200.0, 15, "checkout", "v1", "GET /v1/items", step=20.0)
    rows += _lines(rng, 210.0, 15, "checkout", "v1", "GET /v1/orders/42", step=20.0)
    cart = _lines(rng, DEPLOY_TS + 30.0, 25, "checkout", "v2", "PUT /v1/cart")
    novel, lt = _novel(rows + cart)
    assert novel == []
    assert "request <NUM> to GET <*> failed with status <NUM> after <DUR>" in {t.text for t in lt.templates()}
