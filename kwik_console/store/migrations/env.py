"""Alembic's environment: always given a connection by kwik_console.store.schema, already inside the migration lock."""

from __future__ import annotations

from alembic import context

from kwik_console.store import schema

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Kwik's migrations run through `kwik-console db upgrade`, not the alembic command")

context.configure(connection=connection, target_metadata=schema.table_metadata(), **schema.MIGRATION_OPTIONS)
with context.begin_transaction():  # schema.upgrade() already holds the transaction: this one is a no-op
    context.run_migrations()
