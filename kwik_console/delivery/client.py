"""One attempt over httpx. It knows nothing of retries.

Redirects are not followed (a 3xx is a failure), the total time is capped, and
the response body is read up to the limit and no further.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import time

import httpx

from kwik_console import __version__
from kwik_console.settings import Settings

USER_AGENT = f"Kwik-Webhooks/{__version__}"


@dataclasses.dataclass
class AttemptResult:
    http_code: int | None = None
    duration_ms: int = 0
    response_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    response_body: str = ""
    error: str | None = None


def make_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(settings.attempt_timeout, connect=settings.connect_timeout),
        limits=httpx.Limits(
            max_connections=settings.max_in_flight,
            max_keepalive_connections=settings.max_in_flight,
        ),
        headers={"user-agent": USER_AGENT},
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
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timeout: could not connect within {settings.connect_timeout:g} s"
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return f"timeout: no complete response within {settings.attempt_timeout:g} s"
    for cause in _causes(exc):  # httpx wraps the socket error that says what happened
        if isinstance(cause, socket.gaierror):
            return f"DNS error: {cause.strerror or cause}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or cause}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the endpoint"
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
        if "reset" in text.lower():
            return "connection reset by the endpoint"
        return f"connection closed by the endpoint: {text}"
    if isinstance(exc, httpx.ConnectError):
        return f"connection error: {text}"
    return f"{exc.__class__.__name__}: {text}"


async def send(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], settings: Settings
) -> AttemptResult:
    started = time.perf_counter()
    result = AttemptResult()
    try:
        async with asyncio.timeout(settings.attempt_timeout):
            request = client.build_request(
                "POST", url, content=body, headers={"content-type": "application/json", **headers}
            )
            response = await client.send(request, stream=True)
            try:
                result.http_code = response.status_code
                result.response_headers = dict(response.headers)
                result.response_body = await _read_capped(response, settings.response_body_limit)
            finally:
                await response.aclose()
    except Exception as exc:  # noqa: BLE001  every failure becomes a recorded attempt
        result.error = describe_error(exc, settings)
    result.duration_ms = round((time.perf_counter() - started) * 1000)
    return result


async def _read_capped(response: httpx.Response, limit: int) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break  # closing the response drops the connection: the rest is never read
    return b"".join(chunks)[:limit].decode("utf-8", errors="replace")
