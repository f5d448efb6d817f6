"""A loopback TCP proxy that can refuse connections, for broker-outage tests.

The embedded broker keeps its data in memory only (the Tansu build it ships has
neither its sqlite nor its postgres storage; s3 needs an object store), so
stopping it and starting it again would lose every topic, which is a different
failure from a broker that is down for a minute. A broker that *refuses
connections* is therefore played by this proxy in front of a broker that
advertises the proxy's address: `refuse()` closes the listening socket and
resets every open connection, so clients get ECONNREFUSED / ECONNRESET exactly
as from a stopped broker; `accept()` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        probe = socket.socket()
        probe.bind((host, 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tcp-proxy", daemon=True)

    def start(self) -> TcpProxy:
        self.accept()
        self._thread.start()
        return self

    def accept(self) -> None:
        """Listen (again) on the proxy's port."""
        with self._lock:
            if self._listener is not None:
                return
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.host, self.port))
            s.listen(64)
            s.setblocking(False)
            self._listener = s
            self._sel.register(s, selectors.EVENT_READ, "listen")

    def refuse(self) -> None:
        """Stop listening and reset every open connection: the port now refuses connections."""
        with self._lock:
            if self._listener is not None:
                self._sel.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for sock in list(self._pairs):
                self._close(sock, reset=True)

    def stop(self) -> None:
        self.refuse()
        self._stop.set()
        self._thread.join(5)
        self._sel.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _close(self, sock: socket.socket, reset: bool = False) -> None:
        peer = self._pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._pairs.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s)
            if reset:  # SO_LINGER 0: close sends RST, as a dead broker's kernel does
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                events = self._sel.select(timeout=0.05) if self._sel.get_map() else []
                for key, _ in events:
                    sock = key.fileobj
                    if key.data == "listen":
                        if sock is not self._listener:
                            continue
                        try:
                            client, _ = sock.accept()
                        except OSError:
                            continue
                        try:
                            upstream = socket.create_connection((self.host, self.target_port), timeout=2)
                        except OSError:
                            client.close()
                            continue
                        for s in (client, upstream):
                            s.setblocking(False)
                        self._pairs[client], self._pairs[upstream] = upstream, client
                        self._sel.register(client, selectors.EVENT_READ, "pipe")
                        self._sel.register(upstream, selectors.EVENT_READ, "pipe")
                        continue
                    if sock not in self._pairs:
                        continue
                    try:
                        data = sock.recv(1 << 16)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self._close(sock)
                        continue
                    try:
                        self._pairs[sock].setblocking(True)
                        self._pairs[sock].sendall(data)
                        self._pairs[sock].setblocking(False)
                    except OSError:
                        self._close(sock)
            if not events and not self._sel.get_map():
                self._stop.wait(0.05)
