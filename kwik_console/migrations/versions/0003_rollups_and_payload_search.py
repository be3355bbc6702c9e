"""Rollups per minute and hour for the webhook page's charts; the payload search index.

Rollup tables are filled from the attempts of the last 30 days; the search
index (SQLite FTS5 or PostgreSQL pg_trgm) from every stored event.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BINS = 20


def _rollup(name: str) -> None:
    op.create_table(
        name,
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.Column("duration_ms_sum", sa.BigInteger(), nullable=False),
        *[sa.Column(f"b{i}", sa.Integer(), nullable=False) for i in range(BINS)],
        sa.ForeignKeyConstraint(["webhook_id"], ["webhook.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("webhook_id", "bucket"),
    )


def upgrade() -> None:
    _rollup("rollup_minute")
    _rollup("rollup_hour")
    with op.batch_alter_table("delivery") as batch:
        batch.create_index("ix_delivery_event", ["event_id"])
    from kwik_console import rollups, search

    connection = op.get_bind()
    search.ensure_index(connection)
    rollups.rebuild(connection, since=dt.datetime.now(dt.UTC) - dt.timedelta(days=30))


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        for trigger in ("event_fts_insert", "event_fts_delete", "event_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS event_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_event_body_trgm")
    with op.batch_alter_table("delivery") as batch:
        batch.drop_index("ix_delivery_event")
    op.drop_table("rollup_hour")
    op.drop_table("rollup_minute")
