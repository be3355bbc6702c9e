"""The address policy and its transport: internal addresses are refused at save and at connect time.

No test here sends a packet outside 127.0.0.0/8: the table tests only judge
hosts, host names are resolved by a test resolver (never DNS), and the only
connections made are to servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
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
    check_url_at_send,
    make_guarded_transport,
    refusal_from_exception,
)
from tests.receiver import Receiver

LOOPBACK = network.parse_allowed_networks("127.0.0.0/8")
REBIND_HOST = "hooks.test-rebind.invalid"  # .invalid never resolves in real DNS (RFC 6761)


# Every form in the issue, plus the ranges and embeddings the guard must know.
REFUSED_HOSTS = [
    # (host as written in the URL, the address the refusal names or None for a spelling/name refusal)
    ("169.254.169.254", "169.254.169.254"),  # cloud metadata
    ("10.0.0.1", "10.0.0.1"),
    ("172.16.5.4", "172.16.5.4"),
    ("192.168.1.1", "192.168.1.1"),
    ("127.0.0.1", "127.0.0.1"),
    ("0.0.0.0", "0.0.0.0"),
    ("100.64.0.1", "100.64.0.1"),  # CGNAT
    ("224.0.0.1", "224.0.0.1"),  # multicast
    ("239.255.255.250", "239.255.255.250"),
    ("240.0.0.1", "240.0.0.1"),  # reserved
    ("255.255.255.255", "255.255.255.255"),
    ("192.0.2.10", "192.0.2.10"),  # documentation
    ("198.18.0.1", "198.18.0.1"),  # benchmarking
    ("[::1]", "::1"),
    ("[::]", "::"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),  # IPv4-mapped
    ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254"),
    ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
    ("[::127.0.0.1]", "::7f00:1"),  # IPv4-compatible (deprecated)
    ("[64:ff9b::10.0.0.1]", "64:ff9b::a00:1"),  # NAT64 well-known prefix
    ("[64:ff9b::127.0.0.1]", "64:ff9b::7f00:1"),
    ("[64:ff9b:1::1]", "64:ff9b:1::1"),  # NAT64 local-use prefix
    ("[2002:7f00:1::1]", "2002:7f00:1::1"),  # 6to4 of 127.0.0.1
    ("[2002:a9fe:a9fe::1]", "2002:a9fe:a9fe::1"),  # 6to4 of 169.254.169.254
    ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "2001:0:4136:e378:8000:63bf:80ff:fffe"),  # Teredo, client 127.0.0.1
    ("[fc00::1]", "fc00::1"),  # unique local
    ("[fd12:3456::1]", "fd12:3456::1"),
    ("[fe80::1]", "fe80::1"),  # link-local
    ("[fe80::1%25eth0]", "fe80::1"),
    ("[ff02::1]", "ff02::1"),  # multicast
    ("[2001:db8::1]", "2001:db8::1"),  # documentation
    ("[100::1]", "100::1"),  # discard-only
]

NUMERIC_SPELLINGS = [
    ("127.1", "127.0.0.1"),
    ("10.1", "10.0.0.1"),
    ("2130706433", "127.0.0.1"),  # decimal
    ("0x7f000001", "127.0.0.1"),  # hex
    ("0X7F.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),  # octal
    ("0251.0376.0251.0376", "169.254.169.254"),
    ("127.0.0.01", "127.0.0.1"),
    ("0xa9.254.169.254", "169.254.169.254"),
    ("127.0.0.1.", "127.0.0.1"),  # trailing dot, as browsers accept it
    ("1.2.65535", "1.2.255.255"),
    # An odd spelling is refused even for a public address: write it in full.
    ("1572395042", "93.184.216.34"),
]

# Written with characters that IDNA (and so httpx) folds into ASCII digits and dots.
UNICODE_SPELLINGS = ["127\u30020\u30020\u30021", "\uff11\uff12\uff17.0.0.1", "127\uff0e0\uff0e0\uff0e1", "127\uff610\uff610\uff611"]

INTERNAL_NAMES = ["localhost", "LOCALHOST", "localhost.", "api.localhost", "printer.local", "metadata.google.internal"]

PUBLIC_HOSTS = [
    "93.184.216.34",
    "8.8.8.8",
    "[2606:2800:220:1::1]",
    "[::ffff:93.184.216.34]",  # mapped form of a public address: the same destination
    "[64:ff9b::93.184.216.34]",  # NAT64 of a public address
    "[2002:5db8:d822::1]",  # 6to4 of a public address
    "example.com",
    "hooks.example.com",
    "localhost.example.com",  # only the .localhost suffix is special
    "0x.example.com",
]


@pytest.mark.parametrize(("host", "address"), REFUSED_HOSTS)
def test_internal_address_is_refused_when_the_webhook_is_saved(host, address):
    assert network.host_refusal(host, ()) == (
        f"Webhook URL must not point to an internal address: address {address} is not allowed."
    )
    literal = host.strip("[]").replace("%25", "%")
    assert network.address_refusal(ipaddress.ip_address(literal), ()) == f"address {address} is not allowed"


@pytest.mark.parametrize(("host", "address"), NUMERIC_SPELLINGS)
def test_numeric_ipv4_spelling_is_read_like_inet_aton_and_refused(host, address):
    assert network.parse_ipv4_spelling(host) == ipaddress.IPv4Address(address)
    assert socket.inet_aton(host.rstrip(".")) == ipaddress.IPv4Address(address).packed
    assert network.host_refusal(host, ()) == (
        f"Webhook URL must not use a numeric IPv4 spelling such as {host.lower()}; "
        "write the address in full or use a host name."
    )
    # Even where the network is allowed: the spelling itself is refused.
    assert network.host_refusal(host, network.parse_allowed_networks("0.0.0.0/0")) is not None


@pytest.mark.parametrize("host", UNICODE_SPELLINGS)
def test_unicode_spelling_of_an_internal_address_is_refused(host):
    assert network.host_refusal(host, ()) == (
        "Webhook URL must not point to an internal address: address 127.0.0.1 is not allowed."
    )


@pytest.mark.parametrize("host", ["example.com", "256.1.1.1", "1.2.3.4.5", "08.1.1.1", "1..1", "", "0x1g"])
def test_non_ipv4_spelling_is_not_parsed_as_an_address(host):
    assert network.parse_ipv4_spelling(host) is None


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3.4.5", "08.0.0.1", "example.0x10", "example.123"])
def test_host_ending_in_a_number_that_is_no_address_is_refused(host):
    assert network.host_refusal(host, ()) == "Webhook URL host is not a valid IP address or host name."


@pytest.mark.parametrize("host", INTERNAL_NAMES)
def test_internal_name_is_refused(host):
    name = host.lower().rstrip(".")
    assert network.host_refusal(host, ()) == (
        f"Webhook URL must not point to {name}: it names this machine or a private network."
    )
    assert network.host_refusal(host, network.parse_allowed_networks("0.0.0.0/0,::/0")) is not None


@pytest.mark.parametrize("host", PUBLIC_HOSTS)
def test_public_host_passes(host):
    assert network.host_refusal(host, ()) is None


@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        ("127.0.0.0/8", "127.0.0.1"),
        ("127.0.0.0/8", "[::ffff:127.0.0.1]"),  # the mapped form is the same destination
        ("10.20.0.0/16", "10.20.3.4"),
        ("10.20.0.0/16, 192.168.7.7", "192.168.7.7"),
        ("fd00:1::/64", "[fd00:1::5]"),
        ("::1", "[::1]"),
    ],
)
def test_allowed_networks_are_exceptions(allowed, host):
    assert network.host_refusal(host, ()) is not None
    assert network.host_refusal(host, network.parse_allowed_networks(allowed)) is None


@pytest.mark.parametrize(("allowed", "host"), [("10.20.0.0/16", "10.21.0.1"), ("127.0.0.0/8", "[::1]"), ("::1", "127.0.0.1")])
def test_allowed_networks_allow_nothing_else(allowed, host):
    assert network.host_refusal(host, network.parse_allowed_networks(allowed)) is not None


def test_allowed_networks_are_parsed():
    assert network.parse_allowed_networks("") == ()
    assert network.parse_allowed_networks(" 10.0.0.0/8 , fd00::/8,,") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0.1/8", "intranet", "10.0.0.0/8;192.168.0.0/16"])
def test_bad_allowed_networks_are_refused_with_a_clear_message(text):
    with pytest.raises(ValueError, match=r"KWIK_ALLOWED_NETWORKS must be comma-separated networks"):
        network.parse_allowed_networks(text)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://169.254.169.254/latest/meta-data", "address 169.254.169.254 is not allowed"),
        ("https://[::ffff:127.0.0.1]/", "address ::ffff:127.0.0.1 is not allowed"),
        ("https://127.1/hooks", "host 127.1 is a numeric IPv4 spelling, which is not allowed"),
        ("https://localhost:8443/", "host localhost is not allowed"),
        ("https://hooks.example.com/", None),
        ("https://93.184.216.34/", None),
    ],
)
def test_url_is_checked_again_at_send(url, error):
    if error is None:
        check_url_at_send(url, ())
        return
    with pytest.raises(AddressNotAllowed) as caught:
        check_url_at_send(url, ())
    assert str(caught.value) == error
    assert refusal_from_exception(caught.value) == error


# ---- connect time ---------------------------------------------------------


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
    sentinel = asyncio.run(_post(LOOPBACK, HostsResolver({REBIND_HOST: ["127.0.0.1"]}),
                                 f"http://{REBIND_HOST}:{counter.port}/"))
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
    sentinel = asyncio.run(_post(LOOPBACK, HostsResolver({REBIND_HOST: ["127.0.0.1"]}),
                                 f"http://{REBIND_HOST}:{counter.port}/"))
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
