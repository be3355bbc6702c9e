"""The SSRF guard: in hosted mode, deliveries never reach an internal address.

Checked twice (issue 8):

* when a webhook is saved, `host_refusal` judges the URL's host as written;
* when a connection is made, `GuardedResolver` judges every address the host
  name resolves to. aiohttp connects to exactly the addresses the resolver
  returns, so the connection is pinned to checked addresses: no second lookup
  can swap them (DNS rebinding). aiohttp skips the resolver for IP literals, so
  `GuardedTransport` checks those itself before each request.

`KWIK_ALLOWED_NETWORKS` (see `parse_allowed_networks`) lists exceptions for a
team whose endpoints are internal. Local mode does not use this module.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Union
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_net = ipaddress.ip_network

# Never a webhook endpoint: every IPv4 range IANA marks as not globally
# reachable, plus multicast and the reserved block.
_REFUSED_V4: tuple[IPNetwork, ...] = tuple(_net(n) for n in (
    "0.0.0.0/8",        # "this network", includes the unspecified 0.0.0.0
    "10.0.0.0/8",       # private
    "100.64.0.0/10",    # CGNAT (shared address space)
    "127.0.0.0/8",      # loopback
    "169.254.0.0/16",   # link-local, includes cloud metadata 169.254.169.254
    "172.16.0.0/12",    # private
    "192.0.0.0/24",     # IETF protocol assignments
    "192.0.2.0/24",     # documentation (TEST-NET-1)
    "192.88.99.0/24",   # deprecated 6to4 relay anycast
    "192.168.0.0/16",   # private
    "198.18.0.0/15",    # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",   # documentation (TEST-NET-3)
    "224.0.0.0/4",      # multicast
    "240.0.0.0/4",      # reserved, includes broadcast 255.255.255.255
))

# IPv6 ranges refused outright. The forms that embed an IPv4 address
# (::ffff:0:0/96, 64:ff9b::/96, 2002::/16, Teredo) are judged by that address
# first, in `address_refusal`.
_REFUSED_V6: tuple[IPNetwork, ...] = tuple(_net(n) for n in (
    "::/8",             # unspecified, loopback, IPv4-compatible (deprecated), reserved
    "64:ff9b:1::/48",   # local-use NAT64: reaches whatever the local translator reaches
    "100::/64",         # discard-only
    "2001:2::/48",      # benchmarking
    "2001:10::/28",     # deprecated ORCHID
    "2001:db8::/32",    # documentation
    "3fff::/20",        # documentation
    "5f00::/16",        # SRv6 segment identifiers
    "fc00::/7",         # unique local (private)
    "fe80::/10",        # link-local
    "fec0::/10",        # deprecated site-local
    "ff00::/8",         # multicast
))

_MAPPED = _net("::ffff:0:0/96")
_NAT64 = _net("64:ff9b::/96")
_SIXTOFOUR = _net("2002::/16")
_TEREDO = _net("2001::/32")


class AddressNotAllowed(OSError):
    """A delivery was stopped before connecting, because of where it would go.

    An OSError with errno and strerror set, because aiohttp wraps resolver
    OSErrors in ClientConnectorDNSError and shows only their strerror.
    """

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)

    def __str__(self) -> str:
        return self.strerror


def _refused(ip: IPAddress) -> str:
    return f"address {ip} is not allowed"


def _in_allowed(ip: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    return any(ip.version == network.version and ip in network for network in allowed)


def address_refusal(ip: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why a delivery must not connect to `ip`, or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])  # fe80::1%eth0: judge the address
    if _in_allowed(ip, allowed):
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        if any(ip in network for network in _REFUSED_V4) or not ip.is_global:
            return _refused(ip)
        return None

    # IPv6 forms that carry an IPv4 address: judged by that address, so
    # [::ffff:127.0.0.1] or 64:ff9b::a00:1 cannot reach what 127.0.0.1 or
    # 10.0.0.1 cannot. A mapped address is the very same socket destination,
    # so an allowed IPv4 network covers its mapped form too.
    if ip in _MAPPED:
        mapped = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if _in_allowed(mapped, allowed):
            return None
        # Written as ::ffff:127.0.0.1, as merchants write it (3.11 prints ::ffff:7f00:1).
        return f"address ::ffff:{mapped} is not allowed" if address_refusal(mapped) else None
    embedded: list[ipaddress.IPv4Address] = []
    if ip in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    elif ip in _SIXTOFOUR:
        embedded.append(ip.sixtofour)
    elif ip in _TEREDO:
        embedded.extend(ip.teredo)  # (server, client)
    if embedded:
        return _refused(ip) if any(address_refusal(v4) for v4 in embedded) else None

    if any(ip in network for network in _REFUSED_V6):
        return _refused(ip)
    # Belt and braces: anything Python itself knows is not global. (The forms
    # above are handled first because Python's flags for them vary by version.)
    if ip.is_multicast or ip.is_private or ip.is_reserved or ip.is_link_local or ip.is_site_local:
        return _refused(ip)
    return None


# One part of an inet_aton spelling: decimal, 0x hex (digits optional, as in
# browsers) or 0-led octal.
_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_CANONICAL_IPV4 = re.compile(r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")


def _part_value(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part[0] == "0":
        return int(part, 8)
    return int(part)


def parse_ipv4_spelling(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address `host` names the way inet_aton (and so getaddrinfo) reads it, or None.

    inet_aton takes 1 to 4 parts, each decimal, 0x hex or 0-led octal; the last
    part fills the remaining bytes: 127.1 is 127.0.0.1, 10.1 is 10.0.0.1,
    2130706433 and 0x7f000001 are 127.0.0.1, 0177.0.0.1 is 127.0.0.1. One
    trailing dot is accepted, as browsers do.
    """
    if host.endswith("."):
        host = host[:-1]
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.fullmatch(p) for p in parts):
        return None
    values = [_part_value(p) for p in parts]
    *leading, last = values
    if any(v > 0xFF for v in leading) or last >= 1 << (8 * (5 - len(values))):
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


# Names that never leave the machine or the private network, whatever DNS
# says: "localhost" and *.localhost are loopback by definition (RFC 6761),
# ".local" is multicast DNS on the local link (RFC 6762), and ".internal" is
# reserved for private use (ICANN 2024), like cloud metadata names such as
# metadata.google.internal. Refusing them at creation gives the merchant a
# clear answer instead of a connect-time failure.
_INTERNAL_NAMES = ("localhost",)
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal")


def _normalise_host(host: str) -> str:
    # As IDNA (and so httpx) reads a host: full-width forms folded, and the
    # ideographic full stops taken as dots, so 127。0。0。1 is 127.0.0.1.
    host = unicodedata.normalize("NFKC", host).strip().lower()
    host = host.replace("\u3002", ".").replace("\uff61", ".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _host_problem(host: str, allowed: Sequence[IPNetwork]) -> tuple[str, str] | None:
    """(kind, detail) of why a URL host is refused; kind is 'address', 'spelling', 'name' or 'invalid'."""
    host = _normalise_host(host)
    if ":" in host:  # only an IPv6 literal has a colon in a URL host
        try:
            ip = ipaddress.IPv6Address(host.replace("%25", "%"))
        except ValueError:
            return "invalid", host
        refusal = address_refusal(ip, allowed)
        return ("address", refusal) if refusal else None
    if _CANONICAL_IPV4.fullmatch(host):
        refusal = address_refusal(ipaddress.IPv4Address(host), allowed)
        return ("address", refusal) if refusal else None
    if parse_ipv4_spelling(host) is not None:
        return "spelling", host
    labels = host.rstrip(".").split(".")
    if _IPV4_PART.fullmatch(labels[-1]) or labels[-1].isdigit():
        # A host ending in a number is an IPv4 address or nothing (as in
        # browsers): 256.1.1.1 or 1.2.3.4.5 must not reach DNS as a name.
        return "invalid", host
    name = host.rstrip(".")
    if name in _INTERNAL_NAMES or name.endswith(_INTERNAL_SUFFIXES):
        return "name", name
    return None


def host_refusal(host: str, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why a webhook URL with this host must not be saved, as a sentence for the merchant, or None."""
    problem = _host_problem(host, allowed)
    if problem is None:
        return None
    kind, detail = problem
    if kind == "address":
        return f"Webhook URL must not point to an internal address: {detail}."
    if kind == "spelling":
        return (
            f"Webhook URL must not use a numeric IPv4 spelling such as {detail}; "
            "write the address in full or use a host name."
        )
    if kind == "name":
        return f"Webhook URL must not point to {detail}: it names this machine or a private network."
    return "Webhook URL host is not a valid IP address or host name."


def check_url_at_send(url: str | httpx.URL, allowed: Sequence[IPNetwork] = ()) -> None:
    """Raise AddressNotAllowed if the URL's host is refused as written.

    Needed at send time because aiohttp does not ask the resolver about IP
    literals, and because a webhook may have been saved before the rules (or
    KWIK_ALLOWED_NETWORKS) changed. Host names are judged by GuardedResolver.
    """
    host = urlsplit(str(url)).hostname or ""
    problem = _host_problem(host, allowed)
    if problem is None:
        return
    kind, detail = problem
    if kind == "address":
        raise AddressNotAllowed(detail)
    if kind == "spelling":
        raise AddressNotAllowed(f"host {detail} is a numeric IPv4 spelling, which is not allowed")
    if kind == "name":
        raise AddressNotAllowed(f"host {detail} is not allowed")
    raise AddressNotAllowed(f"host {detail} is not a valid IP address or host name")


def parse_allowed_networks(text: str) -> tuple[IPNetwork, ...]:
    """Parse KWIK_ALLOWED_NETWORKS: comma-separated networks such as '10.20.0.0/16,fd00:1::/64'.

    A bare address means just that address. Raises ValueError naming the bad part.
    """
    networks: list[IPNetwork] = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=True))
        except ValueError as exc:
            raise ValueError(
                "KWIK_ALLOWED_NETWORKS must be comma-separated networks like "
                f"'10.20.0.0/16,fd00:1::/64'; {part!r} is not one ({exc})"
            ) from None
    return tuple(networks)


class GuardedResolver(AbstractResolver):
    """Resolves with another resolver, then refuses the host if ANY address is refused.

    Refusing them all, rather than dropping the bad ones, means a name that
    mixes public and internal addresses never gets a connection at all.
    `trusted_hosts` (the outbound proxy's host name, say) are resolved unchecked.
    """

    def __init__(
        self,
        allowed: Sequence[IPNetwork] = (),
        resolver: AbstractResolver | None = None,
        *,
        trusted_hosts: Iterable[str] = (),
    ) -> None:
        self.allowed = tuple(allowed)
        self._resolver = resolver
        self._owns_resolver = resolver is None
        self._trusted = frozenset(h.lower().rstrip(".") for h in trusted_hosts)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._resolver is None:  # aiohttp's ThreadedResolver needs a running loop
            self._resolver = aiohttp.ThreadedResolver()
        results = await self._resolver.resolve(host, port, family)
        if host.lower().rstrip(".") in self._trusted:
            return results
        for result in results:
            try:
                ip = ipaddress.ip_address(result["host"])
            except ValueError:
                raise AddressNotAllowed(f"address {result['host']} is not allowed") from None
            refusal = address_refusal(ip, self.allowed)
            if refusal:
                raise AddressNotAllowed(refusal)
        return results

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()


def make_guarded_connector(
    allowed: Sequence[IPNetwork] = (),
    resolver: AbstractResolver | None = None,
    *,
    trusted_hosts: Iterable[str] = (),
    **connector_kwargs: Any,
) -> aiohttp.TCPConnector:
    """A TCPConnector that connects only to addresses GuardedResolver let through.

    Must be called with an event loop running (aiohttp's rule).
    """
    return aiohttp.TCPConnector(
        resolver=GuardedResolver(allowed, resolver, trusted_hosts=trusted_hosts), **connector_kwargs
    )


class GuardedTransport(AiohttpTransport):
    """httpx-aiohttp's transport, checking IP-literal hosts before each request.

    Host names are checked by the GuardedResolver inside the session's connector.
    """

    def __init__(self, allowed: Sequence[IPNetwork] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allowed = tuple(allowed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            check_url_at_send(request.url, self.allowed)
        except AddressNotAllowed as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return await super().handle_async_request(request)


def proxy_hosts(proxy: str | None) -> tuple[str, ...]:
    """The host names GuardedResolver must trust when deliveries go through KWIK_HTTP_PROXY."""
    host = urlsplit(proxy).hostname if proxy else None
    return (host,) if host else ()


def make_guarded_transport(
    allowed: Sequence[IPNetwork] = (),
    *,
    limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
    proxy: str | None = None,
    verify: bool | Any = True,
    resolver: AbstractResolver | None = None,
) -> GuardedTransport:
    """The transport hosted mode delivers through: every connection goes to a checked address.

    `proxy` is KWIK_HTTP_PROXY. Its own host is exempt from the check (it is
    usually internal); the target's host name is then resolved by the proxy,
    so literal hosts are still checked here but DNS rebinding protection for
    names is the proxy's job. Proxy environment variables are never read.
    """
    trusted = proxy_hosts(proxy)

    # The session is made on first use: aiohttp needs a running event loop.
    def session() -> aiohttp.ClientSession:
        connector = make_guarded_connector(
            allowed,
            resolver,
            trusted_hosts=trusted,
            ssl=transport.ssl_context,
            keepalive_timeout=limits.keepalive_expiry,
            limit=limits.max_connections or 0,
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar())

    transport = GuardedTransport(
        allowed,
        verify=verify,
        trust_env=False,
        limits=limits,
        proxy=httpx.Proxy(proxy) if proxy else None,
        client=session,
    )
    return transport


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc] if exc is not None else []
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        stack.append(getattr(current, "os_error", None))  # aiohttp's ClientConnectorError keeps it
        stack.append(current.__context__)
        stack.append(current.__cause__)


def refusal_from_exception(exc: BaseException) -> str | None:
    """The guard's refusal ("address 10.0.0.1 is not allowed") behind a failed request, or None.

    httpx-aiohttp maps every aiohttp connection error to httpx.ConnectTimeout
    (with aiohttp's "Cannot connect to host ... [address ... is not allowed]"
    text); the AddressNotAllowed itself is further down the cause chain.
    """
    for cause in _chain(exc):
        if isinstance(cause, AddressNotAllowed):
            return str(cause)
    return None


__all__: list[str] = [
    "AddressNotAllowed",
    "GuardedResolver",
    "GuardedTransport",
    "address_refusal",
    "check_url_at_send",
    "host_refusal",
    "make_guarded_connector",
    "make_guarded_transport",
    "parse_allowed_networks",
    "parse_ipv4_spelling",
    "proxy_hosts",
    "refusal_from_exception",
]
