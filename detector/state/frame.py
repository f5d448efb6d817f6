"""The byte frame of a core state snapshot and its array region.

`_open` checks the frame (magic, format version, checksum, lengths), inflates
the payload and splits it into the orjson header and the array data;
`_Writer` collects arrays into the aligned data region (integers narrowed to
the smallest type that holds them) and `_Reader` reads them back, checked
against the region and widened to the type the caller needs. `_section`
turns a failure to rebuild one part of the state into a `StateError` naming
that part. The layout is drawn in `detector.state`'s docstring.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson

FORMAT_NAME = "detector.core-state"
FORMAT_VERSION = 3  # 2: verifications keep accumulated evidence; 3: metric series remember recurring excursions
MAGIC = b"DETSTATE"
_PREFIX = struct.Struct("<8sIIQQ")
_COMPRESS_LEVEL = 3  # demo-sized state: 8 ms, 9 % larger than level 6 at a third of its time
_ALIGN = 8
_START_COLD = "delete the checkpoint to start this partition cold"

# dtypes an array may be stored as; nothing else is read (in particular no object arrays)
_STORED_DTYPES = frozenset(np.dtype(t).str for t in (
    np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64, np.float64))
_INT_LADDER = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32))


class StateError(ValueError):
    """A core state snapshot cannot be written or restored; the message says why and what to do."""


def _open(data: bytes) -> tuple[dict, memoryview]:
    """Check the frame, inflate, split header and array data."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StateError(f"a core state snapshot is bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size:
        raise StateError(f"core state snapshot is truncated: {len(data)} bytes, shorter than its "
                         f"{_PREFIX.size}-byte frame; {_START_COLD}")
    magic, version, crc, n_payload, n_raw = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise StateError(f"not a core state snapshot: starts with {magic!r}, expected {MAGIC!r}; the checkpoint "
                         f"was written by something else: {_START_COLD}")
    if version != FORMAT_VERSION:
        raise StateError(f"core state snapshot has format version {version}, this build reads version "
                         f"{FORMAT_VERSION}; run the detector release that wrote it, or {_START_COLD}")
    payload = data[_PREFIX.size:]
    if len(payload) != n_payload:
        what = "truncated" if len(payload) < n_payload else "longer than its frame says"
        raise StateError(f"core state snapshot is {what}: the frame announces {n_payload} payload bytes, "
                         f"found {len(payload)}; {_START_COLD}")
    if zlib.crc32(payload) != crc:
        raise StateError(f"core state snapshot is corrupt: payload checksum {zlib.crc32(payload):#010x} does not "
                         f"match {crc:#010x}; {_START_COLD}")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(payload, n_raw + 1)
    except zlib.error as e:
        raise StateError(f"core state snapshot is corrupt: cannot inflate its payload ({e}); {_START_COLD}") from None
    if len(raw) != n_raw or not inflater.eof:
        raise StateError(f"core state snapshot is corrupt: the payload inflates to {len(raw)} bytes, the frame "
                         f"says {n_raw}; {_START_COLD}")
    if n_raw < 4 or struct.unpack_from("<I", raw)[0] > n_raw - 4:
        raise StateError(f"core state snapshot is corrupt: its header length does not fit the payload; {_START_COLD}")
    n_head = struct.unpack_from("<I", raw)[0]
    try:
        header = orjson.loads(raw[4:4 + n_head])
    except orjson.JSONDecodeError as e:
        raise StateError(f"core state snapshot is corrupt: its header is not JSON ({e}); {_START_COLD}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise StateError(f"core state snapshot header names format {got!r}, expected {FORMAT_NAME!r}; "
                         f"{_START_COLD}")
    return header, memoryview(raw)[4 + n_head:]


class _Writer:
    """Collects arrays into one aligned byte region; `array` returns the index the header refers to."""

    def __init__(self) -> None:
        self.table: list[list] = []
        self.chunks: list[bytes] = []
        self.size = 0

    def array(self, a: np.ndarray, dtype: Any = None) -> int:
        a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
        a = _narrow(a)
        stored = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        body = np.ascontiguousarray(a, dtype=stored).tobytes()
        pad = -self.size % _ALIGN
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        self.table.append([stored.str, list(a.shape), self.size])
        self.chunks.append(body)
        self.size += len(body)
        return len(self.table) - 1

    def blob(self, data: bytes) -> int:
        return self.array(np.frombuffer(data, dtype=np.uint8))


def _narrow(a: np.ndarray) -> np.ndarray:
    """The smallest integer type holding every value (exact: widened back on restore)."""
    if a.dtype.kind not in "iu":
        if a.dtype.str not in _STORED_DTYPES:
            raise StateError(f"cannot snapshot an array of dtype {a.dtype}; extend detector/state/frame.py")
        return a
    if not a.size:
        return a.astype(np.uint8)
    lo, hi = int(a.min()), int(a.max())
    for t in _INT_LADDER:
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            return a.astype(t)
    if a.dtype == np.uint64 and hi > np.iinfo(np.int64).max:
        raise StateError(f"cannot snapshot uint64 values above 2**63 (got {hi}); extend detector/state/frame.py")
    return a.astype(np.int64)


class _Reader:
    """Arrays of a snapshot by index, checked against the region and widened to the type the caller needs."""

    def __init__(self, table: Any, region: memoryview) -> None:
        if not isinstance(table, list):
            raise StateError(f"core state snapshot has no array table; {_START_COLD}")
        self.table = table
        self.region = region

    def array(self, ref: Any, dtype: Any) -> np.ndarray:
        if type(ref) is not int or not 0 <= ref < len(self.table):
            raise ValueError(f"array reference {ref!r} is not an index into the {len(self.table)} stored arrays")
        entry = self.table[ref]
        if not (isinstance(entry, list) and len(entry) == 3 and entry[0] in _STORED_DTYPES
                and isinstance(entry[1], list) and all(type(d) is int and d >= 0 for d in entry[1])
                and type(entry[2]) is int and entry[2] >= 0):
            raise ValueError(f"array #{ref} has a malformed entry {entry!r} (allowed dtypes: "
                             f"{sorted(_STORED_DTYPES)})")
        stored, shape, offset = np.dtype(entry[0]), tuple(entry[1]), entry[2]
        count = math.prod(shape)
        if offset + count * stored.itemsize > len(self.region):
            raise ValueError(f"array #{ref} ({count} x {stored}) runs past the end of the array data")
        a = np.frombuffer(self.region, dtype=stored, count=count, offset=offset).reshape(shape)
        want = np.dtype(dtype)
        if want.kind in "iu":
            if stored.kind not in "iu":
                raise ValueError(f"array #{ref} should hold integers, holds {stored}")
            if a.size and not np.can_cast(stored, want) and (
                    int(a.min()) < np.iinfo(want).min or int(a.max()) > np.iinfo(want).max):
                raise ValueError(f"array #{ref} has values outside {want}")
        elif want.kind != stored.kind:
            raise ValueError(f"array #{ref} should hold {want}, holds {stored}")
        return a.astype(want)  # always a copy: restored state owns writable arrays

    def vector(self, ref: Any, dtype: Any) -> np.ndarray:
        a = self.array(ref, dtype)
        if a.ndim != 1:
            raise ValueError(f"array #{ref} should be one-dimensional, has shape {a.shape}")
        return a

    def blob(self, ref: Any) -> bytes:
        return self.vector(ref, np.uint8).tobytes()


@contextmanager
def _section(name: str) -> Iterator[None]:
    """Turns any failure to rebuild one part of the state into a StateError naming that part."""
    try:
        yield
    except StateError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise StateError(f"core state snapshot: the {name} section is malformed ({type(e).__name__}: {e}); "
                         f"{_START_COLD}") from None
