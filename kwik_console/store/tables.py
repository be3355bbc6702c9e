"""SQLModel tables: webhooks, their subscriptions, events, deliveries and attempts."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from kwik_console.store.secret_box import SealedSecret


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware UTC datetimes on every database.

    SQLite has no time zone type, so values are stored as naive UTC and come
    back aware; PostgreSQL stores `timestamptz`.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def when_column(*, index: bool = False, nullable: bool = False) -> Any:
    """A timestamp field: UTC on every database."""
    return Field(default=None, sa_column=Column(UTCDateTime(), index=index, nullable=nullable))


class WebhookStatus(StrEnum):
    LIVE = "live"
    PAUSED = "paused"  # events recorded, deliveries wait; on resume they go out oldest first
    DISABLED = "disabled"  # no deliveries; scheduled retries cancelled

    @property
    def label(self) -> str:
        return self.value.capitalize()


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # not attempted yet
    SUCCESS = "success"
    RETRYING = "retrying"  # failed, next retry scheduled
    FAILURE = "failure"  # retries exhausted, 410, or webhook disabled / deleted

    @property
    def label(self) -> str:
        return self.value.capitalize()


class Webhook(SQLModel, table=True):
    __table_args__ = (
        # The list, newest first.
        sa.Index("ix_webhook_created", "created_at", "id"),
        # Every publish looks for the "All events" webhooks: only those are indexed.
        sa.Index(
            "ix_webhook_all_events",
            "id",
            sqlite_where=sa.text("all_events = 1"),
            postgresql_where=sa.text("all_events"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    url: str = Field(max_length=2048)
    status: str = Field(default=WebhookStatus.LIVE, max_length=16)
    # Encrypted at rest when KWIK_SECRET_KEY is set (see secret_box.py).
    secret: str = Field(sa_column=Column(SealedSecret(), nullable=False))
    # lower(name + " " + url): the search bar matches against this one column.
    search_text: str = Field(sa_column=Column(sa.String(2200), nullable=False, index=True))
    # "Max deliveries per second": None for no limit.
    max_per_second: float | None = None
    # The rate limit's clock, shared by every dispatcher: the next delivery may start at this time.
    rate_next_at: dt.datetime | None = when_column(nullable=True)
    # Since the first failed attempt after the last success; None while attempts succeed.
    failing_since: dt.datetime | None = when_column(nullable=True)
    # Why and when the console disabled it by itself (auto-disable); None otherwise.
    disabled_reason: str | None = Field(default=None, max_length=300)
    disabled_at: dt.datetime | None = when_column(nullable=True)
    # The operational webhook: it receives the notices about the other webhooks.
    operational: bool = Field(default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false()))
    # "All events": every type in the catalogue, including types added later; its subscriptions are then empty.
    all_events: bool = Field(default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false()))
    # Custom headers sent with each delivery: {name: value}, at most 10.
    headers: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}"))
    created_at: dt.datetime = when_column()
    updated_at: dt.datetime = when_column()


class Subscription(SQLModel, table=True):
    """One event type a webhook receives: the Events field, one row per type."""

    __table_args__ = (sa.Index("ix_subscription_event_type", "event_type", "webhook_id"),)

    webhook_id: int = Field(
        sa_column=Column(sa.Integer, sa.ForeignKey("webhook.id", ondelete="CASCADE"), primary_key=True)
    )
    event_type: str = Field(primary_key=True, max_length=64)


class Event(SQLModel, table=True):
    """An event published once; `body` is the exact JSON envelope every attempt sends."""

    id: str = Field(primary_key=True, max_length=40)
    type: str = Field(max_length=64)
    test: bool = False
    body: str
    created_at: dt.datetime = when_column()


class Delivery(SQLModel, table=True):
    """One event to one webhook: a chain of attempts."""

    __table_args__ = (
        # A webhook's event log, newest first (keyset on id), and its three filters.
        sa.Index("ix_delivery_webhook", "webhook_id", "id"),
        sa.Index("ix_delivery_webhook_status", "webhook_id", "status", "id"),
        sa.Index("ix_delivery_webhook_type", "webhook_id", "event_type", "id"),
        sa.Index("ix_delivery_webhook_test", "webhook_id", "test", "id"),
        # Claiming, one webhook at a time: which webhooks have unfinished
        # deliveries, and each one's oldest due. Only unfinished rows are indexed.
        sa.Index(
            "ix_delivery_pending",
            "webhook_id",
            "next_attempt_at",
            sqlite_where=sa.text("next_attempt_at IS NOT NULL"),
            postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
        ),
        # A recovery's deliveries still waiting for their next attempt.
        sa.Index(
            "ix_delivery_recovery",
            "recovery_id",
            sqlite_where=sa.text("recovery_id IS NOT NULL"),
            postgresql_where=sa.text("recovery_id IS NOT NULL"),
        ),
        # Due deliveries by next attempt time; only those still to be attempted.
        sa.Index(
            "ix_delivery_due",
            "next_attempt_at",
            sqlite_where=sa.text("next_attempt_at IS NOT NULL"),
            postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(sa_column=Column(sa.String(40), sa.ForeignKey("event.id"), nullable=False))
    webhook_id: int = Field(
        sa_column=Column(sa.Integer, sa.ForeignKey("webhook.id", ondelete="CASCADE"), nullable=False)
    )
    # Copied from the event so the log filters without a join.
    event_type: str = Field(max_length=64)
    test: bool = False
    status: str = Field(default=DeliveryStatus.PENDING, max_length=16)
    attempt_count: int = 0
    last_http_code: int | None = None
    # When the next attempt is due; None once the delivery is finished.
    next_attempt_at: dt.datetime | None = when_column(nullable=True)
    # A claim by one dispatcher; expired claims are taken over.
    lease_until: dt.datetime | None = when_column(nullable=True)
    leased_by: str | None = Field(default=None, max_length=80)
    # The recovery that queued it, until its next attempt is recorded (the recovery's counts).
    # (No foreign key: a recovery is only ever removed with its webhook, and with it these rows.)
    recovery_id: int | None = None
    created_at: dt.datetime = when_column()
    updated_at: dt.datetime = when_column()

    @property
    def retry_counter(self) -> int:
        """Retries attempted so far: attempts - 1."""
        return max(self.attempt_count - 1, 0)

    @property
    def retry_at(self) -> dt.datetime | None:
        """The Retry Timestamp: when the next retry runs, if one is scheduled."""
        return self.next_attempt_at if self.status == DeliveryStatus.RETRYING else None


class Attempt(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(
        sa_column=Column(sa.Integer, sa.ForeignKey("delivery.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    number: int
    attempted_at: dt.datetime = when_column()
    http_code: int | None = None
    duration_ms: int = 0
    request_headers: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    response_headers: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    response_body: str = ""
    error: str | None = None


class PreviousSecret(SQLModel, table=True):
    """A signing secret replaced by a rotation; it still signs until `expires_at`."""

    __tablename__ = "previous_secret"

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(
        sa_column=Column(sa.Integer, sa.ForeignKey("webhook.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    secret: str = Field(sa_column=Column(SealedSecret(), nullable=False))
    expires_at: dt.datetime = when_column()


class RecoveryState(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        return self.value.capitalize()


class Recovery(SQLModel, table=True):
    """ "Recover failed since": a job that queues a webhook's matching deliveries again, in batches.

    Its state lives here, so any process may take it over after a restart: the
    job's lease says who runs it, `cursor` how far it got.
    """

    __table_args__ = (
        # One running recovery per webhook.
        sa.Index(
            "ux_recovery_running",
            "webhook_id",
            unique=True,
            sqlite_where=sa.text("state = 'running'"),
            postgresql_where=sa.text("state = 'running'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(
        sa_column=Column(sa.Integer, sa.ForeignKey("webhook.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    since: dt.datetime = when_column()
    # Filters: event types and delivery statuses; empty means any type, and Failure only.
    event_types: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    statuses: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    state: str = Field(default=RecoveryState.RUNNING, max_length=16)
    # Deliveries matched when it started, queued so far, and their next attempts' outcomes.
    total: int = 0
    queued: int = 0
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    # The highest delivery id looked at: queuing resumes after it.
    cursor: int = 0
    queuing_done: bool = False
    lease_until: dt.datetime | None = when_column(nullable=True)
    leased_by: str | None = Field(default=None, max_length=80)
    created_by: str = Field(default="", max_length=254)
    created_at: dt.datetime = when_column()
    updated_at: dt.datetime = when_column()
    finished_at: dt.datetime | None = when_column(nullable=True)


class AlertState(StrEnum):
    PENDING = "pending"  # to be sent, at next_try_at
    SENT = "sent"
    FAILED = "failed"  # tries exhausted


class Alert(SQLModel, table=True):
    """An email about a webhook's change of state (failing, disabled, recovered), sent in the background."""

    __table_args__ = (
        # The sender's queue: alerts still to send, by due time.
        sa.Index(
            "ix_alert_due",
            "next_try_at",
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        ),
        # A webhook's latest alerts: at most one an hour while it flaps.
        sa.Index("ix_alert_webhook", "webhook_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # No foreign key: the record outlives the webhook it was about.
    webhook_id: int
    kind: str = Field(max_length=16)  # "failing", "disabled" or "recovered"
    recipients: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    subject: str = Field(max_length=300)
    body: str
    state: str = Field(default=AlertState.PENDING, max_length=16)
    tries: int = 0
    next_try_at: dt.datetime = when_column()
    last_error: str | None = Field(default=None, max_length=500)
    created_at: dt.datetime = when_column()
    sent_at: dt.datetime | None = when_column(nullable=True)


class ConsoleSecret(SQLModel, table=True):
    """A secret the console keeps for itself by name, such as the one `listen` signs with."""

    __tablename__ = "console_secret"

    name: str = Field(primary_key=True, max_length=64)
    # Encrypted at rest when KWIK_SECRET_KEY is set, like a webhook's signing secret.
    secret: str = Field(sa_column=Column(SealedSecret(), nullable=False))
    created_at: dt.datetime = when_column()
