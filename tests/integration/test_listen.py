"""`kwik-console listen`: every event, once, in order, signed, while the stream is cut twice.

The real command runs against the API served by a real process. Between them sits a TCP
proxy on 127.0.0.1 that can drop every open connection at once: a cut stream, as a
flaky network or a restarted replica makes one.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time

import pytest
from standardwebhooks import Webhook

from kwik_console.events import catalog
from kwik_console.events.publishing import publish
from tests.api_server import ApiServer
from tests.conftest import KWIK_CONSOLE
from tests.receiver import Receiver


class CuttableProxy:
    """Forwards TCP connections to `target`; `cut()` drops all of them."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.streams = 0  # connections on which the stream's start frame came down
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, down: bool):
        seen = b""  # the start of what came down, until the stream's start frame is in it
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
                if down and seen is not None:
                    seen = (seen + chunk)[-4096:]
                    if b": kwik stream" in seen:
                        seen = None
                        with self.lock:
                            self.streams += 1
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self.lock:
            connections, self.connections = self.connections, []
        for s in connections:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.cut()


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def test_listen_forwards_every_event_once_in_order_through_two_cuts(kwik, tmp_path, receiver, cli_env):
    with ApiServer(tmp_path / "api.log") as api:
        proxy = CuttableProxy(api.port)
        output = open(tmp_path / "listen.out", "w+")
        listener = subprocess.Popen(
            [
                *KWIK_CONSOLE,
                "listen",
                "--forward-to",
                receiver.url("/ok"),
                "--events",
                "payment.created,payment.updated",
                "--console",
                f"http://127.0.0.1:{proxy.port}",
            ],
            env=cli_env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # The stream starts "now": events published before its start frame are not its to forward.
            _wait(lambda: proxy.streams >= 1, 30, "the stream to open")
            secret = re.search(r"(whsec_\S+)", (tmp_path / "listen.out").read_text()).group(1)
            published = []
            for i in range(100):
                event_type = ("payment.created", "payment.updated")[i % 2]
                published.append(publish(event_type, catalog.sample_data(event_type)).event.id)
                # Not chosen with --events: never forwarded.
                publish("customer.created", catalog.sample_data("customer.created"))
                if i in (30, 65):
                    # Cut while events flow: after listen has forwarded some, before it has them all.
                    _wait(lambda: len(receiver.requests) >= i - 25, 30, "events to flow")
                    proxy.cut()
                    _wait(lambda: proxy.streams >= (2 if i == 30 else 3), 30, "listen to reconnect")
                time.sleep(0.002)  # one event per millisecond or slower: ids then follow publish order
            assert receiver.wait_for(lambda requests: len(requests) >= 100, timeout=60), len(receiver.requests)
            # One more after them all: once it is forwarded, anything extra would have come before it.
            time.sleep(0.002)
            published.append(publish("payment.created", catalog.sample_data("payment.created")).event.id)
            assert receiver.wait_for(
                lambda requests: published[-1] in [r.headers["webhook-id"] for r in requests], timeout=60
            ), len(receiver.requests)
            # listen prints a forward's line once its answer is in, a moment after the receiver has the request.
            _wait(lambda: (tmp_path / "listen.out").read_text().count("-->") >= 101, 30, "every forward's line")
        finally:
            listener.terminate()
            listener.wait(timeout=10)
            proxy.close()
    got = [r.headers["webhook-id"] for r in receiver.requests]
    assert got == published  # all 101, exactly once, in publish order
    verifier = Webhook(secret)
    for request in receiver.requests:
        verifier.verify(request.body, request.headers)
    lines = (tmp_path / "listen.out").read_text().splitlines()
    forwarded_lines = [line for line in lines if "-->" in line]
    assert len(forwarded_lines) == 101 and all("[200]" in line for line in forwarded_lines)
    assert sum("Stream dropped" in line for line in lines) >= 2
    assert proxy.streams >= 3
