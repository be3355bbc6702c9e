"""The transport under the address policy: internal addresses are refused at connect time, after DNS.

No test here sends a packet outside 127.0.0.0/8: host names are resolved by a test resolver (never DNS),
and the only connections made are to servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from kwik_console.core import network
from kwik_console.delivery.transport import (
    AddressNotAllowed,
    GuardedResolver,
    make_guarded_transport,
    refusal_from_exception,
)
from tests.receiver import Receiver

LOOPBACK = network.parse_allowed_networks("127.0.0.0/8")
REBIND_HOST = "hooks.test-rebind.invalid"  # .invalid never resolves in real DNS (RFC 6761)


class HostsResolver(AbstractResolver):
    """A test resolver: a fixed table of host name -> addresses, never DNS."""

    def __init__(self, table: dict[str, list[str]]):
        self.table = table
        self.lookups: list[str] = []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.lookups.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=socket.IPPROTO_TCP,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in self.table[host]
        ]

    async def close(self):
        pass


class NumericResolver(HostsResolver):
    """The system's getaddrinfo, limited to numeric hosts so that it can never send a DNS query."""

    def __init__(self):
        super().__init__({})

    async def resolve(self, host, port=0, family=socket.AF_INET):
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, family=family, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
        )
        self.table[host] = [info[4][0] for info in infos]
        return await super().resolve(host, port, family)


class ConnectionCounter:
    """An HTTP server on 127.0.0.1 that counts every TCP connection it accepts and answers 200."""

    def __init__(self):
        counter = self
        self.accepted = 0
        self._lock = threading.Lock()

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                length = 0
                while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                self.rfile.read(length)
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def get_request(self):
                # Counted on the accepting thread, so counts follow accept order.
                request = super().get_request()
                with counter._lock:
                    counter.accepted += 1
                return request

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        # A short look for stop(): it waits that long (the default is 0.5 s).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def wait_for_count(self, count: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.accepted < count:
            time.sleep(0.01)
        return self.accepted

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def counter():
    server = ConnectionCounter()
    yield server
    server.stop()


def guarded_client(allowed, resolver) -> httpx.AsyncClient:
    """Built the way the product's delivery client is: httpx over the guarded aiohttp transport."""
    return httpx.AsyncClient(
        transport=make_guarded_transport(allowed, resolver=resolver),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(5.0),
    )


async def _post(allowed, resolver, url) -> httpx.Response | Exception:
    async with guarded_client(allowed, resolver) as client:
        try:
            return await client.post(url, content=b'{"type":"ping"}')
        except httpx.HTTPError as exc:
            return exc


def test_host_name_resolving_to_loopback_passes_creation_and_is_refused_at_connect_time(counter):
    url = f"http://{REBIND_HOST}:{counter.port}/hooks"
    assert network.host_refusal(REBIND_HOST, ()) is None  # creation sees only a name
    resolver = HostsResolver({REBIND_HOST: ["127.0.0.1"]})

    outcome = asyncio.run(_post((), resolver, url))

    assert isinstance(outcome, httpx.HTTPError), outcome
    assert resolver.lookups == [REBIND_HOST]  # it was refused after resolving, not before
    assert refusal_from_exception(outcome) == "address 127.0.0.1 is not allowed"
    assert "address 127.0.0.1 is not allowed" in str(outcome)
    # A second, allowed request is accepted after any the refused one could have made:
    # when it has been counted, so would an earlier connection have been.
    sentinel = asyncio.run(_post(LOOPBACK, HostsResolver({REBIND_HOST: ["127.0.0.1"]}), url))
    assert isinstance(sentinel, httpx.Response) and sentinel.status_code == 200
    assert counter.wait_for_count(1) == 1


def test_allowed_network_lets_the_same_request_through(counter):
    url = f"http://{REBIND_HOST}:{counter.port}/hooks"

    response = asyncio.run(_post(LOOPBACK, HostsResolver({REBIND_HOST: ["127.0.0.1"]}), url))

    assert isinstance(response, httpx.Response), response
    assert (response.status_code, response.text) == (200, "ok")
    assert counter.wait_for_count(1) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "127.1", "0x7f000001", "2130706433", "localhost"])
def test_literal_and_odd_hosts_are_refused_at_send_without_a_connection(counter, host):
    url = f"http://{host}:{counter.port}/hooks"
    resolver = HostsResolver({"localhost": ["127.0.0.1"]})

    outcome = asyncio.run(_post((), resolver, url))

    assert isinstance(outcome, httpx.ConnectError), outcome
    assert refusal_from_exception(outcome)
    assert resolver.lookups == []  # refused before any lookup
    sentinel = asyncio.run(
        _post(LOOPBACK, HostsResolver({REBIND_HOST: ["127.0.0.1"]}), f"http://{REBIND_HOST}:{counter.port}/")
    )
    assert isinstance(sentinel, httpx.Response)
    assert counter.wait_for_count(1) == 1


@pytest.mark.parametrize(
    ("addresses", "refused"),
    [
        (["93.184.216.34", "127.0.0.1"], "127.0.0.1"),  # one bad address refuses the host
        (["10.0.0.1"], "10.0.0.1"),
        (["169.254.169.254"], "169.254.169.254"),
        (["2606:2800:220:1::1", "::1"], "::1"),
        (["::ffff:10.0.0.1"], "::ffff:10.0.0.1"),
        (["fe80::1%2"], "fe80::1"),
        (["64:ff9b::a9fe:a9fe"], "64:ff9b::a9fe:a9fe"),
    ],
)
def test_resolver_refuses_a_host_if_any_address_is_refused(addresses, refused):
    # Resolution only: nothing connects, so public addresses here send no packet.
    resolver = GuardedResolver((), HostsResolver({REBIND_HOST: addresses}))
    with pytest.raises(AddressNotAllowed, match=rf"^address {refused} is not allowed$"):
        asyncio.run(resolver.resolve(REBIND_HOST, 443))


def test_resolver_passes_public_addresses_and_allowed_networks():
    public = GuardedResolver((), HostsResolver({REBIND_HOST: ["93.184.216.34", "2606:2800:220:1::1"]}))
    results = asyncio.run(public.resolve(REBIND_HOST, 443))
    assert [r["host"] for r in results] == ["93.184.216.34", "2606:2800:220:1::1"]

    allowed = GuardedResolver(LOOPBACK, HostsResolver({REBIND_HOST: ["127.0.0.5"]}))
    assert [r["host"] for r in asyncio.run(allowed.resolve(REBIND_HOST, 443))] == ["127.0.0.5"]


def test_trusted_proxy_host_is_resolved_unchecked():
    resolver = GuardedResolver(
        (), HostsResolver({"egress-proxy": ["10.1.2.3"], REBIND_HOST: ["10.1.2.3"]}), trusted_hosts=["egress-proxy"]
    )
    assert [r["host"] for r in asyncio.run(resolver.resolve("egress-proxy", 3128))] == ["10.1.2.3"]
    with pytest.raises(AddressNotAllowed):
        asyncio.run(resolver.resolve(REBIND_HOST, 443))


@pytest.mark.parametrize("host", ["0x7f000001", "127.1", "0177.0.0.1", "2130706433"])
def test_system_reading_of_numeric_spelling_is_refused_at_connect_time(host):
    # What getaddrinfo makes of the spelling (numeric only, so never a DNS query).
    resolver = GuardedResolver((), NumericResolver())
    with pytest.raises(AddressNotAllowed, match=r"^address 127\.0\.0\.1 is not allowed$"):
        asyncio.run(resolver.resolve(host, 443))


def test_redirects_are_not_followed():
    receiver = Receiver().start()
    try:
        url = f"http://{REBIND_HOST}:{urlsplit(receiver.base_url).port}/moved"
        response = asyncio.run(_post(LOOPBACK, HostsResolver({REBIND_HOST: ["127.0.0.1"]}), url))
        assert isinstance(response, httpx.Response), response
        assert response.status_code == 301
        assert response.headers["location"] == receiver.url("/ok")
        assert receiver.wait_for(lambda requests: len(requests) >= 1)
        assert [r.path for r in receiver.requests] == ["/moved"]
    finally:
        receiver.stop()


def test_proxy_environment_is_ignored(counter, monkeypatch):
    # A proxy from the environment would be asked to connect on the guard's behalf.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{counter.port}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{counter.port}")
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{counter.port}")

    outcome = asyncio.run(_post((), HostsResolver({REBIND_HOST: ["127.0.0.1"]}), f"http://{REBIND_HOST}:9/"))

    assert refusal_from_exception(outcome) == "address 127.0.0.1 is not allowed"
    sentinel = asyncio.run(
        _post(LOOPBACK, HostsResolver({REBIND_HOST: ["127.0.0.1"]}), f"http://{REBIND_HOST}:{counter.port}/")
    )
    assert isinstance(sentinel, httpx.Response)
    assert counter.wait_for_count(1) == 1


def test_configured_proxy_is_used_and_its_own_host_is_not_refused(counter):
    # KWIK_HTTP_PROXY names an internal proxy; the guard lets the connection to it through.
    proxy = f"http://egress-proxy:{counter.port}"
    resolver = HostsResolver({"egress-proxy": ["127.0.0.1"]})

    async def main():
        transport = make_guarded_transport((), proxy=proxy, resolver=resolver)
        async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False) as client:
            through_proxy = await client.post("http://hooks.example.com/hooks", content=b"{}")
            with pytest.raises(httpx.ConnectError) as refused:
                await client.post("http://10.0.0.1/hooks", content=b"{}")
            return through_proxy, refused.value

    through_proxy, refused = asyncio.run(main())

    assert through_proxy.status_code == 200  # answered by the stand-in proxy; the target is never resolved here
    assert resolver.lookups == ["egress-proxy"]
    assert refusal_from_exception(refused) == "address 10.0.0.1 is not allowed"
    assert counter.wait_for_count(1) == 1
