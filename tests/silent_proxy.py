"""A TCP proxy on 127.0.0.1 that can go silent: connections stay open, and nothing is answered.

As a firewall or NAT that dropped a flow's state looks to the client: its writes are taken (the proxy's
socket acknowledges them) and dropped, and no reply ever comes. Connections made while silent are accepted
and answer nothing either. `restore()` forwards new connections again; those that went silent stay dead,
as the dropped flow would.
"""

from __future__ import annotations

import socket
import threading


class SilentProxy:
    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._silent = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.swallowed = 0  # bytes dropped while silent
        self.swallowing = threading.Event()  # set when a client's bytes were dropped
        self._closed = False

    def url_for(self, url: str) -> str:
        """`url` (a PostgreSQL URL on the target) through this proxy."""
        host, port = self.target
        return url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}")

    def start(self) -> SilentProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def go_silent(self) -> None:
        self.swallowing.clear()
        self._silent.set()

    def restore(self) -> None:
        self._silent.clear()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(client)
            if self._silent.is_set():
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.append(upstream)
            state = {"dead": False}
            threading.Thread(target=self._pipe, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, state), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, state: dict) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                if not state["dead"]:
                    with _suppress():
                        sink.shutdown(socket.SHUT_WR)
                return
            if self._silent.is_set() or state["dead"]:
                state["dead"] = True  # this flow is gone for good, as a dropped NAT entry
                self._swallowed(len(data))
                continue
            try:
                sink.sendall(data)
            except OSError:
                return

    def _swallow(self, client: socket.socket) -> None:
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                return
            if not data:
                return
            self._swallowed(len(data))

    def _swallowed(self, n: int) -> None:
        with self._lock:
            self.swallowed += n
        self.swallowing.set()


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)
