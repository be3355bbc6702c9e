"""A fast HTTP/1.1 keep-alive receiver for benchmarks: answers every POST with 200, in its own process."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket


class _Protocol(asyncio.Protocol):
    def __init__(self, counter):
        self.counter = counter
        self.buffer = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").lower()
            length = 0
            for line in head.split("\r\n"):
                if line.startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            with self.counter.get_lock():
                self.counter.value += 1
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")


def _serve(sock: socket.socket, counter) -> None:
    async def main():
        server = await asyncio.get_running_loop().create_server(lambda: _Protocol(counter), sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class BenchReceiver:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.count = multiprocessing.Value("q", 0)
        self.process = multiprocessing.Process(target=_serve, args=(self.sock, self.count), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/kwik"

    def __enter__(self):
        self.process.start()
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.join(5)
        self.sock.close()
