"""Window summaries on disk, so that a report is rebuilt without the pass over the events.

`detector report --summaries FILE` writes the pass's result to FILE (an
uncompressed `.npz`: the summary columns as arrays, everything else in one
JSON header) and, on the next run over the same input file (same name, size
and modification time) and window width, reads it instead of passing over
the events again. Loading never unpickles (`allow_pickle=False`); a file
that does not match or does not parse is ignored and rewritten.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import orjson

from detector.report.model import DeployView
from detector.report.summaries import Summaries, TemplateNote

FORMAT = "detector-report-summaries/1"
_DEPLOY_FIELDS = ("deploy_id", "service", "version", "ts", "strategy", "previous_version", "change_kind", "commit",
                  "author")


def input_stamp(path: str | Path) -> dict:
    st = os.stat(path)
    return {"name": Path(path).name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def save(path: str | Path, history, stamp: dict) -> None:
    s: Summaries = history.summaries
    cols, scols = s.columns(), s.seasonal_columns()
    keys = sorted(s.templates)
    key_index = {k: i for i, k in enumerate(keys)}
    tpl = np.array([(t[0], t[1], t[2], key_index[t[3]], t[4]) for t in s.tpl_rows], np.float64).reshape(-1, 5)
    header = {"format": FORMAT, "input": stamp, "width_s": s.width_s, "names": s.names, "first_start": s.first_start,
              "last_end": s.last_end, "templates": [[k, vars(s.templates[k])] for k in keys],
              "deploys": [{f: getattr(d, f) for f in _DEPLOY_FIELDS} for d in history.deploys],
              "checks": history.checks, "events": history.events}
    arrays = {f"r_{k}": v for k, v in cols.items()} | {f"s_{k}": v for k, v in scols.items()} | {"tpl": tpl}
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(orjson.dumps(header), np.uint8), **arrays)
    tmp = Path(f"{path}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def load(path: str | Path, stamp: dict, width_s: float):
    """The saved history when it was made from this input with this window width, else None."""
    from detector.report.build import History

    try:
        with np.load(path, allow_pickle=False) as z:
            header = orjson.loads(z["header"].tobytes())
            if header.get("format") != FORMAT or header.get("input") != stamp or header.get("width_s") != width_s:
                return None
            arrays = {k: z[k] for k in z.files if k != "header"}
    except (OSError, ValueError, KeyError, orjson.JSONDecodeError):
        return None
    s = Summaries(width_s)
    for name in header["names"]:
        s.name_id(name)
    s.add_rows({k[2:]: v for k, v in arrays.items() if k.startswith("r_")})
    s.add_seasonal({k[2:]: v for k, v in arrays.items() if k.startswith("s_")})
    keys = [k for k, _ in header["templates"]]
    s.templates = {k: TemplateNote(**note) for k, note in header["templates"]}
    s.tpl_rows = [(float(a), int(b), int(c), keys[int(d)], int(e)) for a, b, c, d, e in arrays["tpl"].tolist()]
    s.first_start, s.last_end = header["first_start"], header["last_end"]
    deploys = [DeployView(**d) for d in header["deploys"]]
    return History(s, deploys, header["checks"], header["events"])
