"""SQLModel tables for hosted mode: members, one-time links, sign-in sessions, sign-in throttles, the audit trail.

Every token (session, invitation, reset link) is stored only as its SHA-256
digest, so a copy of the database cannot sign anybody in.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from kwik_console.store.tables import when_column


class Role(StrEnum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"

    @property
    def label(self) -> str:
        return self.value.capitalize()


class Member(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # Stored lower-case: one person, one account, whatever the capitals typed.
    email: str = Field(sa_column=Column(sa.String(254), nullable=False, unique=True))
    role: str = Field(max_length=16)
    # None until the member follows their invitation link and chooses a password.
    password_hash: str | None = Field(default=None, max_length=255)
    created_at: dt.datetime = when_column()
    last_sign_in_at: dt.datetime | None = when_column(nullable=True)
    # Emails when a webhook starts failing, is disabled or recovers; admins get them whatever this says.
    email_alerts: bool = Field(default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false()))


class LinkPurpose(StrEnum):
    INVITE = "invite"
    RESET = "reset"


class MemberLink(SQLModel, table=True):
    """A one-time link to set a password: an invitation, or a reset made by an admin."""

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(
        sa_column=Column(sa.Integer, sa.ForeignKey("member.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    token_hash: str = Field(sa_column=Column(sa.String(64), nullable=False, unique=True))
    purpose: str = Field(max_length=16)
    created_at: dt.datetime = when_column()
    expires_at: dt.datetime = when_column()
    used_at: dt.datetime | None = when_column(nullable=True)


class MemberSession(SQLModel, table=True):
    """A signed-in browser. Revoking a session deletes its row; every state event looks it up."""

    __tablename__ = "member_session"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(
        sa_column=Column(sa.Integer, sa.ForeignKey("member.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    token_hash: str = Field(sa_column=Column(sa.String(64), nullable=False, unique=True))
    created_at: dt.datetime = when_column()
    last_seen_at: dt.datetime = when_column()
    expires_at: dt.datetime = when_column()  # the absolute limit, whatever the activity
    client_address: str = Field(default="", max_length=64)
    user_agent: str = Field(default="", max_length=300)


class SignInThrottle(SQLModel, table=True):
    """Failed sign-ins per account or per client address, shared by every replica through the database."""

    __tablename__ = "sign_in_throttle"

    key: str = Field(primary_key=True, max_length=300)  # "account:<email>" or "address:<ip>"
    failures: int = 0
    window_started_at: dt.datetime = when_column()
    locked_until: dt.datetime | None = when_column(nullable=True)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"
    __table_args__ = (
        sa.Index("ix_audit_actor", "actor_email", "id"),
        sa.Index("ix_audit_action", "action", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = when_column()
    # No foreign key: the trail outlives the member who acted.
    actor_id: int | None = None
    actor_email: str = Field(default="", max_length=254)
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=300)
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    client_address: str = Field(default="", max_length=64)
