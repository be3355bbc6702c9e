"""Everything added since the release: previous secrets, members, the audit trail, ix_delivery_pending.

Previous secrets get their own table; members their sign-in sessions, one-time
links and sign-in throttles; deliveries the claim index ix_delivery_pending.

The release kept one previous secret on the webhook row: one still signing moves
to previous_secret; the legacy columns are emptied (and stay, unused, while the
model has them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOT_FINISHED = sa.text("next_attempt_at IS NOT NULL")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A database made by create_all in a development build after the release may
    # already hold some of these: create only what is missing.
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())

    if "previous_secret" not in tables:
        op.create_table(
            "previous_secret",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("webhook_id", sa.Integer(), nullable=False),
            sa.Column("secret", sa.String(), nullable=False),
            sa.Column("expires_at", When, nullable=False),
            sa.ForeignKeyConstraint(["webhook_id"], ["webhook.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_previous_secret_webhook_id", "previous_secret", ["webhook_id"])

    if "member" not in tables:
        op.create_table(
            "member",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("email", sa.String(length=254), nullable=False),
            sa.Column("role", sa.String(length=16), nullable=False),
            sa.Column("password_hash", sa.String(length=255), nullable=True),
            sa.Column("created_at", When, nullable=False),
            sa.Column("last_sign_in_at", When, nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("email"),
        )
    if "memberlink" not in tables:
        op.create_table(
            "memberlink",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("member_id", sa.Integer(), nullable=False),
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("purpose", sa.String(length=16), nullable=False),
            sa.Column("created_at", When, nullable=False),
            sa.Column("expires_at", When, nullable=False),
            sa.Column("used_at", When, nullable=True),
            sa.ForeignKeyConstraint(["member_id"], ["member.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("token_hash"),
        )
        op.create_index("ix_memberlink_member_id", "memberlink", ["member_id"])
    if "member_session" not in tables:
        op.create_table(
            "member_session",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("member_id", sa.Integer(), nullable=False),
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("created_at", When, nullable=False),
            sa.Column("last_seen_at", When, nullable=False),
            sa.Column("expires_at", When, nullable=False),
            sa.Column("client_address", sa.String(length=64), nullable=False),
            sa.Column("user_agent", sa.String(length=300), nullable=False),
            sa.ForeignKeyConstraint(["member_id"], ["member.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("token_hash"),
        )
        op.create_index("ix_member_session_member_id", "member_session", ["member_id"])
    if "sign_in_throttle" not in tables:
        op.create_table(
            "sign_in_throttle",
            sa.Column("key", sa.String(length=300), nullable=False),
            sa.Column("failures", sa.Integer(), nullable=False),
            sa.Column("window_started_at", When, nullable=False),
            sa.Column("locked_until", When, nullable=True),
            sa.PrimaryKeyConstraint("key"),
        )
    if "audit_entry" not in tables:
        op.create_table(
            "audit_entry",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("at", When, nullable=False),
            sa.Column("actor_id", sa.Integer(), nullable=True),
            sa.Column("actor_email", sa.String(length=254), nullable=False),
            sa.Column("action", sa.String(length=64), nullable=False),
            sa.Column("target", sa.String(length=300), nullable=False),
            sa.Column("detail", sa.JSON(), nullable=False),
            sa.Column("client_address", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_audit_action", "audit_entry", ["action", "id"])
        op.create_index("ix_audit_actor", "audit_entry", ["actor_email", "id"])

    if "ix_delivery_pending" not in {i["name"] for i in inspector.get_indexes("delivery")}:
        op.create_index(
            "ix_delivery_pending",
            "delivery",
            ["webhook_id", "next_attempt_at"],
            sqlite_where=NOT_FINISHED,
            postgresql_where=NOT_FINISHED,
        )

    _move_legacy_previous_secrets()


def _move_legacy_previous_secrets() -> None:
    """A previous secret still signing moves to previous_secret; an expired one is dropped."""
    webhook = sa.table(
        "webhook",
        sa.column("id", sa.Integer()),
        sa.column("previous_secret", sa.String()),
        sa.column("previous_secret_expires_at", When),
    )
    previous = sa.table(
        "previous_secret",
        sa.column("webhook_id", sa.Integer()),
        sa.column("secret", sa.String()),
        sa.column("expires_at", When),
    )
    now = dt.datetime.now(dt.UTC)  # stored as naive UTC on SQLite, timestamptz on PostgreSQL: both compare right
    still_signing = sa.select(webhook.c.id, webhook.c.previous_secret, webhook.c.previous_secret_expires_at).where(
        webhook.c.previous_secret.is_not(None), webhook.c.previous_secret_expires_at > now
    )
    op.execute(previous.insert().from_select(["webhook_id", "secret", "expires_at"], still_signing))
    op.execute(
        webhook.update()
        .where(sa.or_(webhook.c.previous_secret.is_not(None), webhook.c.previous_secret_expires_at.is_not(None)))
        .values(previous_secret=None, previous_secret_expires_at=None)
    )


def downgrade() -> None:
    # Previous secrets are not moved back: after a downgrade, rotations made since sign with the current secret only.
    op.drop_index("ix_delivery_pending", table_name="delivery")
    for table in ("audit_entry", "sign_in_throttle", "member_session", "memberlink", "member", "previous_secret"):
        op.drop_table(table)
