"""A recording HTTP server on loopback (webhooks, PagerDuty, Alertmanager stand-ins in tests)."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at_s: float

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Recorder:
    """Records every POST; answers the next scripted status (default 202), or hangs until released."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    script: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    hanging: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)

    def answer(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        for s in statuses:
            self.script.append((s, headers or {}))

    def bodies(self) -> list[object]:
        return [r.json() for r in self.requests]


@contextmanager
def recording_server() -> Iterator[Recorder]:
    """A server that records every POST in `rec.requests` and answers as `rec` scripts it."""
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                        time.monotonic()))
            rec.arrived.set()
            if rec.hanging.is_set():
                rec.released.wait(20)
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
    try:
        yield rec
    finally:
        rec.released.set()
        httpd.shutdown()
        httpd.server_close()
