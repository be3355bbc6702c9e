"""A minimal HTTP/1.1 keep-alive receiver for the delivery benchmark, in a process of its own.

Every POST is answered at once with 200 `{}`, except on a path containing
"hang", which is never answered: an endpoint that times out. Requests to paths
under /w/ are noted (arrival wall-clock time, path, event id, and the
`bench_sent` time the publisher put in the event's data) for the parent to read
through a pipe. The receiver runs on uvloop when it is installed, so that it is
never the bottleneck; `raw_ceiling()` measures its own limit.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import threading
import time

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
SENT_KEY = b'"bench_sent":'


class _State:
    def __init__(self):
        self.count = 0
        # (arrival time, path, event id, bench_sent or None) for paths under /w/
        self.records: list[tuple[float, str, str, float | None]] = []


def _sent_time(body: bytes) -> float | None:
    at = body.find(SENT_KEY)
    if at < 0:
        return None
    start = at + len(SENT_KEY)
    end = start
    while end < len(body) and body[end] in b"0123456789.eE+-":
        end += 1
    try:
        return float(body[start:end])
    except ValueError:
        return None


class _Protocol(asyncio.Protocol):
    def __init__(self, state: _State):
        self.state = state
        self.buffer = b""
        self.hung = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        if self.hung:  # never answered; the client gives up and closes
            return
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            at = head.lower().find(b"\r\ncontent-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            path = head[: head.find(b"\r\n")].split(b" ")[1].decode("latin-1")
            self.state.count += 1
            if path.startswith("/w/"):
                # The envelope starts {"id":"evt_ + 26 characters.
                event_id = body[7:37].decode("latin-1") if body.startswith(b'{"id":"') else ""
                self.state.records.append((time.time(), path, event_id, _sent_time(body)))
            if "hang" in path:
                self.hung = True
                self.buffer = b""
                return
            self.transport.write(RESPONSE)


def _serve(sock: socket.socket, control) -> None:
    state = _State()

    def answer_commands(loop, stop: asyncio.Event) -> None:
        # A thread of its own with a blocking pipe: a large answer is sent whole.
        # Copying the list under the GIL is safe while the loop appends to it.
        while True:
            try:
                command = control.recv()
            except (EOFError, OSError):
                command = "stop"
            if command == "records":
                control.send(list(state.records))
            elif command == "count":
                control.send(state.count)
            elif command == "reset":
                state.records, state.count = [], 0
                control.send(True)
            else:
                loop.call_soon_threadsafe(stop.set)
                return

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        server = await loop.create_server(lambda: _Protocol(state), sock=sock)
        threading.Thread(target=answer_commands, args=(loop, stop), daemon=True).start()
        async with server:
            await stop.wait()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


class BenchReceiver:
    """The receiver process. Start it before anything opens threads or database connections (it forks)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self._control, child = multiprocessing.Pipe()
        context = multiprocessing.get_context("fork")
        self.process = context.Process(target=_serve, args=(self.sock, child), daemon=True)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def url(self, path: str = "/ceiling") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _ask(self, command: str, timeout: float = 30.0):
        self._control.send(command)
        if not self._control.poll(timeout):
            raise TimeoutError(f"receiver did not answer {command!r} within {timeout:g} s")
        return self._control.recv()  # the answer is sent whole, so once it has begun this returns

    def records(self) -> list[tuple[float, str, str, float | None]]:
        return self._ask("records")

    def count(self) -> int:
        return self._ask("count")

    def reset(self) -> None:
        self._ask("reset")

    def __enter__(self):
        self.process.start()
        return self

    def __exit__(self, *exc):
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.sock.close()


class _RawClient(asyncio.Protocol):
    """One keep-alive connection sending the same request again as soon as each response is in."""

    def __init__(self, request: bytes, shared: dict):
        self.request, self.shared, self.pending = request, shared, 0

    def connection_made(self, transport):
        self.transport = transport
        self._next()

    def _next(self):
        if self.shared["to_send"] > 0:
            self.shared["to_send"] -= 1
            self.transport.write(self.request)

    def data_received(self, data: bytes):
        self.pending += len(data)
        while self.pending >= len(RESPONSE):
            self.pending -= len(RESPONSE)
            self.shared["done"] += 1
            if self.shared["done"] >= self.shared["total"]:
                if not self.shared["finished"].done():
                    self.shared["finished"].set_result(None)
            self._next()


async def raw_ceiling(port: int, body: bytes, total: int, concurrency: int, timeout: float = 30.0) -> float:
    """Requests per second with raw sockets and no HTTP client: the receiver's (and loopback's) own limit."""
    loop = asyncio.get_running_loop()
    request = (
        b"POST /ceiling HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    shared = {"to_send": total, "done": 0, "total": total, "finished": loop.create_future()}
    started = time.perf_counter()
    transports = [
        (await loop.create_connection(lambda: _RawClient(request, shared), "127.0.0.1", port))[0]
        for _ in range(concurrency)
    ]
    try:
        await asyncio.wait_for(shared["finished"], timeout)
    finally:
        for transport in transports:
            transport.close()
    return total / (time.perf_counter() - started)
