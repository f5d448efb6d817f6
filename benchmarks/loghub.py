"""Benchmark: log template quality on Loghub-2k, next to plain drain3 in the same run.

For each of the 16 Loghub-2k systems (2,000 labelled lines each, stored in
benchmarks/data/loghub_2k/, see SOURCE.md there):

- detector: the lines' `Content` written as `log` events (service = the
  system) to a JSONL file, mined with `detector templates` (the same code:
  `detector.logs.report.run_templates`, default pipeline), the CSV read back;
  lines are grouped by the CSV's `template_id`;
- drain3: `drain3.TemplateMiner()` with its default settings (no masking
  instructions), one `add_log_message` per line; lines are grouped by
  cluster id;
- before: the masking and drain3-based miner the detector shipped before
  (`benchmarks/previous_miner.py`, a copy), grouped by template id as the
  detector's registry did.

Figures per system and on average:

- GA, grouping accuracy (Zhu et al., ICSE-SEIP 2019): the share of lines
  whose predicted group holds exactly the lines of their labelled event;
- F1, pairwise F-measure of the grouping (logparser's evaluator): precision
  and recall over the pairs of lines put in one group;
- lines/s: CPU time (`time.process_time`) of mining. For the detector twice:
  the whole command (read and decode JSON, mine, write the CSV) and mining
  alone (`LogTemplates.add_batch` on the decoded columns, 2,000 lines in one
  batch); for drain3, `add_log_message` over the same messages.

Parsing accuracy (template text equal to the labelled text) is not reported:
the detector's typed placeholders (`<NUM>`, `<IP>`) never equal Loghub's
`<*>` texts, so the figure would measure notation, not grouping.

Run: `python benchmarks/loghub.py [--json] [--systems HDFS,Apache]`. Needs
drain3 (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import machine  # noqa: E402
from benchmarks.previous_miner import template_ids as previous_template_ids  # noqa: E402
from detector.config import load_pipeline  # noqa: E402
from detector.ingest.contract import decode_lines  # noqa: E402
from detector.ingest.interner import Interner  # noqa: E402
from detector.logs.report import run_templates, settings_for  # noqa: E402
from detector.logs.templates import LogTemplates  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "loghub_2k"
SYSTEMS = ("Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux", "Mac", "OpenSSH",
           "OpenStack", "Proxifier", "Spark", "Thunderbird", "Windows", "Zookeeper")
def load(system: str) -> tuple[list[str], list[str]]:
    """(Content, EventId) of every line of one system."""
    with gzip.open(DATA / f"{system}_2k.log_structured.csv.gz", "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["Content"] for r in rows], [r["EventId"] for r in rows]


def grouping_accuracy(pred: list, truth: list[str]) -> float:
    groups: dict = defaultdict(list)
    for i, p in enumerate(pred):
        groups[p].append(i)
    truth_sizes = Counter(truth)
    correct = 0
    for members in groups.values():
        events = {truth[i] for i in members}
        if len(events) == 1 and truth_sizes[truth[members[0]]] == len(members):
            correct += len(members)
    return correct / len(truth)


def pairwise_f1(pred: list, truth: list[str]) -> float:
    def pairs(counts) -> int:
        return sum(c * (c - 1) // 2 for c in counts)

    both = pairs(Counter(zip(pred, truth)).values())
    p_pairs, t_pairs = pairs(Counter(pred).values()), pairs(Counter(truth).values())
    precision = both / p_pairs if p_pairs else 1.0
    recall = both / t_pairs if t_pairs else 1.0
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def events_jsonl(system: str, messages: list[str]) -> bytes:
    return b"\n".join(orjson.dumps({"type": "log", "ts": 1_700_000_000.0 + i, "service": system, "level": "INFO",
                                    "message": m}) for i, m in enumerate(messages)) + b"\n"


def run_detector(system: str, messages: list[str], tmp: Path, pipeline) -> tuple[list[str], float, float, int]:
    """(template id per line, command lines/s, mining lines/s, templates) through `detector templates`."""
    src, out = tmp / f"{system}.jsonl", tmp / f"{system}.csv"
    raw = events_jsonl(system, messages)
    src.write_bytes(raw)
    t0 = time.process_time()
    rc = run_templates(str(src), str(out), pipeline, err=io.StringIO())
    t_cmd = time.process_time() - t0
    if rc != 0:
        raise SystemExit(f"detector templates failed on {system} (exit {rc})")
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if [int(r["line"]) for r in rows] != list(range(1, len(messages) + 1)):
        raise SystemExit(f"{system}: the CSV does not have one row per input line")
    ids = [r["template_id"] for r in rows]
    # Mining alone, on columns decoded beforehand (a fresh LogTemplates, same settings).
    interner = Interner()
    cols = decode_lines(raw.splitlines(), interner).logs
    templates = LogTemplates(settings_for(pipeline))
    t0 = time.process_time()
    templates.add_batch(cols, interner)
    t_mine = time.process_time() - t0
    return ids, len(messages) / t_cmd, len(messages) / t_mine, len(set(ids))


def run_drain3(messages: list[str]) -> tuple[list[int], float]:
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    add = miner.add_log_message
    t0 = time.process_time()
    ids = [add(m)["cluster_id"] for m in messages]
    return ids, len(messages) / (time.process_time() - t0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", help="comma-separated subset (default: all 16)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    args = ap.parse_args(argv)
    systems = SYSTEMS if not args.systems else tuple(args.systems.split(","))
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; known: {', '.join(SYSTEMS)}")
    try:
        import drain3  # noqa: F401
    except ImportError:
        raise SystemExit("benchmarks/loghub.py compares with drain3: pip install -e '.[bench]'") from None
    pipeline = load_pipeline(None)
    run_detector("warmup", [f"warm up line {i} of {j}" for i in range(200) for j in range(2)], Path(tempfile.mkdtemp()),
                 pipeline)
    rows = []
    with tempfile.TemporaryDirectory(prefix="loghub-") as tmp:
        for system in systems:
            messages, truth = load(system)
            ids, cmd_rate, mine_rate, n_templates = run_detector(system, messages, Path(tmp), pipeline)
            d3_ids, d3_rate = run_drain3(messages)
            rows.append({
                "system": system, "events": len(set(truth)),
                "detector_ga": grouping_accuracy(ids, truth), "detector_f1": pairwise_f1(ids, truth),
                "detector_templates": n_templates,
                "detector_command_lines_per_s": cmd_rate, "detector_mining_lines_per_s": mine_rate,
                "drain3_ga": grouping_accuracy(d3_ids, truth), "drain3_f1": pairwise_f1(d3_ids, truth),
                "drain3_templates": len(set(d3_ids)), "drain3_lines_per_s": d3_rate,
                "before_ga": grouping_accuracy(previous_template_ids(system, messages), truth),
            })
    n = len(rows)
    avg = {k: sum(r[k] for r in rows) / n for k in rows[0] if k not in ("system",)}
    result = {"machine": machine(), "systems": rows, "average": avg,
              "worse_than_before": [r["system"] for r in rows if r["detector_ga"] < r["before_ga"] - 1e-9]}
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return result
    print(f"# Loghub-2k, {n} systems; {result['machine']}")
    print("| system | events | detector GA | F1 | templates | drain3 GA | F1 | templates | GA before | "
          "detector lines/s (command / mining) | drain3 lines/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in [*rows, {**avg, "system": "**average**"}]:
        print(f"| {r['system']} | {r['events']:.0f} | {r['detector_ga']:.3f} | {r['detector_f1']:.3f} | "
              f"{r['detector_templates']:.0f} | {r['drain3_ga']:.3f} | {r['drain3_f1']:.3f} | "
              f"{r['drain3_templates']:.0f} | {r['before_ga']:.3f} | "
              f"{r['detector_command_lines_per_s']:,.0f} / {r['detector_mining_lines_per_s']:,.0f} | "
              f"{r['drain3_lines_per_s']:,.0f} |")
    print(f"\nsystems worse than before: {', '.join(result['worse_than_before']) or 'none'}")
    return result


if __name__ == "__main__":
    main()
