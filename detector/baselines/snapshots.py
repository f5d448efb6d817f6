"""Saving and restoring a seasonal baseline: its state as .npz bytes or a file (format in `files`).

`BaselineSnapshots` gives `SeasonalBaseline` its `to_bytes` / `from_bytes` and
`save` / `load`, and the parts (`_header`, `_arrays`, `_from_parts`) a bank
of baselines writes into one archive.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from detector.baselines.files import (FORMAT_VERSION, _BASELINE_FORMAT, BaselineFormatError, _atomic_write, _read_file,
                                      _read_npz, _write_npz)
from detector.baselines.recursions import _SERIES_FIELDS, _SLOT_FIELDS
from detector.baselines.settings import BaselineConfig, _config_from

if TYPE_CHECKING:
    from detector.baselines.model import SeasonalBaseline


class BaselineSnapshots:
    """The snapshot methods of `SeasonalBaseline` (state in `_series`, `_slots`, `_n`)."""

    def _header(self) -> dict:
        return {"format": _BASELINE_FORMAT, "version": FORMAT_VERSION, "config": asdict(self.config),
                "n_series": self._n}

    def _arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        out = {prefix + k: self._series[i, : self._n] for i, k in enumerate(_SERIES_FIELDS)}
        out.update({prefix + k: self._slots[i, : self._n] for i, k in enumerate(_SLOT_FIELDS)})
        return out

    @classmethod
    def _from_parts(cls, config: BaselineConfig, n_series: int, arrays: Mapping[str, np.ndarray],
                    prefix: str, source: str) -> "SeasonalBaseline":
        baseline = cls(config)
        baseline._ensure(n_series)
        for store, names, shape in ((baseline._series, _SERIES_FIELDS, (n_series,)),
                                    (baseline._slots, _SLOT_FIELDS, (n_series, config.n_slots))):
            for i, k in enumerate(names):
                a = arrays.get(prefix + k)
                if a is None or a.shape != shape or a.dtype != np.float64:
                    got = "missing" if a is None else f"{a.dtype}{a.shape}"
                    raise BaselineFormatError(f"{source}: array {prefix + k!r} should be float64{shape}, "
                                              f"got {got}; the file is damaged: delete it to start cold")
                store[i, :n_series] = a
        return baseline

    def to_bytes(self) -> bytes:
        """The whole state as bytes (a numpy .npz archive with a JSON header; no pickle)."""
        return _write_npz(self._header(), self._arrays())

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> "SeasonalBaseline":
        """Restore from `to_bytes` output; errors name `source` (e.g. the file it came from)."""
        header, arrays = _read_npz(data, source, _BASELINE_FORMAT)
        return cls._from_parts(_config_from(header.get("config"), source), _n_series_from(header, source),
                               arrays, "", source)

    def save(self, path: str | os.PathLike) -> None:
        """Write the snapshot to `path` atomically (a reader never sees half a file)."""
        _atomic_write(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SeasonalBaseline":
        return cls.from_bytes(_read_file(Path(path)), str(path))


def _n_series_from(header: dict, source: str) -> int:
    n = header.get("n_series")
    if not (isinstance(n, int) and n >= 0):
        raise BaselineFormatError(f"{source}: n_series should be an int >= 0, got {n!r}")
    return n
