"""All-events subscriptions, custom headers, email alerts, and the console's own secrets.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.add_column(sa.Column("all_events", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("headers", sa.JSON(), server_default="{}", nullable=False))
        batch_op.create_index(
            "ix_webhook_all_events",
            ["id"],
            unique=False,
            sqlite_where=sa.text("all_events = 1"),
            postgresql_where=sa.text("all_events"),
        )

    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_alerts", sa.Boolean(), server_default=sa.false(), nullable=False))

    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alert_due",
            ["next_try_at"],
            unique=False,
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )
        batch_op.create_index("ix_alert_webhook", ["webhook_id", "id"], unique=False)

    op.create_table(
        "console_secret",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("console_secret")
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_webhook")
        batch_op.drop_index("ix_alert_due")
    op.drop_table("alert")
    with op.batch_alter_table("member", schema=None) as batch_op:
        batch_op.drop_column("email_alerts")
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_all_events")
        batch_op.drop_column("headers")
        batch_op.drop_column("all_events")
