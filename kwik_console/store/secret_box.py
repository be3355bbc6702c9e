"""Signing secrets at rest: encrypted with KWIK_SECRET_KEY (Fernet), readable only by this code.

A sealed value is stored as `fernet:` + the Fernet token. KWIK_SECRET_KEY may
list several keys, the current one first: every key decrypts, the first one
encrypts, so a key is rotated by putting the new one in front and running
`kwik-console secrets rekey` (webhooks/secrets.py), which seals every secret again with it.
Without a key (local mode) secrets are stored as they are.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from kwik_console.core.settings import get_settings

PREFIX = "fernet:"


class SecretKeyError(RuntimeError):
    """A stored secret cannot be read with the keys in KWIK_SECRET_KEY."""


@functools.cache
def _box(keys: tuple[str, ...]) -> MultiFernet | None:
    return MultiFernet([Fernet(k.encode()) for k in keys]) if keys else None


def seal(secret: str) -> str:
    box = _box(get_settings().secret_keys)
    return secret if box is None else PREFIX + box.encrypt(secret.encode()).decode()


def unseal(stored: str) -> str:
    if not stored.startswith(PREFIX):
        return stored  # written without a key (local mode, or before one was set)
    box = _box(get_settings().secret_keys)
    if box is None:
        raise SecretKeyError("A signing secret is encrypted, but KWIK_SECRET_KEY is not set.")
    try:
        return box.decrypt(stored.removeprefix(PREFIX).encode()).decode()
    except InvalidToken:
        raise SecretKeyError("A signing secret cannot be decrypted with any key in KWIK_SECRET_KEY.") from None


class SealedSecret(sa.TypeDecorator):
    """A text column whose value is sealed on the way in and opened on the way out."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else seal(value)

    def process_result_value(self, value, dialect):
        return None if value is None else unseal(value)
