"""Event generation: a scenario becomes a stream of contract events.

Time is cut into chunks (about 20k requests each) and each chunk into one-second
bins. Per bin and endpoint the request count is Poisson with rate
`rps x diurnal(t) x drift(t) x surges`; every other attribute (version, pod,
latency, status, transaction, log lines) is drawn for the whole chunk at once
with numpy. Only JSON serialisation runs per event.

Latency is a lognormal body with a Pareto tail whose parameters reproduce the
endpoint's median and p99 exactly, scaled by a queueing-style load factor
that grows as the service's cpu utilisation approaches saturation.

Events leave in arrival order: each gets an emission time up to
`out_of_order_s` after its event time, and the stream is sorted by emission
time, so event time is out of order by at most that bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import orjson

from detector.simulate import messages as msg
from detector.simulate.checks import smoke_events
from detector.simulate.faults import Effects, compile_effects
from detector.simulate.messages import RowContext, Template
from detector.simulate.spec import (
    DropTransactions,
    ErrorIncrease,
    InfraSlowdown,
    LatencyIncrease,
    NewLogTemplate,
    PodRestartBlip,
    RetryStorm,
    Scenario,
    TrafficLoss,
)
from detector.simulate.timeline import Timeline, build_timeline

KIND_REQUEST, KIND_LOG, KIND_METRIC, KIND_DEPLOY, KIND_CHECK = 0, 1, 2, 3, 4
KIND_NAMES = ("request", "log", "metric", "deploy", "check")

# Share of requests drawn from the Pareto tail, and its shape: alpha 2.2 has
# a finite mean, as real latency tails behind timeouts do.
TAIL_SHARE = 0.004
TAIL_ALPHA = 2.2
_Z_BODY_P99 = NormalDist().inv_cdf(1.0 - (0.01 - TAIL_SHARE) / (1.0 - TAIL_SHARE))
# Utilisation beyond which the load factor stops growing (keeps it finite).
MAX_UTILISATION = 0.92
GATEWAY_TIMEOUT_MS = 5000.0
# Requests per generation chunk the default chunk length aims at.
CHUNK_EVENTS = 20_000

CLIENT_CODES = np.array([400, 401, 403, 404, 409, 422, 429], dtype=np.int16)
CLIENT_WEIGHTS = np.array([0.2, 0.1, 0.05, 0.35, 0.05, 0.1, 0.15])
SERVER_CODES = np.array([500, 502, 503, 504], dtype=np.int16)
SERVER_WEIGHTS = np.array([0.55, 0.2, 0.2, 0.05])

# Why a request failed: decides its status, its latency and its log line.
CAUSE_NONE, CAUSE_CLIENT, CAUSE_BASE, CAUSE_INFRA, CAUSE_SHED, CAUSE_FAULT, CAUSE_BLIP = range(7)


@dataclass
class Chunk:
    """Serialised events in arrival order; times are Unix seconds."""

    emit_ts: np.ndarray  # float64, non-decreasing
    kind: np.ndarray  # int8, KIND_*
    service: np.ndarray  # int32, index into Simulator.service_names
    values: list[bytes]

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class _Requests:
    ts: np.ndarray
    ep: np.ndarray
    svc: np.ndarray
    ver: np.ndarray
    inst: np.ndarray
    status: np.ndarray
    lat: np.ndarray
    cause: np.ndarray
    txn: np.ndarray


def _pick(rng: np.random.Generator, codes: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    return codes[np.searchsorted(np.cumsum(weights) / weights.sum(), rng.random(n), side="right")]


class Simulator:
    """Generates a scenario's events chunk by chunk, deterministically per seed."""

    def __init__(self, scenario: Scenario, chunk_s: float | None = None) -> None:
        if chunk_s is not None and not chunk_s > 0:
            raise ValueError(f"chunk_s must be > 0 (got {chunk_s})")
        self.scenario = scenario
        self.timeline: Timeline = build_timeline(scenario)
        sc = scenario
        self.service_names = [s.name for s in sc.services]
        eps = [(si, e) for si, s in enumerate(sc.services) for e in s.endpoints]
        self.ep_names = [e.name for _, e in eps]
        self.ep_service = np.array([si for si, _ in eps], dtype=np.int64)
        self.ep_rps = np.array([e.rps for _, e in eps]) * sc.traffic.rate_scale
        self.ep_err = np.array([e.error_rate for _, e in eps])
        self.ep_4xx = np.array([e.client_error_rate for _, e in eps])
        self.ep_median = np.array([e.latency_median_ms for _, e in eps])
        self.ep_p99 = np.array([e.latency_p99_ms for _, e in eps])
        self.ep_sigma = np.log(self.ep_p99 / self.ep_median) / _Z_BODY_P99
        self.ep_ok = np.array([{"POST": 201, "DELETE": 204}.get(e.method, 200) for _, e in eps], dtype=np.int16)
        self.txn_names = sorted({e.txn for _, e in eps if e.txn})
        self.ep_txn = np.array([self.txn_names.index(e.txn) if e.txn else -1 for _, e in eps], dtype=np.int64)
        self.ep_txn_frac = np.array([e.txn_fraction for _, e in eps])
        self.svc_nominal = np.bincount(self.ep_service, weights=self.ep_rps, minlength=len(sc.services))
        if chunk_s is None:
            # Big enough to amortise numpy's per-call cost, small enough to
            # bound memory; derived from the scenario only, so output stays
            # identical for a given scenario and seed whatever the duration.
            chunk_s = float(np.clip(np.round(CHUNK_EVENTS / self.ep_rps.sum()), 10.0, 600.0))
        self.chunk_s = float(chunk_s)
        self.svc_cpu = np.array([s.cpu_base for s in sc.services])
        self.svc_info = np.array([s.info_log_rate for s in sc.services])
        self.svc_warn = np.array([s.warn_log_rate for s in sc.services])
        self.svc_errlog = np.array([s.error_log_fraction for s in sc.services])
        self.svc_db = [s.db or f"{s.name.replace('-', '_')}_db" for s in sc.services]
        self.svc_db_latency = np.array([s.db_latency_ms for s in sc.services])
        self.effects: Effects = compile_effects(sc, self.timeline, self.ep_service, self.ep_names)

        # Lookup tables for serialisation (object arrays index fast into lists).
        self._svc_obj = np.array(self.service_names, dtype=object)
        self._ep_obj = np.array(self.ep_names, dtype=object)
        self._ep_path = np.array([e.path for _, e in eps], dtype=object)
        self._ep_method = np.array([e.method for _, e in eps], dtype=object)
        self._ver_obj = np.array(self.timeline.versions, dtype=object)
        self._inst_obj = np.array(self.timeline.instances, dtype=object)
        self._txn_obj = np.array([*self.txn_names, None], dtype=object)  # -1 -> None
        self._db_obj = np.array(self.svc_db, dtype=object)
        self._inst_offset = np.array(self.timeline.inst_offset, dtype=np.int64)

        def templates(spec: tuple, level: str) -> tuple[list[Template], np.ndarray]:
            ts = [Template(p, level, suffix) for p, _, suffix in spec]
            w = np.array([wt for _, wt, _ in spec], dtype=np.float64)
            return ts, w / w.sum()

        self._info = templates(msg.INFO_TEMPLATES, "INFO")
        self._warn = templates(msg.WARN_TEMPLATES, "WARN")
        self._error = templates(msg.ERROR_TEMPLATES, "ERROR")
        self._slow = Template(msg.SLOW_REQUEST_TEMPLATE[0], msg.SLOW_REQUEST_TEMPLATE[1], msg.SLOW_REQUEST_TEMPLATE[2])
        self._infra_slow = Template(*msg.INFRA_SLOW_TEMPLATE)
        self._shed = Template(*msg.SHED_TEMPLATE)
        self._blip = Template(*msg.BLIP_TEMPLATE)
        self._infra_timeout = {
            id(e): Template(msg.INFRA_TIMEOUT_TEMPLATE % e.disturbance.timeout_ms, "ERROR", "db")
            for e in self.effects.of(InfraSlowdown)
        }

        shape_rng = np.random.default_rng([sc.seed, 0xD21F7])
        self._drift_phase = shape_rng.uniform(0, 2 * np.pi, size=(2, len(eps)))
        self._pod_factor = shape_rng.normal(1.0, 0.04, size=len(self.timeline.instances))
        self._pod_offset_s = shape_rng.uniform(0.0, 1.0, size=len(self.timeline.instances))
        self.rng = np.random.default_rng(sc.seed)
        self._checks = smoke_events(self)  # (relative time, service, event) of declared smoke checks

    # --- rates and load ---------------------------------------------------

    def rates(self, t_s: np.ndarray) -> np.ndarray:
        """(E, C) expected requests per second of every endpoint at relative times `t_s`."""
        tr = self.scenario.traffic
        abs_t = self.scenario.start_ts + t_s
        hour = (abs_t / 3600.0 + tr.utc_offset_h) % 24.0
        diurnal = 1.0 + tr.diurnal_amplitude * np.cos(2 * np.pi * (hour - tr.peak_hour) / 24.0)
        w = 2 * np.pi * t_s[None, :] / tr.drift_period_s
        drift = 1.0 + tr.drift_amplitude * (
            0.6 * np.sin(w + self._drift_phase[0][:, None]) + 0.4 * np.sin(2.7 * w + self._drift_phase[1][:, None])
        )
        mult = self.effects.rate_multiplier(self.ep_service, t_s)
        return self.ep_rps[:, None] * diurnal[None, :] * drift * mult

    def utilisation(self, rates: np.ndarray) -> np.ndarray:
        """(S, C) cpu utilisation implied by the request rates."""
        svc_rate = np.zeros((len(self.service_names), rates.shape[1]))
        np.add.at(svc_rate, self.ep_service, rates)
        return self.svc_cpu[:, None] * svc_rate / self.svc_nominal[:, None]

    def load_factor(self, util: np.ndarray) -> np.ndarray:
        u = np.minimum(util, MAX_UTILISATION)
        base = self.svc_cpu[:, None]
        # Square root of the M/M/1 waiting-time ratio: grows near saturation
        # but stays moderate, as with many workers per pod.
        return np.sqrt((1.0 - base) / (1.0 - u))

    # --- one chunk ----------------------------------------------------------

    def _requests(self, t0: float, t1: float) -> _Requests:
        rng = self.rng
        edges = np.arange(t0, t1, 1.0)
        width = np.minimum(edges + 1.0, t1) - edges
        mid = edges + width / 2
        rates = self.rates(mid)
        util = self.utilisation(rates)
        load = self.load_factor(util)
        counts = rng.poisson(rates * width[None, :])
        c_n = len(edges)
        idx = np.repeat(np.arange(counts.size), counts.ravel())
        ep = idx // c_n
        sec = idx % c_n
        n = len(idx)
        ts = edges[sec] + rng.random(n) * width[sec]
        svc = self.ep_service[ep]

        tl = self.timeline
        stable, new, p = tl.split(svc, ts)
        is_new = (new >= 0) & (rng.random(n) < p)
        ver = np.where(is_new, new, stable)
        pods = tl.pods(svc, np.where(is_new, p, 1.0 - p))
        inst = self._inst_offset[ver] + (rng.random(n) * pods).astype(np.int64)
        for e in self.effects.of(TrafficLoss):
            lost = e.hits(ver, ep, ts)
            lost[lost] = rng.random(int(lost.sum())) < e.fault.fraction
            keep = ~lost
            ts, ep, sec, svc, ver, inst = ts[keep], ep[keep], sec[keep], svc[keep], ver[keep], inst[keep]
            n = len(ts)

        lat = self.ep_median[ep] * np.exp(self.ep_sigma[ep] * rng.standard_normal(n))
        tail = rng.random(n) < TAIL_SHARE
        lat[tail] = self.ep_p99[ep[tail]] * (1.0 + rng.pareto(TAIL_ALPHA, int(tail.sum())))
        lat *= load[svc, sec]
        for e in self.effects.of(LatencyIncrease):
            m = e.hits(ver, ep, ts)
            lat[m] *= 1.0 + (e.fault.factor - 1.0) * e.ramp(ts[m])
        infra = self.effects.of(InfraSlowdown)
        infra_env = []
        for e in infra:
            env = e.envelope(ts) * e.service_mask[svc]
            infra_env.append(env)
            lat *= 1.0 + (e.disturbance.latency_factor - 1.0) * env

        status = self.ep_ok[ep].copy()
        cause = np.zeros(n, dtype=np.int8)

        # A later cause overrides an earlier one on the same request; the
        # deploy's own faults come last so that their errors are never
        # disguised as baseline noise or as a benign disturbance.
        def fail(mask: np.ndarray, codes: np.ndarray | np.int16, why: int) -> None:
            status[mask] = codes
            cause[mask] = why

        m = rng.random(n) < self.ep_4xx[ep]
        fail(m, _pick(rng, CLIENT_CODES, CLIENT_WEIGHTS, int(m.sum())), CAUSE_CLIENT)
        m = rng.random(n) < self.ep_err[ep]
        fail(m, _pick(rng, SERVER_CODES, SERVER_WEIGHTS, int(m.sum())), CAUSE_BASE)
        for e, env in zip(infra, infra_env):
            m = rng.random(n) < e.disturbance.error_rate * env
            fail(m, np.where(rng.random(int(m.sum())) < 0.7, 504, 500).astype(np.int16), CAUSE_INFRA)
            lat[m & (status == 504)] = e.disturbance.timeout_ms * (
                1.0 + 0.02 * rng.random(int((m & (status == 504)).sum()))
            )
        for e in self.effects.of(RetryStorm):
            env = e.envelope(ts) * e.endpoint_mask[ep]
            m = rng.random(n) < e.disturbance.error_rate * env
            fail(m, np.int16(503), CAUSE_SHED)
        for e in self.effects.of(ErrorIncrease):
            m = e.hits(ver, ep, ts)
            m[m] = rng.random(int(m.sum())) < e.fault.error_rate
            fail(m, np.where(rng.random(int(m.sum())) < 0.9, 500, 503).astype(np.int16), CAUSE_FAULT)
        for e in self.effects.of(PodRestartBlip):
            m = e.hits(ver, ep, ts)
            m[m] = rng.random(int(m.sum())) < e.fault.error_rate
            fail(m, np.where(rng.random(int(m.sum())) < 0.5, 502, 503).astype(np.int16), CAUSE_BLIP)

        # Failures take their own time: a client error or a shed request is
        # rejected early, a crash cuts the work short, a gateway waits it out.
        lat[cause == CAUSE_CLIENT] *= 0.4
        crashed = (status == 500) | (status == 502)
        lat[crashed & (cause != CAUSE_INFRA)] *= 0.7
        fast = (status == 503) | (cause == CAUSE_BLIP)
        lat[fast] = rng.lognormal(np.log(3.0), 0.5, int(fast.sum()))
        gw = (status == 504) & (cause == CAUSE_BASE)
        lat[gw] = GATEWAY_TIMEOUT_MS * (1.0 + 0.01 * rng.random(int(gw.sum())))

        has_txn = (self.ep_txn[ep] >= 0) & (status < 400)
        has_txn &= rng.random(n) < self.ep_txn_frac[ep]
        for e in self.effects.of(DropTransactions):
            m = e.hits(ver, ep, ts) & has_txn
            m[m] = rng.random(int(m.sum())) < e.fault.fraction
            has_txn &= ~m
        txn = np.where(has_txn, self.ep_txn[ep], -1)
        return _Requests(ts, ep, svc, ver, inst, status, lat, cause, txn)

    def _log_groups(self, r: _Requests) -> list[tuple[Template, np.ndarray]]:
        """(template, request rows) for every log line the requests cause."""
        rng = self.rng
        n = len(r.ts)
        groups: list[tuple[Template, np.ndarray]] = []

        def spread(rows: np.ndarray, choice: tuple[list[Template], np.ndarray]) -> None:
            templates, weights = choice
            pick = np.searchsorted(np.cumsum(weights), rng.random(len(rows)), side="right")
            pick = np.minimum(pick, len(templates) - 1)
            for i, t in enumerate(templates):
                groups.append((t, rows[pick == i]))

        def per_request(rate: np.ndarray) -> np.ndarray:
            return np.repeat(np.arange(n), rng.poisson(rate))

        spread(per_request(self.svc_info[r.svc]), self._info)
        spread(per_request(self.svc_warn[r.svc]), self._warn)
        slow = np.flatnonzero((r.lat > 2.0 * self.ep_p99[r.ep]) & (r.cause == CAUSE_NONE))
        groups.append((self._slow, slow[rng.random(len(slow)) < 0.5]))
        err = np.flatnonzero(((r.cause == CAUSE_BASE) | (r.cause == CAUSE_FAULT)) & (r.status >= 500))
        spread(err[rng.random(len(err)) < self.svc_errlog[r.svc[err]]], self._error)
        shed = np.flatnonzero(r.cause == CAUSE_SHED)
        groups.append((self._shed, shed[rng.random(len(shed)) < 0.5]))
        groups.append((self._blip, np.flatnonzero(r.cause == CAUSE_BLIP)))
        for e in self.effects.of(InfraSlowdown):
            env = e.envelope(r.ts) * e.service_mask[r.svc]
            hit = np.flatnonzero((r.cause == CAUSE_INFRA) & (env > 0))
            groups.append((self._infra_timeout[id(e)], hit))
            groups.append((self._infra_slow, per_request(e.disturbance.log_rate * env)))
        for e in self.effects.of(NewLogTemplate):
            m = e.hits(r.ver, r.ep, r.ts)
            groups.append((e.template, per_request(np.where(m, e.fault.rate_per_request, 0.0))))
        return [(t, rows) for t, rows in groups if len(rows)]

    def _serialise_requests(self, r: _Requests) -> list[bytes]:
        base = self.scenario.start_ts
        ts = np.round(base + r.ts, 3).tolist()
        lat = np.round(r.lat, 2).tolist()
        svc = self._svc_obj[r.svc].tolist()
        ep = self._ep_obj[r.ep].tolist()
        ver = self._ver_obj[r.ver].tolist()
        inst = self._inst_obj[r.inst].tolist()
        status = r.status.tolist()
        txn = self._txn_obj[r.txn].tolist()
        dumps = orjson.dumps
        out = []
        append = out.append
        for t, s, e, st, la, v, i, x in zip(ts, svc, ep, status, lat, ver, inst, txn):
            d = {
                "type": "request",
                "ts": t,
                "service": s,
                "endpoint": e,
                "status": st,
                "latency_ms": la,
                "version": v,
                "instance": i,
            }
            if x is not None:
                d["txn"] = x
            append(dumps(d))
        return out

    def _serialise_logs(
        self, r: _Requests, groups: list[tuple[Template, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        rng = self.rng
        rows_all = []
        values: list[bytes] = []
        base = self.scenario.start_ts
        dumps = orjson.dumps
        for t, rows in groups:
            ctx = RowContext(
                service=self._svc_obj[r.svc[rows]].tolist(),
                path=self._ep_path[r.ep[rows]].tolist(),
                method=self._ep_method[r.ep[rows]].tolist(),
                status=r.status[rows].tolist(),
                latency_ms=r.lat[rows].tolist(),
                instance=self._inst_obj[r.inst[rows]].tolist(),
                version=self._ver_obj[r.ver[rows]].tolist(),
                db=self._db_obj[r.svc[rows]].tolist(),
            )
            messages = t.render(rng, ctx)
            trace = rng.integers(0, 2**63, size=(len(rows), 2)).tolist()
            ts = np.round(base + r.ts[rows], 3).tolist()
            level = t.level
            for tt, s, m, v, i, (a, b) in zip(ts, ctx.service, messages, ctx.version, ctx.instance, trace):
                values.append(
                    dumps(
                        {
                            "type": "log",
                            "ts": tt,
                            "service": s,
                            "level": level,
                            "message": m,
                            "version": v,
                            "instance": i,
                            "logger": f"{s}.{t.logger}",
                            "trace_id": f"{a:016x}{b:016x}",
                        }
                    )
                )
            rows_all.append(rows)
        rows_cat = np.concatenate(rows_all) if rows_all else np.empty(0, np.int64)
        return r.ts[rows_cat], r.svc[rows_cat], values

    def _metrics(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        sc = self.scenario
        rng = self.rng
        step = sc.metric_interval_s
        ticks = np.arange(np.ceil(t0 / step) * step, t1, step)
        ticks = ticks[ticks < sc.duration_s]
        if not len(ticks):
            return np.empty(0), np.empty(0, np.int64), []
        rates = self.rates(ticks)
        util = self.utilisation(rates)
        load = self.load_factor(util)
        infra = self.effects.of(InfraSlowdown)
        tl = self.timeline
        n_svc = len(self.service_names)
        ts_out, svc_out, values = [], [], []
        base = sc.start_ts
        dumps = orjson.dumps
        for ti, tick in enumerate(ticks.tolist()):
            svc_idx = np.arange(n_svc)
            stable, new, p = tl.split(svc_idx, np.full(n_svc, tick))
            for si in range(n_svc):
                live = [(int(stable[si]), 1.0 - p[si])]
                if new[si] >= 0 and p[si] > 0:
                    live.append((int(new[si]), p[si]))
                db_mult = 1.0
                for e in infra:
                    if e.service_mask[si]:
                        env = float(e.envelope(np.array([tick]))[0])
                        db_mult *= 1.0 + (e.disturbance.db_latency_factor - 1.0) * env
                for v, share in live:
                    k = int(tl.pods(np.array([si]), np.array([share]))[0])
                    pods = np.arange(self._inst_offset[v], self._inst_offset[v] + k)
                    cpu = np.clip(util[si, ti] * self._pod_factor[pods] + rng.normal(0.0, 0.015, k), 0.001, 1.0)
                    dbl = self.svc_db_latency[si] * db_mult * load[si, ti] * rng.lognormal(0.0, 0.12, k)
                    when = tick + self._pod_offset_s[pods]
                    svc_name, ver = self.service_names[si], tl.versions[v]
                    for j, pod in enumerate(pods.tolist()):
                        at = round(base + float(when[j]), 3)
                        inst = tl.instances[pod]
                        common = {"type": "metric", "ts": at, "service": svc_name}
                        values.append(
                            dumps(
                                {
                                    **common,
                                    "name": "cpu_utilization",
                                    "value": round(float(cpu[j]), 4),
                                    "version": ver,
                                    "instance": inst,
                                }
                            )
                        )
                        values.append(
                            dumps(
                                {
                                    **common,
                                    "name": "db_latency_ms",
                                    "value": round(float(dbl[j]), 3),
                                    "labels": {"db": self.svc_db[si]},
                                    "version": ver,
                                    "instance": inst,
                                }
                            )
                        )
                        ts_out += [float(when[j])] * 2
                        svc_out += [si, si]
        return np.asarray(ts_out), np.asarray(svc_out, dtype=np.int64), values

    def _deploys(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        ts_out, svc_out, values = [], [], []
        for rec in self.timeline.records:
            for at, body in rec.events:
                if t0 <= at < t1:
                    ts_out.append(at)
                    svc_out.append(self.service_names.index(rec.deploy.service))
                    values.append(orjson.dumps({"type": "deploy", "ts": round(self.scenario.start_ts + at, 3), **body}))
        return np.asarray(ts_out, dtype=np.float64), np.asarray(svc_out, dtype=np.int64), values

    def generate(self, t0: float, t1: float) -> Chunk:
        """Every event with event time in [t0, t1) (relative seconds), unsorted."""
        reqs = self._requests(t0, t1)
        groups = self._log_groups(reqs)
        req_vals = self._serialise_requests(reqs)
        log_ts, log_svc, log_vals = self._serialise_logs(reqs, groups)
        met_ts, met_svc, met_vals = self._metrics(t0, t1)
        dep_ts, dep_svc, dep_vals = self._deploys(t0, t1)
        c_ts, c_svc, c_vals = self._checks
        lo, hi = np.searchsorted(c_ts, [t0, t1], side="left").tolist()
        chk_ts, chk_svc, chk_vals = c_ts[lo:hi], c_svc[lo:hi], c_vals[lo:hi]
        jitter = self.scenario.out_of_order_s
        n_req, n_log, n_met = len(req_vals), len(log_vals), len(met_vals)
        emit = np.concatenate(
            [
                reqs.ts + self.rng.random(n_req) * jitter,
                log_ts + self.rng.random(n_log) * jitter,
                met_ts + self.rng.random(n_met) * jitter,
                dep_ts,  # the CD system's own clock: deploy events are never late
                chk_ts,  # published when the answer came (their event time): never late either
            ]
        )
        kind = np.concatenate(
            [
                np.full(n_req, KIND_REQUEST, np.int8),
                np.full(n_log, KIND_LOG, np.int8),
                np.full(n_met, KIND_METRIC, np.int8),
                np.full(len(dep_vals), KIND_DEPLOY, np.int8),
                np.full(len(chk_vals), KIND_CHECK, np.int8),
            ]
        )
        svc = np.concatenate([reqs.svc, log_svc, met_svc, dep_svc, chk_svc]).astype(np.int32)
        return Chunk(emit, kind, svc, req_vals + log_vals + met_vals + dep_vals + chk_vals)

    def chunks(self) -> Iterator[Chunk]:
        """All events of the scenario in arrival order, in chunks; times are Unix seconds."""
        duration = self.scenario.duration_s
        base = self.scenario.start_ts
        pending = Chunk(np.empty(0), np.empty(0, np.int8), np.empty(0, np.int32), [])
        t0 = 0.0
        while t0 < duration:
            t1 = min(t0 + self.chunk_s, duration)
            part = self.generate(t0, t1)
            emit = np.concatenate([pending.emit_ts, part.emit_ts])
            kind = np.concatenate([pending.kind, part.kind])
            svc = np.concatenate([pending.service, part.service])
            values = pending.values + part.values
            order = np.argsort(emit, kind="stable")
            emit, kind, svc = emit[order], kind[order], svc[order]
            values = [values[i] for i in order.tolist()]
            # Later chunks only hold events with event time >= t1, hence
            # emission time >= t1: everything before t1 is final.
            cut = len(emit) if t1 >= duration else int(np.searchsorted(emit, t1, side="left"))
            yield Chunk(emit[:cut] + base, kind[:cut], svc[:cut], values[:cut])
            pending = Chunk(emit[cut:], kind[cut:], svc[cut:], values[cut:])
            t0 = t1

    def events(self) -> Iterator[bytes]:
        for chunk in self.chunks():
            yield from chunk.values
