"""The client's address, for the sign-in throttle, sessions and the audit trail: the connection's peer, or,
when that peer is a trusted reverse proxy (KWIK_TRUSTED_PROXIES), the address the proxies forwarded.

As uvicorn's `--forwarded-allow-ips` reads it: X-Forwarded-For counts only when the peer is trusted, each
proxy appends the address it received the request from, so the client is the right-most address that is not
itself a trusted proxy. Anything left of it was written by the client and is never believed. Without trusted
proxies (the default) the header is ignored: anyone can send it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from kwik_console.core.network import IPAddress, IPNetwork
from kwik_console.core.settings import get_settings


def _address(text: str) -> IPAddress | None:
    """An address as a peer or a proxy writes it: 10.0.0.1, ::1, [::1], 10.0.0.1:5000, [::1]:5000."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack socket shows an IPv4 peer so
    return ip


def _trusted(ip: IPAddress | None, trusted: Sequence[IPNetwork]) -> bool:
    return ip is not None and any(ip.version == net.version and ip in net for net in trusted)


def forwarded_client(peer: str, forwarded_for: str, trusted: Sequence[IPNetwork]) -> str:
    """The client behind `peer`, given the X-Forwarded-For header (its lines joined by commas)."""
    peer_ip = _address(peer)
    if not forwarded_for or not _trusted(peer_ip, trusted):
        return peer
    client = str(peer_ip)
    for hop in reversed(forwarded_for.split(",")):
        ip = _address(hop)
        if ip is None:  # a proxy wrote no address ("unknown"): the last hop it came through is all we know
            return client
        client = str(ip)
        if not _trusted(ip, trusted):
            return client
    return client  # every hop a trusted proxy: the left-most is the client


def client_address(peer: str | None, forwarded_for: str | None) -> str:
    return forwarded_client(peer or "", forwarded_for or "", get_settings().trusted_proxies)


def of_request(request) -> str:
    """A Starlette request's client (the sign-in form, the REST API)."""
    peer = request.client.host if request.client else ""
    return client_address(peer, ",".join(request.headers.getlist("x-forwarded-for")))


def of_socket(headers: Mapping[str, str]) -> str:
    """The client of a tab's websocket, from the handshake headers Reflex keeps (it adds the peer's address)."""
    return client_address(headers.get("asgi-scope-client", ""), headers.get("x-forwarded-for", ""))
