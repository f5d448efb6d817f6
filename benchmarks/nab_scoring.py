"""NAB's scoring rules, written from their description and NAB's scorer (nab/sweeper.py, nab/runner.py).

Per file, every row gets a weight from where it lies:

* inside a labelled window of width W rows whose right edge is row R, row i
  (position y = -(R - i + 1) / W, in [-1, 0)) is worth
  `tp_weight * sigma(y) / sigma(-1)`, where `sigma(y) = 2 / (1 + exp(5 y)) - 1`
  (the scaled sigmoid: 1 at the window's left edge, 0 at its right edge);
* outside every window, a detection costs `fp_weight * sigma(y)` with
  y = |i - R_prev| / (W_prev - 1) measured from the previous window's right
  edge (sigma(y) = -1 past 3 window widths, and before the first window);
* rows in the probationary period (the first min(floor(15 % of rows), 750)
  rows) are not scored at all.

A detection is a row whose anomaly score is >= the threshold. A window's
score is the best (earliest) detection in it, or `-fn_weight` if none; false
positives add up. The corpus score is the sum over files; it is normalised
as 100 * (S - S_null) / (S_perfect - S_null), with S_perfect = windows x
tp_weight and S_null the score of a detector that never fires.

`sweep` is NAB's threshold optimiser: the best corpus score over every
distinct anomaly score used as threshold (it tunes on the labels).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROBATION_PERCENT = 0.15


@dataclass(frozen=True)
class Profile:
    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


def load_profiles(path: Path) -> list[Profile]:
    raw = json.loads(Path(path).read_text())
    return [Profile(name, float(p["CostMatrix"]["tpWeight"]), float(p["CostMatrix"]["fpWeight"]),
                    float(p["CostMatrix"]["fnWeight"])) for name, p in raw.items()]


def parse_times(values) -> np.ndarray:
    """NAB timestamps ("2014-07-01 00:00:00", windows with ".000000") as datetime64[us]."""
    return np.array([str(v).strip().replace(" ", "T") for v in values], dtype="datetime64[us]")


def scaled_sigmoid(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return np.where(y > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0)


@dataclass
class FileRows:
    """One file's scorable rows: window id (-1 outside) and the unweighted row value (sigma above)."""

    name: str
    n_rows: int
    scorable: np.ndarray  # bool [n_rows]: past the probationary period
    window: np.ndarray  # int [n_rows]: index of the window holding the row, -1 outside
    value: np.ndarray  # float [n_rows]: sigma(y) / sigma(-1) inside, sigma(y) outside
    scored_windows: int  # windows with at least one scorable row


def file_rows(name: str, timestamps: np.ndarray, windows: list[tuple[str, str]]) -> FileRows:
    """Row weights of one file; window edges must be timestamps of rows (as NAB requires)."""
    n = len(timestamps)
    index = {t: i for i, t in enumerate(timestamps.tolist())}
    window = np.full(n, -1, dtype=np.int64)
    value = np.empty(n, dtype=np.float64)
    max_tp = float(scaled_sigmoid(-1.0))
    edges = []
    for k, (a, b) in enumerate(windows):
        ta, tb = parse_times([a, b]).tolist()
        if ta not in index or tb not in index:
            raise ValueError(f"{name}: window {a} .. {b} does not start and end on rows of the file")
        edges.append((index[ta], index[tb]))
    edges.sort()
    rows = np.arange(n)
    prev_right, prev_width = None, None
    cursor = 0
    for k, (left, right) in enumerate(edges + [(n, n)]):
        # rows between the previous window and this one: false positives
        gap = slice(cursor, left)
        if prev_right is None:
            value[gap] = -1.0
        else:
            value[gap] = scaled_sigmoid(np.abs(prev_right - rows[gap]) / (prev_width - 1.0))
        if left >= n:
            break
        width = float(right - left + 1)
        inside = slice(left, right + 1)
        window[inside] = k
        value[inside] = scaled_sigmoid(-(right - rows[inside] + 1) / width) / max_tp
        prev_right, prev_width, cursor = right, width, right + 1
    probation = min(math.floor(PROBATION_PERCENT * n), PROBATION_PERCENT * 5000)
    scorable = rows >= probation
    scored = len(np.unique(window[scorable & (window >= 0)]))
    return FileRows(name, n, scorable, window, value, scored)


def score_file(rows: FileRows, scores: np.ndarray, threshold: float, profile: Profile) -> dict:
    """Raw score and counts of one file at one threshold (detection: score >= threshold)."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != rows.n_rows:
        raise ValueError(f"{rows.name}: {len(scores)} anomaly scores for {rows.n_rows} rows")
    hit = rows.scorable & (scores >= threshold)
    in_win = rows.window >= 0
    fp_rows = hit & ~in_win
    total = float(np.sum(rows.value[fp_rows]) * profile.fp_weight)
    detected = 0
    for k in np.unique(rows.window[rows.scorable & in_win]).tolist():
        sel = hit & (rows.window == k)
        if sel.any():
            total += float(np.max(rows.value[sel])) * profile.tp_weight
            detected += 1
        else:
            total -= profile.fn_weight
    scorable_in = rows.scorable & in_win
    return {"score": total, "tp": int(np.sum(hit & in_win)), "fp": int(np.sum(fp_rows)),
            "fn": int(np.sum(scorable_in & ~hit)), "tn": int(np.sum(rows.scorable & ~in_win & ~hit)),
            "windows_detected": detected, "windows": rows.scored_windows}


@dataclass(frozen=True)
class Outcome:
    """Where one file's score comes from at one threshold (see `outcomes`)."""

    windows: list[tuple[int, int | None, float]]  # (window, first detection's row or None, its weight)
    fp_rows: np.ndarray  # rows detected outside every window (scorable ones)
    fp_cost: float  # what they cost (<= 0, fp_weight applied)


def outcomes(rows: FileRows, scores: np.ndarray, threshold: float, profile: Profile) -> Outcome:
    """`score_file`'s total split by its sources: each scored window's best detection (or none: a miss)
    and the false-positive rows. found weights x tp_weight - misses x fn_weight + fp_cost is the file's score."""
    hit = rows.scorable & (np.asarray(scores, dtype=np.float64) >= threshold)
    windows = []
    for k in np.unique(rows.window[rows.scorable & (rows.window >= 0)]).tolist():
        found = np.flatnonzero(hit & (rows.window == k))
        first = int(found[np.argmax(rows.value[found])]) if len(found) else None
        windows.append((k, first, float(rows.value[first]) if first is not None else 0.0))
    fp = np.flatnonzero(hit & (rows.window < 0))
    return Outcome(windows, fp, float(np.sum(rows.value[fp]) * profile.fp_weight))


def score_corpus(files: dict[str, FileRows], scores: dict[str, np.ndarray], threshold: float,
                 profile: Profile) -> dict:
    """Corpus totals at one threshold."""
    total = {"score": 0.0, "tp": 0, "fp": 0, "fn": 0, "tn": 0, "windows_detected": 0, "windows": 0}
    for name, rows in files.items():
        for k, v in score_file(rows, scores[name], threshold, profile).items():
            total[k] += v
    return total


def sweep(files: dict[str, FileRows], scores: dict[str, np.ndarray], profile: Profile) -> tuple[float, float]:
    """NAB's optimiser: (threshold, raw score) maximising the corpus score over every distinct score."""
    parts_s, parts_w, parts_v = [], [], []
    n_windows = 0
    for name, rows in files.items():
        sel = rows.scorable
        win = rows.window[sel]
        # windows get corpus-wide ids
        parts_w.append(np.where(win >= 0, win + n_windows, -1))
        n_windows += int(rows.window.max()) + 1 if len(rows.window) and rows.window.max() >= 0 else 0
        parts_s.append(np.asarray(scores[name], dtype=np.float64)[sel])
        parts_v.append(rows.value[sel])
    s, w, v = np.concatenate(parts_s), np.concatenate(parts_w), np.concatenate(parts_v)
    order = np.argsort(-s, kind="stable")
    s, w, v = s[order], w[order], v[order]
    scored = np.unique(w[w >= 0])
    best_val = {int(k): -profile.fn_weight for k in scored.tolist()}
    current = -profile.fn_weight * len(best_val)
    best = (1.1, current)
    fp_sum = 0.0
    win_sum = current
    i, n = 0, len(s)
    s_l, w_l, v_l = s.tolist(), w.tolist(), v.tolist()
    while i < n:
        t = s_l[i]
        while i < n and s_l[i] == t:
            k = w_l[i]
            if k < 0:
                fp_sum += v_l[i] * profile.fp_weight
            else:
                val = v_l[i] * profile.tp_weight
                if val > best_val[k]:
                    win_sum += val - best_val[k]
                    best_val[k] = val
            i += 1
        if fp_sum + win_sum > best[1]:
            best = (t, fp_sum + win_sum)
    return best


def normalise(raw: float, null: float, perfect: float) -> float:
    return 100.0 * (raw - null) / (perfect - null)


def load_windows(path: Path) -> dict[str, list[tuple[str, str]]]:
    return {k: [tuple(w) for w in v] for k, v in json.loads(Path(path).read_text()).items()}
