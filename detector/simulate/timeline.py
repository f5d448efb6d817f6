"""Who serves traffic when: versions, pods and deploy events over time.

Each service's history is a list of segments. Within a segment the stable
version takes the traffic the new version does not; the new version's share
moves linearly from `p0` to `p1` between `r0` and `r1` (a rolling ramp) or
stays put (a canary). A deploy that starts while a canary is open supersedes
it: the canary's pods vanish and the stable version stays the base.

Pods are named like Kubernetes pods (service-<hash of version>-<suffix>); a
version with traffic share p runs ceil(p * instances) of them, at least one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from detector.simulate.spec import Deploy, Scenario

# Kubernetes' pod-name alphabet (no vowels, no look-alike digits).
_POD_ALPHABET = np.array(list("bcdfghjklmnpqrstvwxz2456789"))
# Keeps (service, time) sortable as one float key for a single searchsorted.
_SERVICE_STRIDE_S = 1e8


@dataclass(frozen=True)
class DeployRecord:
    """A deploy as it actually unfolded in this (possibly shortened) run."""

    deploy: Deploy
    version_index: int
    previous_version: str
    finished_s: float | None  # None: never reached 100 % in this run
    superseded_s: float | None  # when a later deploy replaced it before it reached 100 %
    next_deploy_s: float | None  # when the service's next deploy started (ends any open verification)
    events: tuple[tuple[float, dict], ...]  # (relative time, deploy event body)


@dataclass
class Timeline:
    versions: list[str] = field(default_factory=list)
    version_service: list[int] = field(default_factory=list)
    version_deploy: list[int] = field(default_factory=list)  # index into records, -1: initial
    instances: list[str] = field(default_factory=list)
    inst_offset: list[int] = field(default_factory=list)  # first pod of each version
    records: list[DeployRecord] = field(default_factory=list)
    # segment columns, sorted by (service, start)
    seg_key: np.ndarray = field(default_factory=lambda: np.empty(0))
    seg_stable: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    seg_new: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    seg_p0: np.ndarray = field(default_factory=lambda: np.empty(0))
    seg_p1: np.ndarray = field(default_factory=lambda: np.empty(0))
    seg_r0: np.ndarray = field(default_factory=lambda: np.empty(0))
    seg_r1: np.ndarray = field(default_factory=lambda: np.empty(0))
    service_instances: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def split(self, svc: np.ndarray, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stable version, new version or -1, new version's share) at times `t_s`."""
        key = svc * _SERVICE_STRIDE_S + t_s
        seg = np.searchsorted(self.seg_key, key, side="right") - 1
        r0, r1 = self.seg_r0[seg], self.seg_r1[seg]
        frac = np.clip((t_s - r0) / (r1 - r0), 0.0, 1.0)
        p = self.seg_p0[seg] + (self.seg_p1[seg] - self.seg_p0[seg]) * frac
        new = self.seg_new[seg]
        return self.seg_stable[seg], new, np.where(new >= 0, p, 0.0)

    def pods(self, svc: np.ndarray, share: np.ndarray) -> np.ndarray:
        """How many pods a version runs when it has `share` of the traffic."""
        n = self.service_instances[svc]
        return np.clip(np.ceil(share * n - 1e-9), 1, n).astype(np.int64)


def _pod_names(rng: np.random.Generator, service: str, version: str, n: int) -> list[str]:
    rs_hash = hashlib.sha1(f"{service}\x1f{version}".encode()).hexdigest()[:9]
    suffixes = ["".join(row) for row in _POD_ALPHABET[rng.integers(0, len(_POD_ALPHABET), size=(n, 5))]]
    return [f"{service}-{rs_hash}-{s}" for s in suffixes]


def build_timeline(scenario: Scenario) -> Timeline:
    tl = Timeline()
    # Pod names come from their own stream so that changing traffic draws
    # never renames pods.
    name_rng = np.random.default_rng([scenario.seed, 0x9D5])
    segs: list[tuple[float, int, int, float, float, float, float]] = []
    active = scenario.active_deploys()
    duration_s = scenario.duration_s

    def add_version(svc_i: int, version: str, deploy_i: int) -> int:
        svc = scenario.services[svc_i]
        tl.versions.append(version)
        tl.version_service.append(svc_i)
        tl.version_deploy.append(deploy_i)
        tl.inst_offset.append(len(tl.instances))
        tl.instances.extend(_pod_names(name_rng, svc.name, version, svc.instances))
        return len(tl.versions) - 1

    for svc_i, svc in enumerate(scenario.services):
        stable = add_version(svc_i, svc.version, -1)
        # (start, stable, new, p0, p1, r0, r1), times relative to scenario start
        mine: list[tuple[float, int, int, float, float, float, float]] = [(0.0, stable, -1, 0.0, 0.0, 0.0, 1.0)]
        svc_deploys = [d for d in active if d.service == svc.name]
        for i, d in enumerate(svc_deploys):
            at = d.at_s
            # Drop what a superseded canary would still have done (its promotion).
            mine = [s for s in mine if s[0] < at]
            stable = mine[-1][1]
            v = add_version(svc_i, d.version, len(tl.records))
            if d.strategy == "rolling":
                mine.append((at, stable, v, 0.0, 1.0, at, at + d.rollout_s))
                mine.append((at + d.rollout_s, v, -1, 0.0, 0.0, 0.0, 1.0))
            elif d.strategy == "blue_green":
                mine.append((at, v, -1, 0.0, 0.0, 0.0, 1.0))
            else:
                w = float(d.canary_weight or 0.0)
                mine.append((at, stable, v, w, w, at, at + 1.0))
                if d.promote_after_s is not None:
                    mine.append((at + d.promote_after_s, v, -1, 0.0, 0.0, 0.0, 1.0))
            nxt = svc_deploys[i + 1].at_s if i + 1 < len(svc_deploys) else None
            fin = d.finished_at_s()
            if d.strategy == "blue_green":
                fin = d.at_s + 1.0  # the switch is instant; the CD system reports it a second later
            superseded = None
            if nxt is not None and (fin is None or nxt < fin):
                superseded, fin = nxt, None
            if fin is not None and fin >= duration_s:
                fin = None
            body = {
                "type": "deploy",
                "service": svc.name,
                "deploy_id": d.deploy_id,
                "version": d.version,
                "phase": "started",
                "previous_version": tl.versions[stable],
                "strategy": d.strategy,
            }
            if d.canary_weight is not None:
                body["canary_weight"] = d.canary_weight
            if d.change_kind != "unknown":  # the deploy event names no change kind
                body["change_kind"] = d.change_kind
            body.update(commit=d.commit, author=d.author)
            events = [(at, body)]
            if fin is not None:
                events.append((fin, {**body, "phase": "finished"}))
            tl.records.append(
                DeployRecord(
                    deploy=d,
                    version_index=v,
                    previous_version=tl.versions[stable],
                    finished_s=fin,
                    superseded_s=superseded,
                    next_deploy_s=nxt,
                    events=tuple(events),
                )
            )
        segs.extend((svc_i * _SERVICE_STRIDE_S + s[0], *s[1:]) for s in mine)

    cols = list(zip(*segs))
    tl.seg_key = np.asarray(cols[0], dtype=np.float64)
    order = np.argsort(tl.seg_key, kind="stable")
    tl.seg_key = tl.seg_key[order]
    tl.seg_stable = np.asarray(cols[1], dtype=np.int64)[order]
    tl.seg_new = np.asarray(cols[2], dtype=np.int64)[order]
    tl.seg_p0 = np.asarray(cols[3], dtype=np.float64)[order]
    tl.seg_p1 = np.asarray(cols[4], dtype=np.float64)[order]
    tl.seg_r0 = np.asarray(cols[5], dtype=np.float64)[order]
    tl.seg_r1 = np.asarray(cols[6], dtype=np.float64)[order]
    tl.service_instances = np.asarray([s.instances for s in scenario.services], dtype=np.int64)
    return tl
