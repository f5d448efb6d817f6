"""`detector templates`: one CSV row per log line, the detector's template ids, --since."""

from __future__ import annotations

import csv

import orjson
import pytest

from detector.cli import main
from detector.config import load_pipeline
from detector.core import Core
from detector.ingest.contract import decode_lines
from detector.logs import template_id
from detector.logs.report import mine_file


def _log(ts, service, message, level="INFO", version="v1") -> bytes:
    return orjson.dumps({"type": "log", "ts": ts, "service": service, "level": level, "message": message,
                         "version": version})


def _input(tmp_path, lines: list[bytes]):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_one_row_per_log_line_with_input_line_numbers(tmp_path, capsys):
    """Blank, non-log and bad lines are counted in `line` but not written; ids are the template ids."""
    lines = [
        _log(1.0, "checkout", "user 17 logged in from 10.0.0.1"),
        b"",
        orjson.dumps({"type": "request", "ts": 1.5, "service": "checkout", "endpoint": "/cart", "status": 200,
                      "latency_ms": 3.0}),
        _log(2.0, "checkout", "user 42 logged in from 10.0.0.9"),
        b"{not json",
        _log(3.0, "payments", "charge failed: card declined", level="ERROR"),
        _log(4.0, "checkout", "VM Started"),
    ]
    src, out = _input(tmp_path, lines), tmp_path / "t.csv"
    assert main(["templates", "--input", str(src), "--out", str(out)]) == 0
    rows = _rows(out)
    assert [r["line"] for r in rows] == ["1", "4", "6", "7"]
    assert [r["service"] for r in rows] == ["checkout", "checkout", "payments", "checkout"]
    assert rows[0]["template"] == rows[1]["template"] == "user <NUM> logged in from <IP>"
    assert rows[0]["template_id"] == rows[1]["template_id"] == template_id("checkout", rows[0]["template"])
    assert rows[2]["template"] == "charge failed: card declined"
    assert len({r["template_id"] for r in rows}) == 3
    err = capsys.readouterr().err
    assert "7 input lines, 4 log lines, 3 templates" in err
    assert "rejected line 5" in err


def test_ids_are_the_ones_the_detector_core_reports(tmp_path):
    """The CSV's ids equal the ids the core's own LogTemplates assigns to the same events."""
    lines = [_log(float(i), f"svc{i % 3}", f"request {i} took {i % 50} ms on worker-{i % 4} status ok")
             for i in range(300)]
    lines += [_log(300.0 + i, "svc1", word) for i, word in enumerate(["VM Started", "VM Stopped", "VM Paused"])]
    src = _input(tmp_path, lines)
    pipeline = load_pipeline(None)
    mined = mine_file(str(src), pipeline)

    core = Core(pipeline)
    decoded = decode_lines(lines, core.interner)
    core.process(decoded)
    core.finish()  # the core mines a window's lines as the window closes
    by_core = {(t.service, t.text): t.id for t in core.logs.templates()}
    by_cli = {(t.service, t.text): t.id for t in mined.templates.templates()}
    assert by_cli == by_core
    assert len(mined.lines) == len(lines)


def test_since_lists_templates_a_release_added(tmp_path, capsys):
    """--since prints the templates first seen after TS with their counts, nothing older."""
    lines = [_log(float(i), "checkout", f"order {i} placed") for i in range(100)]
    lines += [_log(100.0 + i, "checkout", f"payment capture failed for order {i}", level="ERROR", version="v2")
              for i in range(7)]
    src, out = _input(tmp_path, lines), tmp_path / "t.csv"
    assert main(["templates", "--input", str(src), "--out", str(out), "--since", "1970-01-01T00:01:30Z"]) == 0
    printed = capsys.readouterr().out
    assert "1 template(s) first seen after 90.000" in printed
    assert "7 line(s)" in printed and "versions=v2" in printed
    assert "payment capture failed for order <NUM>" in printed
    assert "order <NUM> placed" not in printed


@pytest.mark.parametrize("argv, message", [
    (["--since", "last tuesday"], "neither Unix seconds nor an RFC 3339 time"),
    (["--since", "2026-12-03T09:00:00"], "neither Unix seconds nor an RFC 3339 time"),
])
def test_bad_since_is_a_clear_error(tmp_path, capsys, argv, message):
    src = _input(tmp_path, [_log(1.0, "a", "x")])
    assert main(["templates", "--input", str(src), "--out", str(tmp_path / "t.csv"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    assert main(["templates", "--input", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "t.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()
