"""Past the endpoint cap, which endpoint gets a slot goes by arrival order, not by batching.

Stress seed 295: a request to `GET /once/2` counted as its own endpoint when the input was read in
one chunk and folded into `other` in chunks of 97 lines (a verdict named other weak endpoints).
New keys of a batch were admitted in key order (interned ids: an endpoint string first seen in
another service sorts first), so a batch holding several new endpoints past the cap let in other
ones than the same rows fed one at a time.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from detector.aggregate.series import RequestSeries
from detector.config import load_pipeline
from detector.ingest.interner import Interner


def _endpoints(batches: list[list[str]]) -> list[str]:
    limits = dataclasses.replace(load_pipeline().limits, max_endpoints_per_service=2)
    interner = Interner()
    interner.intern("GET /b")  # first seen elsewhere: the lowest id of the three
    table = RequestSeries(interner, limits)
    col = lambda names: np.array([interner.intern(s) for s in names], dtype=np.int32)  # noqa: E731
    out = []
    for endpoints in batches:
        n = len(endpoints)
        idx = table.map(col(["shop"] * n), col(endpoints), col(["v1"] * n), now=0.0)
        out += [interner.lookup(int(table.endpoint[i])) for i in idx.tolist()]
    return out


def test_the_cap_admits_endpoints_in_arrival_order_whatever_the_batching():
    rows = ["GET /a", "GET /c", "GET /b", "GET /a"]
    one_by_one = _endpoints([[r] for r in rows])
    assert one_by_one == ["GET /a", "GET /c", "other", "GET /a"]
    assert _endpoints([rows]) == one_by_one
