"""Standard Webhooks signatures (https://www.standardwebhooks.com/)."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), key being the secret's base64 part."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(_key(secret), signed, hashlib.sha256)).decode()


@functools.lru_cache(maxsize=1024)
def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))  # once per secret, not at every attempt


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
