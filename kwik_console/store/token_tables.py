"""SQLModel tables for the REST API: access tokens, idempotency keys and rate-limit counters.

A token is stored only as its SHA-256 digest (like sessions and links), so a copy of
the database cannot call the API. Idempotency keys and rate-limit counters live in
the database so that every replica sees the same ones.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from kwik_console.store.tables import when_column


class AccessToken(SQLModel, table=True):
    __tablename__ = "access_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    # The first characters of the token ("kwik_AbC1…"): enough to tell tokens apart in a list, useless to call with.
    prefix: str = Field(max_length=16)
    token_hash: str = Field(sa_column=Column(sa.String(64), nullable=False, unique=True))
    # Comma-separated, in the order of tokens.SCOPES: "read,write,publish".
    scopes: str = Field(max_length=64)
    created_at: dt.datetime = when_column()
    created_by: str = Field(default="", max_length=254)
    last_used_at: dt.datetime | None = when_column(nullable=True)
    expires_at: dt.datetime | None = when_column(nullable=True)
    revoked_at: dt.datetime | None = when_column(nullable=True)


class IdempotencyKey(SQLModel, table=True):
    """The first result of a request made with an `Idempotency-Key`; a repeat within 24 h gets it back.

    The unique (owner, key) pair is what makes 20 concurrent repeats publish one event: every
    request but one fails to claim the key and reads the first one's result.
    """

    __tablename__ = "idempotency_key"
    __table_args__ = (sa.UniqueConstraint("owner", "key", name="uq_idempotency_owner_key"),)

    id: int | None = Field(default=None, primary_key=True)
    # Whose key it is: "token:<id>", or "local" for a tokenless call in local mode.
    owner: str = Field(max_length=40)
    key: str = Field(max_length=255)
    # SHA-256 of the request (method, path, body): the same key with another request is refused.
    request_hash: str = Field(max_length=64)
    status_code: int = 0
    response: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: dt.datetime = when_column(index=True)


class RateLimitCounter(SQLModel, table=True):
    """Requests one token made in one fixed window; every replica counts in the same row."""

    __tablename__ = "rate_limit_counter"

    subject: str = Field(primary_key=True, max_length=40)  # "token:<id>"
    window_start: int = Field(primary_key=True)  # Unix seconds, a multiple of the window length
    count: int = 0
