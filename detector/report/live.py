"""The live status page of `detector run`: the report's pages, from the sidecar's own windows.

The sidecar attaches a `Recorder` to each partition's core as it takes the
partition and hands every record it emits to `record`. `render(path)` draws
`/` (recent deploys: verifying with the event time elapsed and the findings
so far, or the verdict) and `/deploys/<id>.html` from that history, on
request. Only this instance's partitions are shown. Read-only: nothing here
changes detection state.
"""

from __future__ import annotations

from collections import deque

from detector.config import Pipeline
from detector.report.model import DeployView, from_deploy_event, join
from detector.report.pages import deploy_page, fmt_ts, index_page, page_file
from detector.report.summaries import Recorder, Summaries

REFRESH_S = 10


class StatusPages:
    def __init__(self, pipeline: Pipeline, retain_s: float = 6 * 3600.0, max_records: int = 5000,
                 max_deploys: int = 50) -> None:
        self.p = pipeline
        self.summaries = Summaries(pipeline.windows.width_s, retain_s=retain_s)
        self.recorders: dict[int, Recorder] = {}
        self.anomalies: deque[dict] = deque(maxlen=max_records)
        self.verdicts: dict[str, dict] = {}  # deploy id -> verdict, the newest max_records
        self.max_deploys = max_deploys
        self._seen: dict[str, object] = {}  # deploy events of partitions no longer owned, kept for the list

    def attach(self, partition: int, core) -> None:
        self.detach(partition)
        self.recorders[partition] = Recorder.attach(core, self.summaries)

    def detach(self, partition: int) -> None:
        rec = self.recorders.pop(partition, None)
        if rec is not None:
            rec.core.window_listeners.remove(rec.observe)
            for dep_id, ev in rec.deploys.items():
                self._seen.setdefault(dep_id, ev)

    def record(self, rec) -> None:
        """A record the sidecar emitted (anomaly or verdict)."""
        d = rec.to_dict()
        if d["type"] == "root_cause":  # completes its verdict's root cause
            held = self.verdicts.get(d["deploy_id"])
            if held is not None:
                held["root_cause"] = d["root_cause"]
            return
        if d["type"] == "verdict":
            self.verdicts.pop(d["deploy_id"], None)
            self.verdicts[d["deploy_id"]] = d
            if len(self.verdicts) > self.anomalies.maxlen:
                del self.verdicts[next(iter(self.verdicts))]
        else:
            self.anomalies.append(d)

    def _views(self) -> tuple[list[DeployView], list[dict]]:
        deploys = {dep_id: from_deploy_event(ev) for dep_id, ev in self._seen.items()}
        now = self.summaries.last_end
        for rec in self.recorders.values():
            rec.refresh_templates()
            for dep_id, ev in rec.deploys.items():
                deploys.setdefault(dep_id, from_deploy_event(ev))
            for v in rec.core.judge.verifications.values():
                if not v.open:
                    continue
                d = deploys.setdefault(v.deploy.deploy_id, from_deploy_event(v.deploy))
                d.verifying = True
                d.elapsed_s = None if now is None else max(0.0, now - d.ts)
                d.evidence_so_far = [_finding(f) for f in v.findings.values()]
        views, shared = join(list(deploys.values()), [*self.verdicts.values(), *self.anomalies], [])
        return views[-self.max_deploys:], shared

    def render(self, path: str) -> bytes | None:
        """The page at `path`, or None when there is no such page."""
        if path in ("/", "/index.html"):
            views, shared = self._views()
            s = self.summaries
            subtitle = (f"Live: {len(views)} recent deploys of partitions {sorted(self.recorders)}; latest closed "
                        f"window ends {fmt_ts(s.last_end)} (event time); refreshes every {REFRESH_S} s.")
            return index_page(list(reversed(views)), shared, s, self.p, "Detector status", subtitle,
                              href_of=lambda d: f"/deploys/{page_file(d.deploy_id)}",
                              refresh_s=REFRESH_S).encode()
        if path.startswith("/deploys/"):
            name = path[len("/deploys/"):]
            views, _ = self._views()
            for d in views:
                if page_file(d.deploy_id) == name:
                    return deploy_page(d, self.summaries, self.p, back_href="/", refresh_s=REFRESH_S).encode()
        return None


def _finding(f) -> str:
    where = "service-wide" if f.endpoint < 0 else "one endpoint"
    text = (f"rule '{f.rule}' ({f.signal}, {where}): {f.observed:.4g} vs {f.expected:.4g} "
            f"({'stable version, same windows' if f.reference == 'stable' else 'the service before the deploy'}), "
            f"{f.n:,} requests -> {f.action}{' (dry run)' if f.dry_run else ''}")
    if f.shared:
        text += "; not the deploy's: " + "; ".join(f.shared)
    return text
