"""Rollups per minute and hour for the webhook page's charts; the payload search index.

Rollup tables are filled from the attempts of the last 30 days; the search
index (SQLite FTS5 or PostgreSQL pg_trgm) from every stored event.

Everything this revision runs is written out here, frozen as it was when it was
made: the search index's DDL and the rollups' rebuild (one INSERT ... SELECT per
grain, with the 20-bin duration histogram of that time). Later changes to
kwik_console/rollups.py or kwik_console/search.py do not change what it does.

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
# Upper bounds of the first 19 duration bins, in ms; the 20th holds everything slower.
BIN_UPPER_MS = (5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000)
REBUILD_DAYS = 30
GRAINS = (("rollup_minute", 60), ("rollup_hour", 3600))

SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS event_fts USING fts5(body, content='event', content_rowid='rowid')",
    "CREATE TRIGGER IF NOT EXISTS event_fts_insert AFTER INSERT ON event BEGIN "
    "INSERT INTO event_fts(rowid, body) VALUES (new.rowid, new.body); END",
    "CREATE TRIGGER IF NOT EXISTS event_fts_delete AFTER DELETE ON event BEGIN "
    "INSERT INTO event_fts(event_fts, rowid, body) VALUES ('delete', old.rowid, old.body); END",
    "CREATE TRIGGER IF NOT EXISTS event_fts_update AFTER UPDATE OF body ON event BEGIN "
    "INSERT INTO event_fts(event_fts, rowid, body) VALUES ('delete', old.rowid, old.body); "
    "INSERT INTO event_fts(rowid, body) VALUES (new.rowid, new.body); END",
]
SQLITE_SEARCH_FILL = "INSERT INTO event_fts(event_fts) VALUES ('rebuild')"
POSTGRES_SEARCH = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS ix_event_body_trgm ON event USING gin (body gin_trgm_ops)",
]

# An attempt's time in whole Unix seconds (SQLite stores naive UTC text; PostgreSQL timestamptz).
EPOCH = {
    "sqlite": "CAST(strftime('%s', a.attempted_at) AS INTEGER)",
    "postgresql": "CAST(floor(extract(epoch FROM a.attempted_at)) AS BIGINT)",
}
# Bin i holds durations up to BIN_UPPER_MS[i] (negative ones in bin 0); the last bin everything slower.
_BIN_SUMS = ",\n       ".join(
    [
        f"SUM(CASE WHEN {'' if i == 0 else f'a.duration_ms > {BIN_UPPER_MS[i - 1]} AND '}"
        f"a.duration_ms <= {upper} THEN 1 ELSE 0 END)"
        for i, upper in enumerate(BIN_UPPER_MS)
    ]
    + [f"SUM(CASE WHEN a.duration_ms > {BIN_UPPER_MS[-1]} THEN 1 ELSE 0 END)"]
)
REBUILD = """
INSERT INTO {table} (webhook_id, bucket, attempts, successes, duration_ms_sum, {bins})
SELECT d.webhook_id, {epoch} / {step} * {step},
       COUNT(*),
       SUM(CASE WHEN a.http_code >= 200 AND a.http_code < 300 THEN 1 ELSE 0 END),
       SUM(a.duration_ms),
       {bin_sums}
FROM attempt a JOIN delivery d ON d.id = a.delivery_id
WHERE {epoch} >= :since
GROUP BY d.webhook_id, {epoch} / {step} * {step}
"""


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


def _search_index(connection) -> None:
    if connection.dialect.name == "sqlite":
        new = (
            connection.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type='table' AND name='event_fts'").first()
            is None
        )
        for ddl in SQLITE_SEARCH:
            connection.exec_driver_sql(ddl)
        if new:  # events stored before the index existed
            connection.exec_driver_sql(SQLITE_SEARCH_FILL)
    elif connection.dialect.name == "postgresql":
        for ddl in POSTGRES_SEARCH:
            connection.exec_driver_sql(ddl)


def _rebuild_rollups(connection) -> None:
    """Both grains from the attempts of the last 30 days, from the start of that hour on (the tables are new)."""
    since = int((dt.datetime.now(dt.UTC) - dt.timedelta(days=REBUILD_DAYS)).timestamp()) // 3600 * 3600
    epoch = EPOCH[connection.dialect.name]
    bins = ", ".join(f"b{i}" for i in range(BINS))
    for table, step in GRAINS:
        connection.execute(
            sa.text(REBUILD.format(table=table, bins=bins, epoch=epoch, step=step, bin_sums=_BIN_SUMS)),
            {"since": since},
        )


def upgrade() -> None:
    _rollup("rollup_minute")
    _rollup("rollup_hour")
    with op.batch_alter_table("delivery") as batch:
        batch.create_index("ix_delivery_event", ["event_id"])
    connection = op.get_bind()
    _search_index(connection)
    _rebuild_rollups(connection)


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
