"""The transport deliveries go through in hosted mode: every connection goes to an address the policy allows.

The address policy is core/network.py. Here it is applied when a connection is
made: `GuardedResolver` judges every address the host name resolves to. aiohttp
connects to exactly the addresses the resolver returns, so the connection is
pinned to checked addresses: no second lookup can swap them (DNS rebinding).
aiohttp skips the resolver for IP literals, so `GuardedTransport` checks those
itself before each request. Local mode does not use this module.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

from kwik_console.core.network import IPNetwork, address_refusal, host_problem


class AddressNotAllowed(OSError):
    """A delivery was stopped before connecting, because of where it would go.

    An OSError with errno and strerror set, because aiohttp wraps resolver
    OSErrors in ClientConnectorDNSError and shows only their strerror.
    """

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)

    def __str__(self) -> str:
        return self.strerror


def check_url_at_send(url: str | httpx.URL, allowed: Sequence[IPNetwork] = ()) -> None:
    """Raise AddressNotAllowed if the URL's host is refused as written.

    Needed at send time because aiohttp does not ask the resolver about IP
    literals, and because a webhook may have been saved before the rules (or
    KWIK_ALLOWED_NETWORKS) changed. Host names are judged by GuardedResolver.
    """
    host = urlsplit(str(url)).hostname or ""
    problem = host_problem(host, allowed)
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
    """The address policy's refusal ("address 10.0.0.1 is not allowed") behind a failed request, or None.

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
    "check_url_at_send",
    "make_guarded_connector",
    "make_guarded_transport",
    "proxy_hosts",
    "refusal_from_exception",
]
