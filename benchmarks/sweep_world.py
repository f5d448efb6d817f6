"""Randomised deploys for the judge sweep, written without looking at the policy.

Nothing here is shared with the simulator (`detector/simulate`) or the
scenario files: service and endpoint names, traffic shapes, latency and error
models, log phrasing and metric names are this file's own. One `Trial` is
one deploy of one target service next to two neighbour services, with a
fault or not, and benign disturbances; `events(trial)` yields contract
events in time order and `trial.truth()` what the deploy deserves.

Parameters are drawn from wide ranges, not from the rules' thresholds:

- traffic 0.05-50 requests/s per endpoint (log-uniform), 2-5 endpoints;
- rolling (rollout 0-20 min), canary (weight 5-50 %) or blue/green;
- faults: extra errors (+0.3 to +60 points, one endpoint or all), slower
  latency (x1.15 to x6 on one endpoint), fewer completed transactions
  (5 % to 95 % drop); onset 0-3 min after the deploy;
- disturbances: a traffic ramp, a surge, a pod restart, a neighbour's error
  burst, a shared datastore slowdown across every service.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import orjson

SERVICES = ["ledger", "catalog", "profile", "notify", "billing", "gateway", "shipping", "reviews", "auth", "media"]
PATHS = ["GET /v1/items", "GET /v1/items/{id}", "POST /v1/orders", "GET /v1/orders/{id}", "PUT /v1/cart",
         "GET /v1/search", "POST /v1/sessions", "DELETE /v1/cart/{id}", "GET /v1/health/deep", "POST /v1/refunds"]
PRE_S = 1200  # history before the deploy (the default baseline is the last 900 s of it)
PERIOD_S = 1800  # the default verification period
START = 1_780_000_000


@dataclass
class Endpoint:
    name: str
    rate: float  # requests/s
    err: float  # baseline 5xx probability
    median_ms: float
    sigma: float
    txn: str = ""  # business transaction this endpoint completes
    txn_p: float = 0.0


@dataclass
class Service:
    name: str
    endpoints: list[Endpoint]
    pods: int


@dataclass
class Fault:
    kind: str  # errors | latency | transactions
    scope: str  # one | all
    endpoint: int  # index into the target's endpoints (one)
    size: float  # points (errors), ratio (latency), relative drop (transactions)
    onset_s: float
    change_kind: str  # code | config


@dataclass
class Disturbance:
    kind: str  # ramp | surge | restart | neighbour_burst | shared_slowdown
    start_s: float  # after the deploy
    length_s: float
    size: float


@dataclass
class Trial:
    index: int
    seed: int
    target: Service
    neighbours: list[Service]
    strategy: str
    rollout_s: float
    canary_weight: float
    fault: Fault | None
    disturbances: list[Disturbance] = field(default_factory=list)

    @property
    def t0(self) -> float:
        return START + self.index * 20_000.0

    @property
    def deploy_ts(self) -> float:
        return self.t0 + PRE_S

    @property
    def end_ts(self) -> float:
        return self.deploy_ts + PERIOD_S + 60

    @property
    def deploy_id(self) -> str:
        return f"sw-{self.index}"

    def new_share(self, t: np.ndarray) -> np.ndarray:
        after = np.clip(t - self.deploy_ts, 0, None)
        if self.strategy == "canary":
            return np.where(t >= self.deploy_ts, self.canary_weight, 0.0)
        if self.strategy == "blue_green" or self.rollout_s <= 0:
            return (t >= self.deploy_ts).astype(float)
        return np.where(t >= self.deploy_ts, np.minimum(1.0, after / self.rollout_s), 0.0)

    def affected_rate(self) -> float:
        """Requests/s of the new version on what the fault touches (after rollout)."""
        if self.fault is None:
            return 0.0
        w = self.canary_weight if self.strategy == "canary" else 1.0
        eps = self.target.endpoints
        if self.fault.kind == "transactions":
            return w * sum(e.rate for e in eps if e.txn)
        if self.fault.scope == "all":
            return w * sum(e.rate for e in eps)
        return w * eps[self.fault.endpoint].rate

    def truth(self) -> dict:
        f = self.fault
        root = None
        if f is not None:
            root = f.change_kind
        return {"deploy_id": self.deploy_id, "service": self.target.name, "bad": f is not None,
                "fault": None if f is None else f.__dict__, "strategy": self.strategy, "rollout_s": self.rollout_s,
                "canary_weight": self.canary_weight, "affected_rate": self.affected_rate(),
                "onset_ts": self.deploy_ts + (f.onset_s if f else 0.0), "deploy_ts": self.deploy_ts,
                "expected_root_cause": root,
                "disturbances": [d.__dict__ for d in self.disturbances],
                "service_rate": sum(e.rate for e in self.target.endpoints)}


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _service(rng: np.random.Generator, name: str, n_eps: int, lo: float, hi: float) -> Service:
    paths = rng.choice(PATHS, n_eps, replace=False).tolist()
    eps = [Endpoint(p, _loguniform(rng, lo, hi), _loguniform(rng, 0.0005, 0.02), _loguniform(rng, 15, 400),
                    float(rng.uniform(0.3, 0.9))) for p in paths]
    writes = [e for e in eps if e.name.startswith(("POST", "PUT"))] or eps[:1]
    w = writes[0]
    w.txn, w.txn_p = f"{name}_{w.name.split('/')[-1]}_done", float(rng.uniform(0.2, 0.9))
    return Service(name, eps, int(rng.integers(2, 7)))


def make_trial(index: int, seed: int, bad: bool | None = None) -> Trial:
    rng = np.random.default_rng([seed, index])
    names = rng.choice(SERVICES, 3, replace=False).tolist()
    target = _service(rng, names[0], int(rng.integers(2, 6)), 0.05, 50.0)
    neighbours = [_service(rng, n, int(rng.integers(1, 4)), 0.3, 15.0) for n in names[1:]]
    strategy = str(rng.choice(["rolling", "canary", "blue_green"], p=[0.5, 0.35, 0.15]))
    rollout_s = float(rng.uniform(0, 1200)) if strategy == "rolling" else 0.0
    weight = float(rng.uniform(0.05, 0.5)) if strategy == "canary" else 1.0
    if bad is None:
        bad = bool(rng.random() < 0.6)
    fault = None
    if bad:
        kind = str(rng.choice(["errors", "latency", "transactions"], p=[0.55, 0.3, 0.15]))
        scope = "all" if kind == "errors" and rng.random() < 0.4 else "one"
        ep = int(rng.integers(0, len(target.endpoints)))
        if kind == "errors":
            size = _loguniform(rng, 0.3, 60.0)
        elif kind == "latency":
            size = _loguniform(rng, 1.15, 6.0)
        else:
            size = float(rng.uniform(0.05, 0.95))
        change = "config" if scope == "all" else "code"
        fault = Fault(kind, scope, ep, size, float(rng.uniform(0, 180)) if scope == "one" else 0.0, change)
    dist: list[Disturbance] = []
    n_dist = int(rng.integers(1, 3)) if not bad else int(rng.integers(0, 2))
    for kind in rng.choice(["ramp", "surge", "restart", "neighbour_burst", "shared_slowdown"], n_dist,
                           replace=False).tolist():
        start = float(rng.uniform(0, 900))
        if kind == "ramp":
            dist.append(Disturbance(kind, 0.0, PERIOD_S, float(rng.uniform(1.5, 3.0))))
        elif kind == "surge":
            dist.append(Disturbance(kind, start, float(rng.uniform(60, 300)), float(rng.uniform(2, 6))))
        elif kind == "restart":
            dist.append(Disturbance(kind, start, float(rng.uniform(10, 40)), float(rng.uniform(0.3, 1.0))))
        elif kind == "neighbour_burst":
            dist.append(Disturbance(kind, start, float(rng.uniform(60, 300)), float(rng.uniform(0.2, 0.6))))
        else:
            dist.append(Disturbance(kind, float(rng.uniform(60, 600)), float(rng.uniform(180, 600)),
                                    float(rng.uniform(1.5, 4.0))))
    return Trial(index, seed, target, neighbours, strategy, rollout_s, weight, fault, dist)


def _window(t: np.ndarray, d: Disturbance, deploy_ts: float) -> np.ndarray:
    return (t >= deploy_ts + d.start_s) & (t < deploy_ts + d.start_s + d.length_s)


def _requests(trial: Trial, svc: Service, is_target: bool, rng: np.random.Generator):
    """Columns of one service's requests over the trial (unsorted)."""
    grid = np.arange(trial.t0, trial.end_ts, 1.0)
    mult = np.ones(len(grid))
    slow = np.ones(len(grid))
    extra_err = np.zeros(len(grid))
    for d in trial.disturbances:
        inside = _window(grid, d, trial.deploy_ts)
        if d.kind == "ramp" and is_target:
            mult *= 1 + (d.size - 1) * np.clip((grid - trial.deploy_ts) / d.length_s, 0, 1)
        elif d.kind == "surge" and is_target:
            mult[inside] *= d.size
        elif d.kind == "neighbour_burst" and svc is trial.neighbours[0]:
            extra_err[inside] += d.size
        elif d.kind == "shared_slowdown":
            slow[inside] *= d.size
            extra_err[inside] += 0.01 * (d.size - 1)
    share = trial.new_share(grid) if is_target else np.zeros(len(grid))
    cols = {k: [] for k in ("ts", "ep", "status", "lat", "new", "pod", "txn", "fault_err")}
    f = trial.fault if is_target else None
    restart = next((d for d in trial.disturbances if d.kind == "restart"), None) if is_target else None
    for i, e in enumerate(svc.endpoints):
        k = rng.poisson(e.rate * mult)
        n = int(k.sum())
        if n == 0:
            continue
        sec = np.repeat(np.arange(len(grid)), k)
        ts = grid[sec] + rng.random(n)
        new = rng.random(n) < share[sec]
        pod = rng.integers(0, svc.pods, n)
        p_err = np.full(n, e.err) + extra_err[sec]
        lat = np.exp(rng.normal(math.log(e.median_ms), e.sigma, n)) * slow[sec]
        hit = np.zeros(n, bool)
        if f is not None and (f.scope == "all" or f.endpoint == i or f.kind == "transactions"):
            hit = new & (ts >= trial.deploy_ts + f.onset_s)
            if f.kind == "errors":
                p_err = np.where(hit, p_err + f.size / 100.0, p_err)
            elif f.kind == "latency":
                lat = np.where(hit, lat * f.size, lat)
        if restart is not None:
            # One pod of the new version restarts: its requests fail or crawl for a few seconds.
            blip = new & (pod == 0) & _window(ts, restart, trial.deploy_ts)
            p_err = np.where(blip, np.maximum(p_err, restart.size), p_err)
            lat = np.where(blip, lat * 3, lat)
        failed = rng.random(n) < np.clip(p_err, 0, 1)
        status = np.where(failed, rng.choice([500, 502, 503], n), np.where(rng.random(n) < 0.03, 404, 200))
        txn_p = np.full(n, e.txn_p)
        if f is not None and f.kind == "transactions":
            txn_p = np.where(hit, txn_p * (1 - f.size), txn_p)
        txn = (~failed) & (status == 200) & (rng.random(n) < txn_p) if e.txn else np.zeros(n, bool)
        for key, val in (("ts", ts), ("ep", np.full(n, i)), ("status", status), ("lat", lat), ("new", new),
                         ("pod", pod), ("txn", txn), ("fault_err", failed & hit)):
            cols[key].append(val)
    return {k: np.concatenate(v) if v else np.empty(0) for k, v in cols.items()}


CONFIG_LINES = ["failed to load property 'checkout.retry.budget' from /etc/app/application.yaml: key not found",
                "environment variable PAYMENT_PROVIDER_URL is not set; refusing requests",
                "invalid value 'tru' for setting feature.new_pricing (expected a boolean)"]
CODE_LINES = ["Unhandled TypeError: Cannot read properties of undefined (reading 'sku') at CartView.render (cart.js:{n})",
              "java.lang.IllegalStateException: basket already closed at com.shop.BasketService.add(BasketService.java:{n})",
              "panic: runtime error: index out of range [3] with length 3 in handlers/refund.go:{n}"]


def events(trial: Trial) -> Iterator[bytes]:
    """The trial's contract events as JSONL lines, in time order."""
    rng = np.random.default_rng([trial.seed, trial.index, 7])
    out: list[tuple[float, int, bytes]] = []
    seq = 0

    def put(ts: float, obj: dict) -> None:
        nonlocal seq
        out.append((ts, seq, orjson.dumps(obj)))
        seq += 1

    config_line = CONFIG_LINES[trial.index % len(CONFIG_LINES)]
    code_line = CODE_LINES[trial.index % len(CODE_LINES)].replace("{n}", str(100 + trial.index % 400))
    for svc in [trial.target] + trial.neighbours:
        is_target = svc is trial.target
        c = _requests(trial, svc, is_target, rng)
        for ts, ep, status, lat, new, pod, txn, ferr in zip(c["ts"].tolist(), c["ep"].astype(int).tolist(),
                                                            c["status"].astype(int).tolist(), c["lat"].tolist(),
                                                            c["new"].astype(bool).tolist(),
                                                            c["pod"].astype(int).tolist(),
                                                            c["txn"].astype(bool).tolist(),
                                                            c["fault_err"].astype(bool).tolist()):
            e = svc.endpoints[ep]
            version = "2.0.0" if new else "1.9.3"
            inst = f"{svc.name}-{'b' if new else 'a'}{pod}"
            ev = {"type": "request", "ts": round(ts, 3), "service": svc.name, "endpoint": e.name,
                  "status": status, "latency_ms": round(lat, 2), "version": version, "instance": inst}
            if txn:
                ev["txn"] = e.txn
            put(ts, ev)
            if status >= 500 and rng.random() < 0.3:
                if ferr and trial.fault is not None:
                    msg = config_line if trial.fault.change_kind == "config" else code_line
                else:
                    msg = f"request {rng.integers(1e9)} to {e.name} failed with status {status} after {lat:.0f} ms"
                put(ts + 0.001, {"type": "log", "ts": round(ts + 0.001, 3), "service": svc.name, "level": "ERROR",
                                 "message": msg, "version": version, "instance": inst})
            elif rng.random() < 0.02:
                put(ts + 0.001, {"type": "log", "ts": round(ts + 0.001, 3), "service": svc.name, "level": "INFO",
                                 "message": f"served {e.name} for account {rng.integers(1e6)} in {lat:.0f} ms",
                                 "version": version, "instance": inst})
    # Datastore and CPU samples every 10 s per service; the shared slowdown shows in every service's datastore
    # wait, named as this fleet names it (not a name any pipeline lists).
    slow = [d for d in trial.disturbances if d.kind == "shared_slowdown"]
    for svc in [trial.target] + trial.neighbours:
        for ts in np.arange(trial.t0, trial.end_ts, 10.0).tolist():
            factor = 1.0
            for d in slow:
                if trial.deploy_ts + d.start_s <= ts < trial.deploy_ts + d.start_s + d.length_s:
                    factor *= d.size * 2
            put(ts, {"type": "metric", "ts": ts, "service": svc.name, "name": "datastore_wait_ms",
                     "value": round(float(rng.gamma(20, 0.4)) * factor, 3), "labels": {"cluster": "pg-main"}})
            put(ts, {"type": "metric", "ts": ts, "service": svc.name, "name": "cpu_busy_ratio",
                     "value": round(float(rng.uniform(0.2, 0.5)), 3)})
            if slow and any(trial.deploy_ts + d.start_s <= ts < trial.deploy_ts + d.start_s + d.length_s
                            for d in slow):
                share = float(trial.new_share(np.array([ts]))[0]) if svc is trial.target else 0.0
                for _ in range(int(rng.integers(1, 4))):
                    put(ts + 0.5, {"type": "log", "ts": ts + 0.5, "service": svc.name, "level": "WARN",
                                   "message": f"waited {rng.integers(200, 3000)} ms for a connection from pool "
                                              f"pg-main (active {rng.integers(20, 40)}/40)",
                                   "version": "2.0.0" if rng.random() < share else "1.9.3"})
    put(trial.deploy_ts, {"type": "deploy", "ts": trial.deploy_ts, "service": trial.target.name,
                          "deploy_id": trial.deploy_id, "version": "2.0.0", "previous_version": "1.9.3",
                          "strategy": trial.strategy,
                          **({"canary_weight": trial.canary_weight} if trial.strategy == "canary" else {}),
                          "change_kind": trial.fault.change_kind if trial.fault else str(rng.choice(["code", "config"]))})
    out.sort(key=lambda x: (x[0], x[1]))
    for _ts, _s, line in out:
        yield line
