"""Tokens handed to people (session cookies, one-time links, API tokens): made at random, stored only as a digest."""

from __future__ import annotations

import hashlib
import secrets


def digest(token: str) -> str:
    """What the database keeps of a token: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)
