"""The demo's records, byte for byte: a refactor (moving modules, speeding up a path) changes none.

`tests/golden/demo-records.jsonl` holds what `detector replay` wrote for the
demo scenario (seed 7) when it was last changed on purpose. A change of
behaviour that is meant updates the file in the same commit, with the reason:

    detector simulate demo --out /tmp/demo.jsonl
    detector replay --input /tmp/demo.jsonl --output tests/golden/demo-records.jsonl
"""

from __future__ import annotations

import difflib
from pathlib import Path

from detector.config import load_pipeline
from detector.records import encode
from detector.replay import replay
from detector.simulate.main import resolve_scenario
from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import load_scenario

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "demo-records.jsonl"


def test_the_demo_replays_to_the_recorded_bytes(tmp_path):
    events = tmp_path / "demo.jsonl"
    simulate_to_file(load_scenario(resolve_scenario("demo")), events)
    out: list[bytes] = []
    replay([events], load_pipeline(), lambda r: out.append(encode(r) + b"\n"))
    got, want = b"".join(out), GOLDEN.read_bytes()
    if got != want:
        diff = "\n".join(difflib.unified_diff(want.decode().splitlines(), got.decode().splitlines(), "recorded",
                                              "now", lineterm="", n=0))
        raise AssertionError(f"the demo's records changed (update {GOLDEN.name} if that is meant):\n{diff[:4000]}")
