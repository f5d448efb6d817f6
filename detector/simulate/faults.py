"""Faults and disturbances compiled to vectorised effects on generated traffic.

A fault belongs to one deploy and touches only requests served by that
deploy's new version (on its endpoints, from its onset). A disturbance is
benign: it touches every version of the services it names, so a detector that
compares the new version with the old one, or checks what else is going on,
can tell it apart from a bad deploy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.simulate.messages import Template
from detector.simulate.spec import (
    Disturbance,
    Fault,
    LatencyIncrease,
    NewLogTemplate,
    RetryStorm,
    Scenario,
    TrafficSurge,
)
from detector.simulate.timeline import Timeline


def trapezoid(t_s: np.ndarray, start_s: float, end_s: float, ramp_s: float) -> np.ndarray:
    """1 inside [start, end], ramping linearly over `ramp_s` at both edges, 0 outside."""
    if ramp_s <= 0:
        return ((t_s >= start_s) & (t_s < end_s)).astype(np.float64)
    up = (t_s - start_s) / ramp_s
    down = (end_s - t_s) / ramp_s
    return np.clip(np.minimum(up, down), 0.0, 1.0)


@dataclass(frozen=True)
class FaultEffect:
    fault: Fault
    deploy_index: int  # into Timeline.records
    version: int
    start_s: float
    end_s: float
    endpoint_mask: np.ndarray  # (E,) bool over all endpoints of the scenario
    template: Template | None = None

    def hits(self, version: np.ndarray, endpoint: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        return (version == self.version) & self.endpoint_mask[endpoint] & (t_s >= self.start_s) & (t_s < self.end_s)

    def ramp(self, t_s: np.ndarray) -> np.ndarray:
        """Share of the full effect reached at `t_s` (1 for a step)."""
        f = self.fault
        if isinstance(f, LatencyIncrease) and f.mode == "ramp":
            return np.clip((t_s - self.start_s) / f.ramp_s, 0.0, 1.0)
        return np.ones_like(t_s)


@dataclass(frozen=True)
class DisturbanceEffect:
    disturbance: Disturbance
    service_mask: np.ndarray  # (S,) bool
    endpoint_mask: np.ndarray  # (E,) bool

    def envelope(self, t_s: np.ndarray) -> np.ndarray:
        d = self.disturbance
        return trapezoid(t_s, d.start_s, d.end_s, d.ramp_s)


@dataclass(frozen=True)
class Effects:
    faults: tuple[FaultEffect, ...]
    disturbances: tuple[DisturbanceEffect, ...]

    def of(self, cls: type) -> list:
        out = [e for e in self.faults if isinstance(e.fault, cls)]
        out += [e for e in self.disturbances if isinstance(e.disturbance, cls)]
        return out

    def rate_multiplier(self, ep_service: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """(E, C) multiplier on every endpoint's request rate at times `t_s` (C,)."""
        mult = np.ones((len(ep_service), len(t_s)))
        for e in self.disturbances:
            d = e.disturbance
            if isinstance(d, (TrafficSurge, RetryStorm)):
                env = e.envelope(t_s)
                rows = e.endpoint_mask
                mult[rows] *= 1.0 + (d.multiplier - 1.0) * env[None, :]
        return mult


def compile_effects(scenario: Scenario, timeline: Timeline, ep_service: np.ndarray, ep_names: list[str]) -> Effects:
    svc_index = {s.name: i for i, s in enumerate(scenario.services)}

    def mask_for(svc: str, endpoints: tuple[str, ...]) -> np.ndarray:
        m = ep_service == svc_index[svc]
        if endpoints:
            m &= np.isin(np.asarray(ep_names, dtype=object), list(endpoints))
        return m

    faults = []
    for di, rec in enumerate(timeline.records):
        d = rec.deploy
        for f in d.faults:
            start = d.at_s + f.onset_s
            template = None
            if isinstance(f, NewLogTemplate):
                template = Template(f.pattern, f.level, f"{d.service}.app")
            faults.append(
                FaultEffect(
                    fault=f,
                    deploy_index=di,
                    version=rec.version_index,
                    start_s=start,
                    end_s=start + f.duration_s,
                    endpoint_mask=mask_for(d.service, f.endpoints),
                    template=template,
                )
            )
    dists = []
    for dist in scenario.disturbances:
        svc_mask = np.isin(np.asarray([s.name for s in scenario.services], dtype=object), list(dist.services))
        ep_mask = svc_mask[ep_service]
        if isinstance(dist, RetryStorm) and dist.endpoints:
            ep_mask = mask_for(dist.services[0], dist.endpoints)
        dists.append(DisturbanceEffect(dist, svc_mask, ep_mask))
    return Effects(tuple(faults), tuple(dists))
