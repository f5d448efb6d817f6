"""Event-time guard: one misdated event must not move a stream's clock.

Event time drives every window, so a single event dated in the year 3000
would move the watermark 975 years ahead and make every later event late. The
guard looks at a batch in arrival order before the windows do:

- **Far future.** An event more than `skew_s` ahead of the stream's own
  progress (the newest time accepted before it) is taken only when the events
  that arrive after it confirm that the stream moved there (a real gap in
  traffic: most of the next few events are as new). An unconfirmed one is
  rejected with a reason and never reaches the windows. An event that has too
  few events after it to judge (the end of a batch) is judged by the wall clock
  in a live run; a replay, which has none, hands it back to be judged with the
  next batch of its input (`defer`), and rejects it only at the end of the input.
  Such an event still counts as a follower of the events before it: refusing it
  for want of followers of its own says nothing against them. A stream whose events
  are normally far apart (hourly samples) is measured in its own steps: the
  threshold is the larger of `skew_s` and ten typical steps of the `BEFORE` events
  accepted before it (a replay hands the guard its input's last accepted events,
  `Recent`), not of its batch: how an input is cut into chunks does not change
  what is far ahead (measured in its last chunk, the last line of a file of hourly
  samples was taken whole and refused in chunks when that chunk was small). With a wall clock
  (live runs), an event more than `skew_s` ahead of it is rejected as well, and
  an event with nothing after it to confirm it is judged by the clock alone.
- **Far past.** Before a stream has any progress (its first batch), an event
  far older than the events around it (ts 1, in 1970) would open a window in
  1970 that closes first and feeds the baselines. It is counted as late,
  exactly as it would be at any later moment of the stream. "Around it" means
  its neighbours in arrival order (up to `FOLLOWERS` on each side): a stream
  that begins with a stretch of traffic, pauses for hours and resumes keeps
  that stretch, whether the first batch holds it alone or with hours more
  (judged against the whole batch, the stretch was dropped from a large first
  batch and kept from a small one).

Pure and deterministic: the same batch, progress and clock give the same result.

`screen` applies the guard to a decoded batch. A live core screens its own
partition's batch, with the wall clock; a replay screens each chunk of an input
whole, before it is split over partitions, so that the events of every partition
confirm or contradict a jump as they do with one partition (a quiet partition's
last few events alone, two misdated ones among them, would vouch for each other).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detector.ingest.columns import DecodedBatch, Rejected

FOLLOWERS = 8  # how many later events may confirm a jump
STEPS = 10.0  # a jump of this many typical steps (or skew_s, if larger) needs confirming
BEFORE = 2 * FOLLOWERS  # how many accepted events before an event give its stream's typical step


@dataclass
class Recent:
    """A replay input's last accepted events (arrival keys, e.g. line numbers, and times, in arrival
    order): the events before the next chunk's first ones. Updated by `screen`."""

    keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    times: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))

    def take(self, keys: np.ndarray, times: np.ndarray) -> None:
        """Append the accepted events of a batch (arrival order) and keep the last ones: twice
        `BEFORE`, as the first events of the next batch (deferred ones) may precede a few of them."""
        self.keys = np.concatenate((self.keys, keys.astype(np.int64)))[-2 * BEFORE:]
        self.times = np.concatenate((self.times, times.astype(np.float64)))[-2 * BEFORE:]


@dataclass
class Guarded:
    """Positions (within the batch) of events to reject with a reason, and to count as late."""

    reject: dict[int, str]
    late: np.ndarray  # int64 positions
    defer: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # to judge with the next batch
    accepted: np.ndarray | None = None  # positions taken, in arrival order (None: every event, unjudged)


def human_span(seconds: float) -> str:
    """`30,000 years`, `3 hours`, `12 minutes`: a duration a reader takes in at a glance."""
    s = abs(float(seconds))
    for unit, size in (("year", 365.25 * 86400), ("day", 86400.0), ("hour", 3600.0), ("minute", 60.0)):
        if s >= size:
            n = s / size
            return f"{n:,.0f} {unit}{'' if round(n) == 1 else 's'}"
    return f"{s:,.0f} seconds"


def _typical_step(ts: np.ndarray) -> float:
    """The lower median gap between the batch's event times, in time order: a few events far
    ahead or behind add gaps only at the ends of the order, so they do not set the step they are
    judged by (in arrival order, one misdated event among three made both gaps huge)."""
    if len(ts) < 3:
        return 0.0
    gaps = np.diff(np.sort(ts))
    k = (len(gaps) - 1) // 2
    return float(np.partition(gaps, k)[k])


def guard(ts: np.ndarray, pos: np.ndarray, progress: float | None, skew_s: float,
          now: float | None = None, more: bool = False, recent: Recent | None = None,
          keys: np.ndarray | None = None) -> Guarded:
    """Judge every event of one batch of one stream.

    `ts` and `pos` are the batch's event times and positions, in any order;
    arrival order is the order of `pos`. `progress` is the newest event time the
    stream accepted before this batch (None before its first). `now` is the wall
    clock in a live run, None in a replay. `more`: further events of the stream follow
    this batch (a replay's next chunk); an event that only they could confirm is deferred.
    `recent`: the stream's last events accepted before this batch; `keys`: the arrival key of
    each batch position (indexed by position; the positions themselves when None), comparable
    with `recent.keys`.
    """
    reject: dict[int, str] = {}
    late = np.empty(0, np.int64)
    if len(ts) == 0:
        return Guarded(reject, late)
    newest = float(ts.max())
    if progress is not None and newest <= progress + skew_s and (now is None or newest <= now + skew_s):
        return Guarded(reject, late)  # the common case: nothing ahead, and past events are just late
    order = np.argsort(pos, kind="stable")
    t = ts[order].astype(np.float64)
    p = pos[order].astype(np.int64)
    alive = np.ones(len(t), dtype=bool)
    if now is not None:
        ahead = t > now + skew_s
        for i in np.flatnonzero(ahead).tolist():
            reject[int(p[i])] = f"ts {t[i]:.0f} is {human_span(t[i] - now)} ahead of the wall clock"
        alive &= ~ahead
    step = _typical_step(t[alive])
    limit = max(skew_s, STEPS * step)
    ref = progress if progress is not None else (float(np.median(t[alive])) if alive.any() else None)
    if ref is None:
        return Guarded(reject, late)
    if progress is None:
        # first batch: far older than the events around it -> late, as it would be later on
        late_mask = alive & (t < ref - max(limit, STEPS * _spread(t[alive])))
        if late_mask.any():
            late_mask &= ~_among_its_own(t, alive, late_mask, limit)
        late = p[late_mask]
        alive &= ~late_mask
    k = p if keys is None else np.asarray(keys, dtype=np.int64)[p]
    steps = _Steps(t, k, recent)
    tail = _reject_unconfirmed(t, p, alive, ref, steps, skew_s, now, reject, more, progress)
    return Guarded(reject, late, np.asarray(sorted(tail), np.int64), p[alive])


class _Steps:
    """The threshold of a jump for each event of a batch (arrival order): the larger of `skew_s`
    and `STEPS` typical steps of the `BEFORE` events accepted before it (in this batch, or before
    it: `recent`), whatever batch it came in."""

    def __init__(self, t: np.ndarray, keys: np.ndarray, recent: Recent | None) -> None:
        self.t, self.keys, self.recent = t, keys, recent

    def limit(self, i: int, alive: np.ndarray, skew_s: float) -> float:
        mine = self.t[:i][alive[:i]][-BEFORE:]
        r = self.recent
        if len(mine) < BEFORE and r is not None and len(r.times):
            earlier = r.times[r.keys < self.keys[i]]
            mine = np.concatenate((earlier[max(0, len(earlier) - (BEFORE - len(mine))):], mine))
        return max(skew_s, STEPS * _typical_step(mine))


def _times_of(ts: np.ndarray, pos: np.ndarray, which: np.ndarray) -> np.ndarray:
    """The times of the events at positions `which`."""
    order = np.argsort(pos, kind="stable")
    return ts[order][np.searchsorted(pos[order], which)]


def _among_its_own(t: np.ndarray, alive: np.ndarray, cand: np.ndarray, limit: float) -> np.ndarray:
    """For the candidates `cand` (arrival order): whether at least half of their alive neighbours
    (up to FOLLOWERS on each side, in arrival order) are within `limit` of them in time, i.e. they
    belong to a stretch of traffic rather than stand alone among far newer events."""
    idx, ks = np.flatnonzero(alive), np.flatnonzero(cand)
    ta = t[idx]
    out = np.zeros(len(t), dtype=bool)
    for j, k in zip(np.searchsorted(idx, ks).tolist(), ks.tolist()):
        near = np.concatenate((ta[max(0, j - FOLLOWERS):j], ta[j + 1:j + 1 + FOLLOWERS]))
        if len(near) and 2 * int((np.abs(near - t[k]) <= limit).sum()) >= len(near):
            out[k] = True
    return out


def _spread(t: np.ndarray) -> float:
    """Interquartile range of event times: how wide the batch is, unmoved by a few outliers."""
    if len(t) < 4:
        return 0.0
    q1, q3 = np.percentile(t, [25, 75])
    return float(q3 - q1)


def _reject_unconfirmed(t: np.ndarray, p: np.ndarray, alive: np.ndarray, ref: float, steps: _Steps, skew_s: float,
                        now: float | None, reject: dict[int, str], more: bool,
                        progress: float | None) -> set[int]:
    """Walk the batch in arrival order; an event far ahead of what came before it needs its followers.
    Returns the positions of the events left for the next batch (`more`). A refusal says how far
    ahead of the newest event accepted before it the event is (of `ref`, a first batch's middle,
    only when none was): the same words however the stream was cut into batches."""
    heard = alive.copy()  # followers: the events alive and those with too few followers of their own
    deferred: set[int] = set()
    while True:
        prior = np.maximum.accumulate(np.where(alive, t, -np.inf))
        before = np.concatenate(([ref], np.maximum(prior[:-1], ref)))
        far = np.flatnonzero(alive & (t > before + skew_s))  # a jump's threshold is never below skew_s
        cand = [i for i in far.tolist() if t[i] > before[i] + steps.limit(i, alive, skew_s)]
        changed = False
        for i in cand:
            nxt = np.flatnonzero(heard[i + 1:])[:FOLLOWERS] + i + 1
            if len(nxt) >= 2:
                if int((t[nxt] >= t[i] - skew_s).sum()) * 2 >= len(nxt):
                    continue  # confirmed: the stream moved there
                heard[i] = False  # contradicted by the events after it
            elif now is not None:
                continue  # nothing (or one event) after it: only a clock can vouch for it
            alive[i] = False
            if len(nxt) < 2 and more:
                deferred.add(int(p[i]))  # the events that can confirm it are in the next batch
            else:
                since = max(float(prior[i - 1]) if i else -np.inf, progress if progress is not None else -np.inf)
                since = since if np.isfinite(since) else float(before[i])
                reject[int(p[i])] = f"ts {t[i]:.0f} is {human_span(t[i] - since)} ahead of the stream"
            changed = True
            break  # the stream's progress after it changes: look again
        if not changed:
            return deferred


def screen(batch: DecodedBatch, progress: float | None, skew_s: float, now: float | None = None,
           more: bool = False, recent: Recent | None = None, keys: np.ndarray | None = None) -> int:
    """Apply `guard` to `batch` in place: refused events move to `batch.rejected` with their
    reason, deferred ones to `batch.deferred`, far-past ones are dropped and counted.
    `progress` is the newest time the stream accepted before (None, or not finite: none yet).
    `recent` (a replay's input), with `keys`, the arrival key of each position: the stream's
    last accepted events, updated with this batch's. Returns how many events were counted late."""
    if not batch.accepted:
        return 0
    if progress is not None and not np.isfinite(progress):
        progress = None  # a source held back before it delivered anything has no progress yet
    ts, pos = batch.times()
    verdict = guard(ts, pos, progress, skew_s, now, more, recent, keys)
    if recent is not None:
        taken = verdict.accepted
        if taken is None:
            order = np.argsort(pos, kind="stable")
            taken_ts, taken = ts[order], pos[order]
        else:
            taken_ts = _times_of(ts, pos, taken)
        recent.take(taken if keys is None else np.asarray(keys, dtype=np.int64)[taken], taken_ts)
    late = verdict.late
    if len(late) and (batch.deploys or batch.checks or batch.incidents):
        # Far past only matters to what opens windows: a deploy before any
        # traffic (or a check, an incident) is taken as at any other time (a late deploy is
        # judged from history), and dropping it would leave the deploy without a verdict.
        rare = {e.pos for e in (*batch.deploys, *batch.checks, *batch.incidents)}
        late = np.asarray([p for p in late.tolist() if p not in rare], np.int64)
    if not verdict.reject and not len(late) and not len(verdict.defer):
        return 0
    batch.drop(np.concatenate([np.fromiter(verdict.reject, np.int64, len(verdict.reject)), late,
                               verdict.defer]))
    batch.deferred.extend(verdict.defer.tolist())
    batch.rejected.extend(Rejected(p, reason) for p, reason in verdict.reject.items())
    batch.rejected.sort(key=lambda r: r.pos)
    return len(late)
