"""Standard Webhooks signatures (https://www.standardwebhooks.com/)."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"


# OpenSSL's one-shot HMAC (hmac.digest) lets go of the interpreter lock for every message, and hashing does for
# any piece of 2,048 bytes or more. On the dispatcher's loop, each let-go hands the lock to a database thread for
# up to the switch interval (5 ms) to hash for microseconds. Signing copies a kept HMAC per secret and feeds it
# smaller pieces, so it never lets go.
_PIECE = 2047


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), key being the secret's base64 part."""
    mac = _keyed(secret).copy()
    mac.update(f"{msg_id}.{timestamp}.".encode())
    view = memoryview(body)
    for start in range(0, len(view), _PIECE):
        mac.update(view[start : start + _PIECE])
    return "v1," + base64.b64encode(mac.digest()).decode()


@functools.lru_cache(maxsize=1024)
def _keyed(secret: str) -> hmac.HMAC:
    # Once per secret, not at every attempt: the key's decoding and HMAC's key set-up.
    return hmac.new(base64.b64decode(secret.removeprefix(SECRET_PREFIX)), digestmod=hashlib.sha256)


def active_secrets(
    secret: str,
    previous: Iterable[tuple[str, dt.datetime]],
    now: dt.datetime,
) -> list[str]:
    """The current secret first, then every replaced one whose overlap has not ended, newest first.

    `previous` holds (secret, expires_at) pairs, as stored in previous_secret.
    """
    keys = [secret]
    for old, _ in sorted(((s, e) for s, e in previous if e > now), key=lambda pair: pair[1], reverse=True):
        if old not in keys:
            keys.append(old)
    return keys


def signature_headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        # Space-separated: receivers accept a message if any signature matches.
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }
