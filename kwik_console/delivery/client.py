"""One attempt over httpx. It knows nothing of retries.

Redirects are not followed (a 3xx is a failure), the total time is capped, and
the response body is read up to the limit and no further: the cap applies to
the bytes on the wire, so a small compressed body cannot inflate in memory.

httpx is the client API; underneath, its aiohttp transport does the HTTP work
at about a third of the CPU of httpx's own (bench/delivery.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import socket
import ssl
import time
import zlib

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from kwik_console import __version__
from kwik_console.core.settings import Settings
from kwik_console.delivery.transport import (
    GuardedTransport,
    make_guarded_connector,
    proxy_hosts,
    refusal_from_exception,
)

USER_AGENT = f"Kwik-Webhooks/{__version__}"

# httpx logs every request's full URL at INFO; a query string can carry a token.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclasses.dataclass
class AttemptResult:
    http_code: int | None = None
    duration_ms: int = 0
    response_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    response_body: str = ""
    error: str | None = None


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        pass


_NO_COOKIES = _NoCookies()


class DeliveryClient(httpx.AsyncClient):
    """httpx's client, keeping no cookies: a Set-Cookie from an endpoint is never sent back to it, nor to
    any other endpoint on its host (and reading them took a tenth of the dispatcher's CPU). The aiohttp
    session under it keeps none either (make_client)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES


def make_client(settings: Settings) -> httpx.AsyncClient:
    """The dispatcher's one client. Call it on the loop that will use it.

    In hosted mode every connection goes to an address the address policy allowed after
    resolving the host, never an internal one (delivery/transport.py).
    """
    # Room for every attempt the dispatcher may have on the wire (slow ones give
    # their slots to others, up to twice the cap), so none waits for a connection.
    options = dict(
        limit=2 * settings.max_in_flight, limit_per_host=0, ssl=ssl.create_default_context(), keepalive_timeout=30
    )
    proxy = httpx.Proxy(settings.http_proxy) if settings.http_proxy else None
    if settings.local_mode:
        connector = aiohttp.TCPConnector(**options)
    else:
        connector = make_guarded_connector(
            settings.allowed_networks, trusted_hosts=proxy_hosts(settings.http_proxy), **options
        )
    # trust_env=False: proxy variables in the environment must not redirect deliveries.
    session = aiohttp.ClientSession(
        connector=connector, trust_env=False, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    )
    if settings.local_mode:
        transport = AiohttpTransport(client=session, trust_env=False, proxy=proxy)
    else:  # also checks hosts written as an address, which skip the resolver
        transport = GuardedTransport(settings.allowed_networks, client=session, trust_env=False, proxy=proxy)
    return DeliveryClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.attempt_timeout, connect=settings.connect_timeout),
        # Bodies are read raw, up to the cap: ask for them uncompressed.
        headers={"user-agent": USER_AGENT, "accept-encoding": "identity"},
    )


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
        if isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]


def describe_error(exc: BaseException, settings: Settings) -> str:
    """A short, human reading of why an attempt got no response."""
    if refusal := refusal_from_exception(exc):
        return refusal  # "address 10.0.0.1 is not allowed"
    for cause in _causes(exc):  # the transport wraps the error that says what happened
        if isinstance(cause, aiohttp.ConnectionTimeoutError):
            return f"timeout: could not connect within {settings.connect_timeout:g} s"
        if isinstance(cause, (TimeoutError, aiohttp.ServerTimeoutError)):
            return f"timeout: no complete response within {settings.attempt_timeout:g} s"
        if isinstance(cause, aiohttp.ClientConnectorDNSError):
            return f"DNS error: {cause.os_error.strerror or cause.os_error}"
        if isinstance(cause, socket.gaierror):
            return f"DNS error: {cause.strerror or cause}"
        if isinstance(cause, aiohttp.ClientConnectorCertificateError):
            return f"TLS error: {cause.certificate_error}"
        if isinstance(cause, aiohttp.ClientConnectorSSLError):
            return f"TLS error: {getattr(cause.os_error, 'reason', None) or cause.os_error}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or cause}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the endpoint"
        if isinstance(cause, aiohttp.ServerDisconnectedError):
            return "connection closed by the endpoint before it answered"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timeout: could not connect within {settings.connect_timeout:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout: no complete response within {settings.attempt_timeout:g} s"
    text = str(exc) or exc.__class__.__name__
    if "reset" in text.lower():
        return "connection reset by the endpoint"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
        return f"connection closed by the endpoint: {text}"
    if isinstance(exc, httpx.ConnectError):
        return f"connection error: {text}"
    return f"{exc.__class__.__name__}: {text}"


@functools.lru_cache(maxsize=4096)
def _parsed(url: str) -> httpx.URL:
    # Each webhook's URL is parsed once, not at every attempt (httpx.URL does not change).
    return httpx.URL(url)


async def send(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], settings: Settings
) -> AttemptResult:
    started = time.perf_counter()
    result = AttemptResult()
    try:
        async with asyncio.timeout(settings.attempt_timeout):
            request = client.build_request(
                "POST", _parsed(url), content=body, headers={"content-type": "application/json", **headers}
            )
            response = await client.send(request, stream=True)
            try:
                result.http_code = response.status_code
                result.response_headers = dict(response.headers)
                result.response_body = await read_capped(response, settings.response_body_limit)
            finally:
                await response.aclose()
    except Exception as exc:  # noqa: BLE001  every failure becomes a recorded attempt
        if result.http_code is None:
            result.error = describe_error(exc, settings)
        else:  # the endpoint answered: its status decides, and what broke is told with the body
            result.response_body = f"(the response body broke off: {describe_error(exc, settings)})"
    result.duration_ms = round((time.perf_counter() - started) * 1000)
    return result


async def read_capped(response: httpx.Response, limit: int) -> str:
    """At most `limit` bytes off the wire, and at most `limit` bytes once decompressed."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break  # closing the response drops the connection: the rest is never read
    raw = b"".join(chunks)[:limit]
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        # An endpoint that compresses anyway: inflate no more than the cap.
        wbits = 32 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
        try:
            raw = zlib.decompressobj(wbits).decompress(raw, limit)
        except zlib.error:
            return f"({encoding} response body could not be decompressed)"
    elif encoding not in ("", "identity"):
        return f"({encoding}-compressed response body not shown)"
    return raw.decode("utf-8", errors="replace")
