"""A verdict's root cause completed after it: the `root_cause` record.

A rollback goes out as soon as it is certain, before the log lines that
explain it. Within `verification.root_cause_grace_s` of event time after the
verdict, log evidence that changes the root-cause category emits one
`root_cause` record for the verdict's id; replay and a restored core emit the
same record at the same event time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from detector.config import load_pipeline
from detector.core import Core
from detector.ingest.contract import decode_batch
from detector.records import encode
from detector.simulate.main import resolve_scenario
from detector.simulate.output import simulate_to_file
from detector.simulate.scenario import load_scenario
from detector.simulate.scoring import pipeline_for, replay_scenario, score

SCENARIO = "late_exception_after_rollback"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("root_cause")


def _kinds(records, kind):
    return [r for r in records if r["type"] == kind]


def test_a_template_arriving_after_a_rollback_completes_its_root_cause(workdir):
    """The rollback goes out with root cause `unknown`; the exception template logged just after
    it completes the verdict with `code` in one record carrying the verdict's id."""
    truth, records, _ = replay_scenario(SCENARIO, workdir)
    (verdict,) = _kinds(records, "verdict")
    assert verdict["decision"] == "rollback"
    assert verdict["root_cause"]["category"] == "unknown", "the template must arrive after the verdict"
    (rc,) = _kinds(records, "root_cause")
    assert rc["id"] == "v-d-late-exc-rc" and rc["verdict_id"] == verdict["id"] == "v-d-late-exc"
    assert rc["deploy_id"] == "d-late-exc" and rc["service"] == "invoices"
    assert rc["root_cause"]["category"] == "code"
    assert any("KeyError" in e for e in rc["root_cause"]["evidence"])
    grace = load_pipeline().verification.root_cause_grace_s
    assert verdict["ts"] < rc["ts"] <= verdict["ts"] + grace
    # the scorer takes the completed root cause
    (result,) = score(truth, records).results
    assert result.got == "rollback" and result.got_root_cause == "code"


def test_no_grace_no_root_cause_record(workdir):
    """With `root_cause_grace_s = 0` the verdict stands as it went out."""
    base = load_pipeline()
    pipeline = dataclasses.replace(base, verification=dataclasses.replace(base.verification, root_cause_grace_s=0.0))
    _truth, records, _ = replay_scenario(SCENARIO, workdir, pipeline=pipeline)
    assert _kinds(records, "verdict")[0]["root_cause"]["category"] == "unknown"
    assert not _kinds(records, "root_cause")


def test_evidence_after_the_grace_changes_nothing(workdir):
    """A grace shorter than the time to the template's first lines ends without a record."""
    base = load_pipeline()
    pipeline = dataclasses.replace(base, verification=dataclasses.replace(base.verification, root_cause_grace_s=1.0))
    _truth, records, _ = replay_scenario(SCENARIO, workdir, pipeline=pipeline)
    assert not _kinds(records, "root_cause")


def test_a_core_restored_during_the_grace_emits_the_same_record(workdir):
    """Restoring into a new core after every batch (inside the grace too) gives the same records byte
    for byte as one uninterrupted core: the grace and its evidence are part of the snapshot."""
    sc = load_scenario(resolve_scenario(SCENARIO))
    path = Path(workdir) / f"{SCENARIO}-chunks.jsonl"
    pipeline = pipeline_for(simulate_to_file(sc, path))
    lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    chunks = [lines[i:i + 400] for i in range(0, len(lines), 400)]

    def run(restore: bool) -> tuple[list[bytes], bool]:
        core, out, cut_in_grace = Core(pipeline), [], False
        for chunk in chunks:
            out += [encode(r) for r in core.process(decode_batch(chunk, core.interner))]
            if restore:
                cut_in_grace |= bool(core.judge.grace)
                core = Core.restore(pipeline, core.snapshot())
        return out + [encode(r) for r in core.finish()], cut_in_grace

    want, _ = run(restore=False)
    got, cut_in_grace = run(restore=True)
    assert cut_in_grace, "no cut fell inside the grace: the test would prove nothing"
    assert got == want
    assert [orjson.loads(r)["type"] for r in got].count("root_cause") == 1
