"""Fixtures of the sink tests: the recording server, and a rollback command that logs its runs."""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


from sinkkit import Recorder, Request


@pytest.fixture
def server() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                        time.monotonic()))
            rec.arrived.set()
            if rec.hanging.is_set():
                rec.released.wait(10)
            status, headers = rec.script.popleft() if rec.script else (202, {})
            payload = json.dumps({"status": "success" if status < 300 else "error"}).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield rec
    rec.released.set()
    httpd.shutdown()
    httpd.server_close()



RECORDER_SCRIPT = """
import json, sys, pathlib
pathlib.Path(sys.argv[1]).open("a").write(json.dumps(sys.argv[2:]) + "\\n")
print("rolled back", *sys.argv[2:])
"""


@pytest.fixture
def rollback_cmd(tmp_path: Path) -> tuple[str, Path]:
    """A command template that appends its arguments to a log file, and that file."""
    script = tmp_path / "undo.py"
    script.write_text(RECORDER_SCRIPT)
    log_file = tmp_path / "runs.jsonl"
    template = (f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(str(log_file))} "
                "deployment/{service} --to-revision-of={deploy_id} {version}")
    return template, log_file


