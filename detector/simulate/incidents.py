"""`detector simulate --incidents FILE`: the incidents people would have opened, from the ground truth.

Every deploy with an injected fault (benign disturbances are not faults) gets
one `incident` event: opened `OPEN_DELAY_S` after the fault's onset (a person
notices later than a detector can), but before the service's next deploy, so
matching by service and time finds the right deploy; resolved
`RESTORE_S` later. No `deploy_id`: tune has to match them, as with a
hand-kept incident file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

OPEN_DELAY_S = 600.0
RESTORE_S = 1200.0


def incidents_from_truth(truth: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for d in truth["deploys"]:
        if not d["faults"]:
            continue
        onset = min(f["onset_ts"] for f in d["faults"] if f["onset_ts"] is not None)
        opened = onset + OPEN_DELAY_S
        if d.get("next_deploy_ts") is not None:
            opened = max(onset, min(opened, d["next_deploy_ts"] - 1.0))
        out.append({"type": "incident", "ts": round(opened, 3), "service": d["service"],
                    "incident_id": f"inc-{d['deploy_id']}", "status": "opened", "severity": "high",
                    "title": ", ".join(d["fault_kinds"]) + f" after {d['version']}",
                    "root_cause": d.get("expect_root_cause") or "unknown",
                    "resolved_ts": round(opened + RESTORE_S, 3)})
    return out


def write_incidents(path: str | Path, truth: dict[str, Any]) -> int:
    rows = incidents_from_truth(truth)
    Path(path).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return len(rows)
