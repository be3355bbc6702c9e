"""Alembic's environment: always given a connection by kwik_console.store.db, already inside the migration lock."""

from __future__ import annotations

from alembic import context

from kwik_console.store import db

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Kwik's migrations run through `kwik-console db upgrade`, not the alembic command")

context.configure(connection=connection, target_metadata=db.table_metadata(), **db.MIGRATION_OPTIONS)
with context.begin_transaction():  # db.upgrade() already holds the transaction: this one is a no-op
    context.run_migrations()
