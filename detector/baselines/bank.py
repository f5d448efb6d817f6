"""The baselines of every signal of a partition (`BaselineBank`), with the registry of stable
series keys they share, which is what makes a saved bank meaningful to a new process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np

from detector.baselines.files import (FORMAT_VERSION, _BANK_FORMAT, BaselineFormatError, _atomic_write, _read_file,
                                      _read_npz, _write_npz)
from detector.baselines.model import SeasonalBaseline
from detector.baselines.settings import (KIND_ADDITIVE, KIND_COUNT, KIND_SCALE, BaselineConfig, _config_from,
                                         _incompatible)
from detector.baselines.snapshots import _n_series_from




# Signal name -> kind for the signals the windowed core produces. Metric
# values can be negative or sit near zero, so they are additive.
DEFAULT_SIGNAL_KINDS: dict[str, str] = {
    "volume": KIND_COUNT,
    "transactions": KIND_COUNT,
    "log_errors": KIND_COUNT,
    "error_rate": KIND_ADDITIVE,
    "metric": KIND_ADDITIVE,
}


def latency_signal(quantile: float) -> str:
    """Signal name of a latency quantile: 0.99 -> 'latency_p99', 0.999 -> 'latency_p99.9'."""
    return f"latency_p{round(quantile * 100, 6):g}"


class BaselineBank:
    """The baselines of every signal of a partition, plus the stable series registry they share.

    Series keys are strings chosen by the caller (e.g. service and endpoint
    joined by a separator that cannot occur in names). Indices are dense and
    shared by all signals. Keys, unlike interned ids, mean the same thing in
    another process, which is what lets a saved bank warm-start a new one.
    """

    def __init__(self, configs: Mapping[str, BaselineConfig]) -> None:
        if not configs:
            raise ValueError("a BaselineBank needs at least one signal (got an empty mapping)")
        self.baselines: dict[str, SeasonalBaseline] = {name: SeasonalBaseline(cfg) for name, cfg in configs.items()}
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        # Learnt state of other detectors that travels in the same warm-start file (the metric
        # detector's per-series state): name -> (JSON-able header, float64 arrays). Opaque here.
        self.attachments: dict[str, tuple[dict, dict[str, np.ndarray]]] = {}

    @classmethod
    def for_signals(cls, latency_quantiles: Iterable[float] = (0.5, 0.95, 0.99), **settings) -> "BaselineBank":
        """A bank with the default signals (`DEFAULT_SIGNAL_KINDS` and one scale baseline per latency
        quantile), every one built with the same `BaselineConfig` settings, e.g. slot_s=1800.0."""
        kinds = dict(DEFAULT_SIGNAL_KINDS)
        kinds.update({latency_signal(q): KIND_SCALE for q in latency_quantiles})
        return cls({name: BaselineConfig(kind=kind, **settings) for name, kind in kinds.items()})

    def __getitem__(self, signal: str) -> SeasonalBaseline:
        try:
            return self.baselines[signal]
        except KeyError:
            raise KeyError(f"no baseline for signal {signal!r}; this bank has {', '.join(self.baselines)}") from None

    @property
    def signals(self) -> list[str]:
        return list(self.baselines)

    @property
    def series_keys(self) -> list[str]:
        return list(self._keys)

    @property
    def n_keys(self) -> int:
        """How many series keys are registered (indices 0 .. n_keys - 1)."""
        return len(self._keys)

    def series_index(self, keys: Iterable[str]) -> np.ndarray:
        """Dense index of each key; unseen keys get the next free index."""
        out = []
        for key in keys:
            i = self._index.get(key)
            if i is None:
                i = self._index[key] = len(self._keys)
                self._keys.append(key)
            out.append(i)
        return np.asarray(out, dtype=np.int64)

    def lookup(self, keys: Iterable[str]) -> np.ndarray:
        """Index of each key, -1 for keys never seen (does not register them)."""
        return np.asarray([self._index.get(k, -1) for k in keys], dtype=np.int64)

    def to_bytes(self) -> bytes:
        header = {"format": _BANK_FORMAT, "version": FORMAT_VERSION, "series_keys": self._keys,
                  "signals": {name: {"config": asdict(b.config), "n_series": b.n_series}
                              for name, b in self.baselines.items()}}
        arrays: dict[str, np.ndarray] = {}
        for name, b in self.baselines.items():
            arrays.update(b._arrays(prefix=f"{name}/"))
        if self.attachments:
            header["attachments"] = {name: h for name, (h, _a) in self.attachments.items()}
            for name, (_h, a) in self.attachments.items():
                arrays.update({f"@{name}/{k}": v for k, v in a.items()})
        return _write_npz(header, arrays)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>",
                   configs: Mapping[str, BaselineConfig] | None = None) -> "BaselineBank":
        """Restore from `to_bytes` output; errors name `source`.

        With `configs` (the pipeline's current settings), the bank gets exactly
        those signals: a saved signal keeps its learnt state under the new
        settings, a new signal starts cold, a signal no longer configured is
        dropped. Changing a signal's kind or slot_s makes its state meaningless
        and is refused.
        """
        header, arrays = _read_npz(data, source, _BANK_FORMAT)
        keys, signals = header.get("series_keys"), header.get("signals")
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)
                and isinstance(signals, dict) and signals and len(set(keys)) == len(keys)):
            raise BaselineFormatError(f"{source}: header lacks a list of unique series_keys or a signals table; "
                                      "the file is damaged: delete it to start cold")
        saved: dict[str, SeasonalBaseline] = {}
        for name, part in signals.items():
            where = f"{source} (signal {name!r})"
            if not isinstance(part, dict):
                raise BaselineFormatError(f"{where}: signal entry should be a table, got {part!r}")
            n_series = _n_series_from(part, where)
            if n_series > len(keys):
                raise BaselineFormatError(f"{where}: {n_series} series but only {len(keys)} series keys; "
                                          "the file is damaged: delete it to start cold")
            saved[name] = SeasonalBaseline._from_parts(
                _config_from(part.get("config"), where), n_series, arrays, f"{name}/", where)
        bank = cls.__new__(cls)
        if configs is None:
            bank.baselines = saved
        else:
            bank.baselines = {}
            for name, cfg in configs.items():
                old = saved.get(name)
                if old is None:
                    bank.baselines[name] = SeasonalBaseline(cfg)
                    continue
                problem = _incompatible(old.config, cfg)
                if problem:
                    raise BaselineFormatError(f"{source}: signal {name!r}: {problem}; restore the setting in "
                                              "the pipeline, or delete the file to start cold")
                old.config = cfg
                bank.baselines[name] = old
        bank._keys = list(keys)
        bank._index = {k: i for i, k in enumerate(keys)}
        attached = header.get("attachments", {})
        if not (isinstance(attached, dict) and all(isinstance(h, dict) for h in attached.values())):
            raise BaselineFormatError(f"{source}: header's attachments should be a table of tables; "
                                      "the file is damaged: delete it to start cold")
        bank.attachments = {name: (h, {k[len(name) + 2:]: a for k, a in arrays.items() if k.startswith(f"@{name}/")})
                            for name, h in attached.items()}
        return bank

    def save(self, path: str | os.PathLike) -> None:
        """Write the bank to `path` atomically; this is the models/ warm-start file."""
        _atomic_write(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike, configs: Mapping[str, BaselineConfig] | None = None) -> "BaselineBank":
        """Read a bank written by `save`; see `from_bytes` for `configs`."""
        return cls.from_bytes(_read_file(Path(path)), str(path), configs)
