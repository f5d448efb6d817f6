"""Per-series state as named numpy columns that grow with the number of series.

Every piece of the metric detector keeps its state here, one row per series
(dense index), so an update over the K series of a closed window is a
handful of array operations, and a snapshot is the arrays themselves.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class SeriesColumns:
    """Named float64 columns, shape (capacity,) or (capacity, width), with initial values."""

    def __init__(self, spec: Mapping[str, tuple[int, float]]) -> None:
        self.spec = dict(spec)  # name -> (width, initial value); width 0 means a plain vector
        self.n = 0
        self.cols: dict[str, np.ndarray] = {name: self._new(width, fill, 16)
                                            for name, (width, fill) in self.spec.items()}

    @staticmethod
    def _new(width: int, fill: float, cap: int) -> np.ndarray:
        return np.full((cap, width) if width else cap, fill, dtype=np.float64)

    def ensure(self, n_series: int) -> None:
        """Room for series 0 .. n_series - 1; new rows hold the initial values."""
        if n_series <= self.n:
            return
        cap = len(next(iter(self.cols.values())))
        if n_series > cap:
            new_cap = max(n_series, 2 * cap)
            for name, (width, fill) in self.spec.items():
                grown = self._new(width, fill, new_cap)
                grown[:cap] = self.cols[name]
                self.cols[name] = grown
        self.n = n_series

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def to_state(self) -> dict[str, np.ndarray]:
        return {name: a[: self.n].copy() for name, a in self.cols.items()}

    def load_state(self, arrays: Mapping[str, np.ndarray], source: str) -> None:
        """Inverse of `to_state`; shapes are checked against the spec (a ValueError names `source`)."""
        if set(arrays) != set(self.spec):
            raise ValueError(f"{source}: columns {sorted(arrays)} do not match {sorted(self.spec)}")
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) > 1:
            raise ValueError(f"{source}: columns have different lengths {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        for name, (width, _fill) in self.spec.items():
            a = np.asarray(arrays[name], dtype=np.float64)
            want = (n, width) if width else (n,)
            if a.shape != want:
                raise ValueError(f"{source}: column {name!r} has shape {a.shape}, expected {want}")
        self.n = 0
        self.cols = {name: self._new(width, fill, max(16, n)) for name, (width, fill) in self.spec.items()}
        self.ensure(n)
        for name in self.spec:
            self.cols[name][:n] = arrays[name]
