"""Standard Webhooks signatures (https://www.standardwebhooks.com/)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), key being the secret's base64 part."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def active_secrets(
    secret: str,
    previous_secret: str | None,
    previous_expires_at: dt.datetime | None,
    now: dt.datetime,
) -> list[str]:
    """The current secret, plus the previous one while a rotation's overlap lasts."""
    keys = [secret]
    if previous_secret and previous_expires_at and previous_expires_at > now:
        keys.append(previous_secret)
    return keys


def signature_headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        # Space-separated: receivers accept a message if any signature matches.
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }
