"""The baseline file format: deterministic .npz archives with a JSON header, read with the
source named in every error.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import orjson

FORMAT_VERSION = 2  # 2: configs name a timezone and day profiles (slots = profiles x slots per day)
READABLE_VERSIONS = (1, 2)  # a version 1 file is one profile for every day, in UTC
_BASELINE_FORMAT = "detector.baseline"
_BANK_FORMAT = "detector.baseline-bank"


_HEADER = "__header__"


class BaselineFormatError(ValueError):
    """A snapshot or models/ file cannot be read as a baseline; the message names the source."""


def _write_npz(header: dict, arrays: Mapping[str, np.ndarray]) -> bytes:
    """An .npz archive (readable by numpy.load) whose bytes depend only on the content.

    numpy.savez stamps each member with the current time; a fixed stamp makes
    equal states give equal snapshots, which checkpoints and tests rely on.
    """
    buf = io.BytesIO()
    payload = {_HEADER: np.frombuffer(orjson.dumps(header), dtype=np.uint8)}
    payload.update({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()})
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in payload.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buf.getvalue()


def _read_npz(data: bytes, source: str, expected_format: str) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        header = orjson.loads(arrays.pop(_HEADER).tobytes())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, orjson.JSONDecodeError) as e:
        raise BaselineFormatError(f"{source}: not a baseline snapshot ({type(e).__name__}: {e}); "
                                  "delete it to start cold, or point to a file written by BaselineBank.save") from None
    if not isinstance(header, dict) or header.get("format") != expected_format:
        found = header.get("format") if isinstance(header, dict) else header
        readers = {_BASELINE_FORMAT: "SeasonalBaseline.load", _BANK_FORMAT: "BaselineBank.load"}
        hint = f"read it with {readers[found]}" if found in readers else "it is not a baseline file"
        raise BaselineFormatError(f"{source}: format is {found!r}, expected {expected_format!r}; {hint}")
    if header.get("version") not in READABLE_VERSIONS:
        raise BaselineFormatError(f"{source}: format version {header.get('version')!r} is not supported "
                                  f"(this build reads versions {', '.join(map(str, READABLE_VERSIONS))}); "
                                  "delete the file to start cold "
                                  "or use the detector release that wrote it")
    return header, arrays


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise BaselineFormatError(f"{path}: cannot read baseline file: {e.strerror}") from None


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
