"""`make demo` end to end on a short scenario: broker up, live verdicts, report written, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kafka


def _brokers(tmpdir: str) -> set[int]:
    """Broker processes started under `tmpdir` as TMPDIR (the embedded broker inherits it), so
    brokers of other tests or other users of the machine do not count."""
    out = subprocess.run(["pgrep", "-f", "tansu"], capture_output=True, text=True).stdout
    mine = set()
    for pid in (int(x) for x in out.split()):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if f"TMPDIR={tmpdir}".encode() in env:
            mine.add(pid)
    return mine


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="the demo always uses its own broker")
def test_the_demo_runs_the_whole_loop_and_cleans_up(tmp_path):
    """The demo streams a scenario live, prints verdicts, writes its report and leaves no broker running."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    run = subprocess.run([sys.executable, "-m", "detector.demo", "--scenario", "config_fault", "--speed", "200",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TMPDIR": str(tmpdir)})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "VERDICT payments d-cfg-1 (v2.14.0): ROLLBACK" in run.stdout
    report = (tmp_path / "demo-report.md").read_text()
    assert "| d-cfg-1 | payments | rolling | rollback | rollback |" in report
    assert "threshold script" in report
    assert not _brokers(str(tmpdir))
