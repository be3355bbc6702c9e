"""A real HTTP endpoint on 127.0.0.1 that behaves, per path, like the endpoints merchants run.

    /ok       200
    /wide     200 with a 600-character word in its body (a response no screen is wide enough for)
    /fail     500
    /busy     503 with Retry-After (seconds from `retry_after`)
    /gone     410
    /moved    301 to /ok (which must not be followed)
    /slow     answers after `slow_seconds` (longer than the attempt timeout)
    /reset    drops the connection with a TCP reset
    /big      a 1 MB body, written in small pieces
    /flaky    500 for the first `flaky_failures` requests, then 200
    /steady   200 after 50 ms, like a real application doing a little work
    /half     200 after half a second
    /hang     holds the request until `release` is set (or 20 s), then answers `hang_code`
    /nul      200 with a NUL byte in the body, which PostgreSQL cannot store as text
    /gzip     200 with 99 KB of gzip that inflates to 100 MB
    /cookie   200 with a Set-Cookie

`max_concurrent[path]` is the most requests to a path that were open at once.

Every request is recorded (path, headers, body) before it is answered.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclasses.dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


def _gzip_bomb() -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    return b"".join(squeeze.compress(block) for _ in range(100)) + squeeze.flush()


_GZIP_BOMB = _gzip_bomb()


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops connections in a burst
    daemon_threads = True


# How often the serving loop looks whether stop() was called: stop() waits up to that long, in every
# teardown (the default is half a second).
STOP_CHECK_SECONDS = 0.01


class Receiver:
    def __init__(self, *, slow_seconds: float = 3.0, retry_after: int = 120, flaky_failures: int = 1):
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.flaky_failures = flaky_failures
        self.requests: list[Request] = []
        self._flaky_count = 0  # counted as they come: a sum over every request made a long burst quadratic
        self.big_bytes_sent = 0
        self.big_finished = threading.Event()
        self.max_concurrent: dict[str, int] = {}
        self.max_concurrent_all = 0
        self.release = threading.Event()
        self.hang_code = 200
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(STOP_CHECK_SECONDS,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self.requests):
                    return True
            time.sleep(0.02)
        return False

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                path = self.path.split("?")[0]
                with receiver._lock:
                    receiver.requests.append(
                        Request(path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                    )
                    receiver._flaky_count += path == "/flaky"
                    flaky_count = receiver._flaky_count
                    receiver._open[path] = receiver._open.get(path, 0) + 1
                    receiver.max_concurrent[path] = max(receiver.max_concurrent.get(path, 0), receiver._open[path])
                    receiver.max_concurrent_all = max(receiver.max_concurrent_all, sum(receiver._open.values()))
                try:
                    self._route(path, flaky_count)
                finally:
                    with receiver._lock:
                        receiver._open[path] -= 1

            def _route(self, path: str, flaky_count: int):
                route = {
                    "/ok": lambda: self._reply(200, b'{"received":true}'),
                    "/wide": lambda: self._reply(200, b'{"received":true,"trace":"' + b"x" * 600 + b'"}'),
                    "/fail": lambda: self._reply(500, b"internal error"),
                    "/busy": lambda: self._reply(503, b"busy", {"Retry-After": str(receiver.retry_after)}),
                    "/gone": lambda: self._reply(410, b"gone"),
                    "/moved": lambda: self._reply(301, b"", {"Location": receiver.url("/ok")}),
                    "/slow": self._slow,
                    "/reset": self._reset,
                    "/cut": self._cut,
                    "/big": self._big,
                    "/flaky": lambda: self._reply(500 if flaky_count <= receiver.flaky_failures else 200, b"flaky"),
                    "/steady": lambda: (time.sleep(0.05), self._reply(200, b"ok")),
                    "/half": lambda: (time.sleep(0.5), self._reply(200, b"ok")),
                    "/hang": self._hang,
                    "/nul": lambda: self._reply(200, b"before\x00after"),
                    "/gzip": lambda: self._reply(200, _GZIP_BOMB, {"Content-Encoding": "gzip"}),
                    "/cookie": lambda: self._reply(200, b"ok", {"Set-Cookie": "session=abc123; Path=/"}),
                }.get(path, lambda: self._reply(404, b"no such path"))
                route()

            def _reply(self, code: int, body: bytes, headers: dict | None = None):
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _hang(self):
                receiver.release.wait(20)
                try:
                    self._reply(receiver.hang_code, b"at last")
                except OSError:
                    pass  # the client gave up waiting

            def _slow(self):
                time.sleep(receiver.slow_seconds)
                try:
                    self._reply(200, b"late")
                except OSError:
                    pass

            def _reset(self):
                # SO_LINGER with a zero timeout turns close() into a TCP RST.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def _cut(self):
                # A 200 whose body breaks off: headers promise 100 bytes, 8 arrive, then a TCP RST.
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"accepted")
                self.wfile.flush()
                self._reset()

            def _big(self):
                size, piece = 1024 * 1024, 16 * 1024
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                try:
                    for _ in range(size // piece):
                        self.wfile.write(b"x" * piece)
                        self.wfile.flush()
                        with receiver._lock:
                            receiver.big_bytes_sent += piece
                        time.sleep(0.01)
                except OSError:
                    pass  # the client hung up: what we wanted
                finally:
                    receiver.big_finished.set()
                    self.close_connection = True

        return Handler
