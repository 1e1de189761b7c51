"""A TCP proxy on 127.0.0.1 that stands between a client and a real server to make the network slow, stalled or
down, so tests can put the uploader and the load through the faults of a real network."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Proxy:
    """Forwards connections from ``port`` to 127.0.0.1:``target_port``.

    - ``bytes_per_second``: each direction of each connection is throttled to this rate (None: full speed);
    - ``stalled``: accept connections but forward nothing (a server that hangs);
    - `stop`: close the listening socket and every connection (a server that went down);
    - `forwarded`: set once a client has sent ``watch`` (bytes) through the proxy, e.g. an HTTP request line.
    """

    target_port: int
    bytes_per_second: float | None = None
    stalled: bool = False
    port: int = 0
    _listener: socket.socket | None = None
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False
    watch: bytes | None = None
    forwarded: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Proxy:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._closed = True
        with self._lock:
            sockets, self._sockets = self._sockets, []
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            with contextlib.suppress(OSError):
                self._listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._closed:
                client.close()
                return
            if self.stalled:
                with self._lock:
                    self._sockets.append(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool = False) -> None:
        chunk = 16 * 1024
        try:
            while True:
                data = src.recv(chunk)
                if not data:
                    break
                if self.bytes_per_second:
                    time.sleep(len(data) / self.bytes_per_second)
                dst.sendall(data)
                if from_client and self.watch and self.watch in data:
                    self.forwarded.set()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
