"""Alembic migrations of Kwik Console's schema, run by `kwik_console.store.schema` (no alembic.ini).

`versions/0001_*` is the schema of the last release made without migrations
(11f8716, by create_all); each later revision is one schema change. To add one
after changing the models: `kwik-console db revision -m "what changed"`, then
read and edit the file it writes.
"""
