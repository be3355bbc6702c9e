"""The address policy: which hosts and addresses a delivery may reach. Pure functions, no I/O.

In hosted mode, deliveries never reach an internal address. The policy is applied twice:

* when a webhook is saved, `host_refusal` judges the URL's host as written;
* when a connection is made, the delivery transport (delivery/transport.py) judges every address the host
  name resolves to with `address_refusal`, and hosts written as an address with `host_problem`.

`KWIK_ALLOWED_NETWORKS` (see `parse_allowed_networks`) lists exceptions for a
team whose endpoints are internal. Local mode does not use the policy, except
`is_loopback`: the one answer to "is this host this machine?".
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_net = ipaddress.ip_network

# Never a webhook endpoint: every IPv4 range IANA marks as not globally
# reachable, plus multicast and the reserved block.
_REFUSED_V4: tuple[IPNetwork, ...] = tuple(
    _net(n)
    for n in (
        "0.0.0.0/8",  # "this network", includes the unspecified 0.0.0.0
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # CGNAT (shared address space)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, includes cloud metadata 169.254.169.254
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes broadcast 255.255.255.255
    )
)

# IPv6 ranges refused outright. The forms that embed an IPv4 address
# (::ffff:0:0/96, 64:ff9b::/96, 2002::/16, Teredo) are judged by that address
# first, in `address_refusal`.
_REFUSED_V6: tuple[IPNetwork, ...] = tuple(
    _net(n)
    for n in (
        "::/8",  # unspecified, loopback, IPv4-compatible (deprecated), reserved
        "64:ff9b:1::/48",  # local-use NAT64: reaches whatever the local translator reaches
        "100::/64",  # discard-only
        "2001:2::/48",  # benchmarking
        "2001:10::/28",  # deprecated ORCHID
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 segment identifiers
        "fc00::/7",  # unique local (private)
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)

_MAPPED = _net("::ffff:0:0/96")
_NAT64 = _net("64:ff9b::/96")
_SIXTOFOUR = _net("2002::/16")
_TEREDO = _net("2001::/32")


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
_CANONICAL_IPV4 = re.compile(
    r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
)


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


def host_problem(host: str, allowed: Sequence[IPNetwork]) -> tuple[str, str] | None:
    """(kind, detail) of why a URL host is refused; kind is 'address', 'spelling', 'name' or 'invalid'.

    `host_refusal` words it for the merchant, the delivery transport for the delivery log.
    """
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
    problem = host_problem(host, allowed)
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


def _parse_networks(text: str, wrong: str) -> tuple[IPNetwork, ...]:
    """Comma-separated networks (a bare address is just that address); ValueError `wrong` + the bad part."""
    networks: list[IPNetwork] = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=True))
        except ValueError as exc:
            raise ValueError(f"{wrong}; {part!r} is not one ({exc})") from None
    return tuple(networks)


def parse_allowed_networks(text: str) -> tuple[IPNetwork, ...]:
    """Parse KWIK_ALLOWED_NETWORKS: comma-separated networks such as '10.20.0.0/16,fd00:1::/64'.

    A bare address means just that address. Raises ValueError naming the bad part.
    """
    return _parse_networks(
        text, "KWIK_ALLOWED_NETWORKS must be comma-separated networks like '10.20.0.0/16,fd00:1::/64'"
    )


def parse_trusted_proxies(text: str) -> tuple[IPNetwork, ...]:
    """Parse KWIK_TRUSTED_PROXIES: comma-separated addresses or networks of the reverse proxies in front of the
    console, such as '127.0.0.1,10.0.0.0/8'. Raises ValueError naming the bad part."""
    return _parse_networks(
        text,
        "KWIK_TRUSTED_PROXIES must be comma-separated addresses or networks of your reverse proxies, like "
        "'127.0.0.1' or '10.0.0.0/8,fd00::/8'",
    )


# One DNS label as RFC 1123 has it: letters, digits and inner hyphens, at most 63 (IDNA's xn-- form included).
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def host_name_problem(host: str) -> str | None:
    """What is wrong with a URL's host (lower case, an IPv6 literal without its brackets), or None.

    Parsers disagree on anything else (a backslash, a percent-escape, an IPv6 zone, an empty label), and a
    host that one parser reads one way and the connecting one another is how address checks are slipped past.
    """
    if "%" in host:
        return "must not contain percent-escapes or an IPv6 zone"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "has an invalid IPv6 address"
        return None
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return "has an invalid host name"
    return None


def is_loopback(host: str | None) -> bool:
    """Whether `host` names this machine: `localhost`, an address of 127.0.0.0/8, or ::1.

    The one answer for a URL's host (http:// is allowed to loopback in local mode), a Host header's name
    and a peer's address. ::1 may be bracketed ([::1], as in a URL or a Host header); an IPv4-mapped
    ::ffff:127.x.x.x is loopback too (a dual-stack socket shows an IPv4 peer so).
    """
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        if host.startswith("[") and host.endswith("]"):
            ip: IPAddress = ipaddress.IPv6Address(host[1:-1])  # only an IPv6 address is bracketed
        else:
            ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


__all__: list[str] = [
    "IPAddress",
    "IPNetwork",
    "address_refusal",
    "host_problem",
    "host_refusal",
    "is_loopback",
    "parse_allowed_networks",
    "parse_ipv4_spelling",
    "parse_trusted_proxies",
]
