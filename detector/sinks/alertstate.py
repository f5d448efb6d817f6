"""The verdict alerts the Alertmanager sink has posted, kept in a file so that they outlive a restart.

A verdict's ``root_cause`` record can arrive after the sidecar restarted
(the checkpoint covered the verdict, not yet its follow-up). To update that
verdict's alert in place the sink needs what it posted: the label set (the
alert's identity in Alertmanager), ``startsAt``, and the verdict itself, to
rebuild the annotations from the completed root cause.

What is kept: every verdict alert the sink posted and still holds as firing
(resolved and evicted ones leave the file), each with its labels,
annotations, ``startsAt``, the time of its last send and the ``endsAt`` that
send carried, and the verdict as its record dict. At most ``max_alerts``
entries (the sink's own cap). The file is rewritten atomically
(``statefile.py``) after a pass that changed it, so at most every
``alertmanager_resend_s`` for re-sends alone.

What is restored: only the entries whose ``endsAt`` is still ahead. Alertmanager
has resolved the others by itself while the sidecar was down; posting them
again would page again, so they are dropped (and a late ``root_cause`` record
for them is logged as not posted, as before).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from detector.records import Verdict
from detector.sinks.statefile import write_atomically

STATE_VERSION = 1


class AlertStateError(ValueError):
    """The Alertmanager state file cannot be read; the message says what to do."""


@dataclass(frozen=True)
class PostedAlert:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at_s: float
    last_sent_s: float
    ends_at_s: float  # the endsAt of the last send: Alertmanager resolves the alert by itself then
    verdict: Verdict


def verdict_from_dict(d: dict[str, Any]) -> Verdict:
    """A verdict back from its record dict (`Verdict.to_dict`)."""
    return Verdict(ts=float(d["ts"]), service=d["service"], deploy_id=d["deploy_id"], version=d["version"],
                   decision=d["decision"], reasons=tuple(d["reasons"]), root_cause=d["root_cause"]["category"],
                   evidence=tuple(d["root_cause"]["evidence"]), anomalies=tuple(d["anomalies"]),
                   started=float(d["verification"]["started"]), ended=float(d["verification"]["ended"]),
                   detail=d.get("detail") or {})


class AlertStateFile:
    """The posted verdict alerts in `path` (None: not kept, as with no file at all)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._written: bytes | None = None

    def load(self) -> list[PostedAlert]:
        """Every entry of the file (none when it does not exist); raises AlertStateError when unreadable."""
        if self.path is None or not self.path.exists():
            return []
        try:
            data = self.path.read_bytes()
            doc = orjson.loads(data)
            if doc.get("version") != STATE_VERSION:
                raise ValueError(f"version {doc.get('version')!r}, expected {STATE_VERSION}")
            alerts = [PostedAlert(labels=dict(a["labels"]), annotations=dict(a["annotations"]),
                                  starts_at_s=float(a["starts_at_s"]), last_sent_s=float(a["last_sent_s"]),
                                  ends_at_s=float(a["ends_at_s"]), verdict=verdict_from_dict(a["verdict"]))
                      for a in doc["alerts"]]
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise AlertStateError(
                f"Alertmanager state file {self.path} (sinks.alertmanager_state_path) is unreadable "
                f"({type(e).__name__}: {e}); restore it, or delete it knowing that root_cause records of "
                "verdicts posted before the restart then do not update their alerts") from None
        self._written = data
        return alerts

    def changes(self, alerts: list[PostedAlert]) -> bytes | None:
        """The file's new content for `alerts`; None when it holds them already (or no file is kept)."""
        if self.path is None:
            return None
        data = orjson.dumps({"version": STATE_VERSION, "alerts": [
            {"labels": a.labels, "annotations": a.annotations, "starts_at_s": a.starts_at_s,
             "last_sent_s": a.last_sent_s, "ends_at_s": a.ends_at_s, "verdict": a.verdict.to_dict()}
            for a in alerts]})
        return None if data == self._written else data

    def write(self, data: bytes) -> None:
        """Replace the file with `data` (from `changes`); raises OSError."""
        assert self.path is not None, "changes() returns None when no file is kept"
        write_atomically(self.path, data)
        self._written = data
