"""A webhook's rules: what a merchant may submit in Create / Edit, checked field by field (pure, no I/O).

Every face calls these through the service; each check raises InvalidInput naming its field.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import idna

from kwik_console.core.errors import InvalidInput, check_all
from kwik_console.core.network import host_name_problem, host_refusal, is_loopback
from kwik_console.core.settings import get_settings
from kwik_console.core.text import check_text
from kwik_console.events import catalog
from kwik_console.store.tables import WebhookStatus

NAME_MAX = 100
URL_MAX = 2048
RATE_MIN, RATE_MAX = 0.1, 1000.0
# "All events": every merchant type in the catalogue, including types added later (never the operational ones).
ALL_EVENTS = "*"
HEADERS_MAX = 10
HEADER_NAME_MAX = 100
HEADER_VALUE_MAX = 1024
# An HTTP field name is a token (RFC 9110): letters, digits and these marks, nothing else.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A value the client can send as it is: visible ASCII and spaces (httpx encodes header values as ASCII).
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")
# Names the console sets itself or that belong to the connection, not to the merchant: the signature
# headers, the body's description, the host, hop-by-hop headers; `user-agent` because receivers and their
# firewalls recognise Kwik's deliveries by it; `accept-encoding` and `expect` because they change how the
# console reads the answer.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "accept-encoding",
        "expect",
    }
)
_RESERVED_PREFIXES = ("webhook-", "content-", "proxy-")


@dataclasses.dataclass
class WebhookInput:
    """What a merchant submits in the Create / Edit form. None means "unchanged" on update."""

    name: str | None = None
    url: str | None = None
    events: list[str] | None = None
    status: str | None = None
    # "Max deliveries per second": a number, or "" for no limit.
    max_per_second: str | float | None = None
    # Custom headers sent with each delivery, {name: value} or (name, value) pairs; empty removes them all.
    headers: Mapping[str, str] | list[tuple[str, str]] | None = None


def _text(field: str, label: str, value) -> str:
    """A text field's value, trimmed; any other type (a Python caller's 123) is refused like bad text."""
    if value is not None and not isinstance(value, str):
        raise InvalidInput({field: f"{label} must be text."})
    return (value or "").strip()


def validate_name(name: str | None) -> str:
    name = _text("name", "Name", name)
    if not name:
        raise InvalidInput({"name": "Name is required."})
    if len(name) > NAME_MAX:
        raise InvalidInput({"name": f"Name must be at most {NAME_MAX} characters (it has {len(name)})."})
    return check_text("name", "Name", name)


def _normalise_host(url: str, netloc: str, host: str) -> str:
    """An international host name checked (IDNA 2008, UTS 46) and put in its A-label (xn--) form.

    The A-label is what goes on the wire, and it shows look-alike letters for what they are.
    """
    if host.isascii() and not any(label.startswith("xn--") for label in host.split(".")):
        return url
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise InvalidInput({"url": "Webhook URL has an invalid international host name."}) from None
    start = url.index("//") + 2  # no user info is allowed, so the netloc starts here
    port = netloc.rpartition(":")[2] if ":" in netloc else None
    new_netloc = ascii_host if port is None else f"{ascii_host}:{port}"
    return url[:start] + new_netloc + url[start + len(netloc) :]


def validate_url(url: str | None, *, local_mode: bool) -> str:
    url = _text("url", "Webhook URL", url)
    if not url:
        raise InvalidInput({"url": "Webhook URL is required."})
    if len(url) > URL_MAX:
        raise InvalidInput({"url": f"Webhook URL must be at most {URL_MAX:,} characters."})
    check_text("url", "Webhook URL", url)
    if any(ch.isspace() for ch in url):
        raise InvalidInput({"url": "Webhook URL must not contain spaces."})
    if "\\" in url:  # read as "/" by browsers and some clients, as text by others
        raise InvalidInput({"url": "Webhook URL must not contain a backslash."})
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port  # raises on a port above 65535
    except ValueError:
        raise InvalidInput({"url": "Webhook URL is not a valid URL."}) from None
    if port == 0:
        raise InvalidInput({"url": "Webhook URL's port must be between 1 and 65535."})
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.netloc:
        raise InvalidInput({"url": "Webhook URL must be an absolute https:// URL, like https://example.com/webhooks."})
    if not host:
        raise InvalidInput({"url": "Webhook URL must include a host name."})
    if parts.username is not None or parts.password is not None:
        raise InvalidInput({"url": "Webhook URL must not include a user name or password."})
    if parts.fragment or url.endswith("#"):
        raise InvalidInput({"url": "Webhook URL must not include a #fragment."})
    url = _normalise_host(url, parts.netloc, host)
    if problem := host_name_problem(urlsplit(url).hostname or ""):
        raise InvalidInput({"url": f"Webhook URL {problem}."})
    if scheme == "http":
        if not (local_mode and is_loopback(host)):
            hint = " (http:// is allowed only for localhost when running locally)"
            raise InvalidInput({"url": f"Webhook URL must use https://{hint}."})
    if not local_mode:
        # Hosted: never an internal address (checked again at connect time, after DNS).
        if refusal := host_refusal(host, get_settings().allowed_networks):
            raise InvalidInput({"url": refusal})
    return url


def validate_events(events: Iterable[str] | None) -> list[str]:
    if isinstance(events, str | bytes) or (events is not None and not isinstance(events, Iterable)):
        raise InvalidInput({"events": "Events must be a list of event types."})
    chosen = [e.strip() if isinstance(e, str) else repr(e) for e in (events or []) if e]
    chosen = [e for e in chosen if e]
    if not chosen:
        raise InvalidInput({"events": "Select at least one event."})
    if ALL_EVENTS in chosen:
        if set(chosen) != {ALL_EVENTS}:
            raise InvalidInput({"events": '"*" (all events) must be alone: it already includes every event type.'})
        return [ALL_EVENTS]
    operational = sorted({e for e in chosen if catalog.is_operational_type(e)})
    if operational:
        raise InvalidInput(
            {
                "events": f"{', '.join(operational)}: operational events go only to the operational "
                "webhook, which an admin sets on the Developers page."
            }
        )
    unknown = sorted({e for e in chosen if not catalog.is_event_type(e)})
    if unknown:
        raise InvalidInput({"events": f"Unknown event type: {', '.join(unknown)}."})
    # Catalogue order, no duplicates.
    return [name for name in catalog.event_type_names() if name in set(chosen)]


def validate_status(status: str | None) -> str:
    value = _text("status", "Status", status).lower()
    if value not in {s.value for s in WebhookStatus}:
        raise InvalidInput({"status": "Status must be Live, Paused or Disabled."})
    return value


def validate_max_per_second(value: str | float | None) -> float | None:
    """The rate limit: empty for none, else deliveries per second between 0.1 and 1,000."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    message = {
        "max_per_second": f"Max deliveries per second must be a number from {RATE_MIN:g} to "
        f"{RATE_MAX:,.0f}, or empty for no limit."
    }
    if isinstance(value, bool):
        raise InvalidInput(message)
    try:
        number = float(value.strip().replace(",", "") if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise InvalidInput(message) from None
    if not RATE_MIN <= number <= RATE_MAX:  # also refuses NaN
        raise InvalidInput(message)
    return round(number, 2)


# What stands for a custom header's value before those who may not see signing secrets.
HIDDEN_VALUE = "•" * 8


def _reserved(lower: str) -> bool:
    return lower in _RESERVED_HEADERS or lower.startswith(_RESERVED_PREFIXES)


def headers_shown(headers: Mapping[str, str], *, sees_secrets: bool) -> dict[str, str]:
    """Headers as a member or token may see them: a custom header's value is often a secret (an API key, a
    bearer token), so only those who may see signing secrets see it; the console's own are shown to all."""
    if sees_secrets:
        return {str(n): str(v) for n, v in headers.items()}
    return {str(n): str(v) if _reserved(str(n).lower()) else HIDDEN_VALUE for n, v in headers.items()}


def header_refusal(name: str) -> str | None:
    """Why a custom header may not have this name, or None."""
    lower = name.lower()
    if _reserved(lower):
        if lower.startswith("webhook-"):
            return f"{name}: webhook-* headers carry the signature; the console sets them."
        if lower.startswith("content-"):
            return f"{name}: content-* headers describe the body; the console sets them."
        if lower == "user-agent":
            return f"{name}: the console sends its own, by which receivers recognise Kwik's deliveries."
        return f"{name}: this header belongs to the connection; the console sets it."
    return None


def validate_headers(headers: Mapping[str, str] | list[tuple[str, str]] | None) -> dict[str, str]:
    """Custom headers: at most 10, names HTTP tokens, unique ignoring case and not reserved; values
    printable ASCII of at most 1 KB. Names keep their case; values are trimmed, as HTTP does.

    Pairs (the form's rows, the CLI's --header) are checked as given, so a name twice is refused, not merged.
    """
    if headers is None:
        return {}
    if isinstance(headers, Mapping):
        pairs = list(headers.items())
    elif isinstance(headers, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in headers):
        pairs = [tuple(p) for p in headers]
    else:
        raise InvalidInput({"headers": "Custom headers must be an object of names and values."})
    if len(pairs) > HEADERS_MAX:
        raise InvalidInput({"headers": f"At most {HEADERS_MAX} custom headers (there are {len(pairs)})."})
    clean: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidInput({"headers": "Custom header names and values must be text."})
        name = name.strip()
        shown = repr(name[:40]) if not name.isprintable() else name[:HEADER_NAME_MAX]
        if not name:
            raise InvalidInput({"headers": "Each custom header needs a name."})
        if len(name) > HEADER_NAME_MAX:
            raise InvalidInput({"headers": f"Custom header names must be at most {HEADER_NAME_MAX} characters."})
        if not _TOKEN.fullmatch(name):
            raise InvalidInput(
                {
                    "headers": f"{shown}: a header name has only letters, digits and ! # $ % & ' * + - . ^ _ ` | ~ "
                    "(no spaces, colons or control characters)."
                }
            )
        if refusal := header_refusal(name):
            raise InvalidInput({"headers": refusal})
        if name.lower() in seen:
            raise InvalidInput({"headers": f"{name}: each header name only once (names ignore case)."})
        seen.add(name.lower())
        value = value.strip(" ")
        if not _HEADER_VALUE.fullmatch(value):
            raise InvalidInput({"headers": f"{name}: the value must be plain ASCII text, with no control characters."})
        if len(value) > HEADER_VALUE_MAX:
            raise InvalidInput(
                {
                    "headers": f"{name}: the value must be at most {HEADER_VALUE_MAX:,} characters "
                    f"(it has {len(value):,})."
                }
            )
        clean[name] = value
    return clean


def parse_header_line(line: str) -> tuple[str, str]:
    """`Name: value` (as curl and the CLI write a header) split in two; the rules above check both parts."""
    name, colon, value = line.partition(":")
    if not colon:
        raise InvalidInput({"headers": f"{line[:60]!r}: write a header as 'Name: value'."})
    return name.strip(), value.strip()


def validate(data: WebhookInput, *, partial: bool = False, local_mode: bool | None = None) -> WebhookInput:
    """Check every field at once; raise InvalidInput naming each bad field, or return clean values."""
    local_mode = get_settings().local_mode if local_mode is None else local_mode
    rules = {
        "name": validate_name,
        "url": lambda v: validate_url(v, local_mode=local_mode),
        "events": validate_events,
        "status": validate_status,
        "max_per_second": validate_max_per_second,
        "headers": validate_headers,
    }
    status = data.status if data.status is not None or partial else WebhookStatus.LIVE.value
    given = {
        "name": data.name,
        "url": data.url,
        "events": data.events,
        "status": status,
        "max_per_second": data.max_per_second,
        "headers": data.headers,
    }
    # On update None leaves a field as it is; a rate limit of None is "no change" on create too,
    # and headers of None are none ({}).
    checks = [
        (field, rules[field], value)
        for field, value in given.items()
        if value is not None or not (partial or field == "max_per_second")
    ]
    return WebhookInput(**check_all(checks))
