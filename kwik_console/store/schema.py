"""The schema: Alembic migrations in kwik_console/store/migrations, and bringing a database to the code's revision.

Every entry point (console, worker, CLI) calls `db.get_engine()` first, which
brings the schema to the code's revision (`init_db`):

- local mode upgrades the database on start;
- hosted mode creates the schema of an empty database, but refuses to start on
  one that is behind, naming `kwik-console db upgrade`: upgrading a team's data
  is the operator's step, after a backup;
- one process migrates at a time, under a PostgreSQL advisory lock or SQLite's
  write lock, so replicas starting together never race;
- a database made by a release before migrations (tables, no alembic_version)
  is stamped with that release's revision first, then upgraded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel

from kwik_console.core.settings import get_settings
from kwik_console.store.engines import DatabaseUnavailable, first_line, make_engine

# Every module that defines tables: the migrations are compared against all of them. Named, not imported: some
# live in higher layers (the rollups, the payload search's index), and only the schema needs them all at once.
MODEL_MODULES = (
    "kwik_console.store.tables",
    "kwik_console.store.team_tables",
    "kwik_console.events.rollups",
    "kwik_console.events.search",
    "kwik_console.store.token_tables",
)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The schema of the last release made by create_all (11f8716); such databases have no alembic_version.
RELEASE_REVISION = "0001"
# PostgreSQL advisory lock held while migrating ("kwik" in ASCII).
MIGRATION_LOCK_ID = 0x6B77_696B
UPGRADE_COMMAND = "kwik-console db upgrade"
# The payload search index (an FTS5 table and its shadow tables, or a pg_trgm index): made by hand by
# migration 0003, not from the models, so the schema comparison leaves them alone.
HAND_MADE = ("event_fts", "ix_event_body_trgm")


class SchemaBehind(DatabaseUnavailable):
    """Hosted mode: the database is at an older revision than the code, and must be upgraded first."""


class SchemaUnknown(DatabaseUnavailable):
    """The database is at a revision this code does not know: a newer release migrated it."""


def table_metadata() -> sa.MetaData:
    """SQLModel's metadata, with every table of every model module registered."""
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return SQLModel.metadata


def _render_item(type_: str, obj, autogen_context):
    """Autogenerate writes our column types (UTCDateTime, SealedSecret, ...) as the plain SQLAlchemy type they
    store, so a migration never imports the models it predates."""
    if type_ == "type" and isinstance(obj, sa.TypeDecorator):
        stored = obj.impl_instance
        if type(stored).__module__ == "sqlalchemy.sql.sqltypes":
            return f"sa.{stored!r}"
    return False


def _include_object(obj, name, type_, reflected, compare_to):
    """The payload search index is made by hand (`HAND_MADE`)."""
    return not (reflected and compare_to is None and (name or "").startswith(HAND_MADE))


# How env.py configures Alembic, and how `schema_differences` compares: the same rules for both.
# Batch operations, because SQLite alters most things by copying the table.
MIGRATION_OPTIONS = {
    "render_as_batch": True,
    "compare_type": True,
    "render_item": _render_item,
    "include_object": _include_object,
}


def alembic_config(connection: Connection | None = None):
    # alembic is slow to load (0.1 to 0.3 s): not before the schema is used
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts():
    # alembic is slow to load (0.1 to 0.3 s): not before the schema is used
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    return _scripts().get_current_head()


def revisions() -> list:
    """Every migration, oldest first (alembic Script objects)."""
    return list(reversed(list(_scripts().walk_revisions())))


@dataclasses.dataclass(frozen=True)
class SchemaState:
    current: str | None  # the alembic_version row; None for an empty database or one from before migrations
    head: str  # the revision this code needs
    before_migrations: bool  # tables made by a release's create_all, no alembic_version

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def empty(self) -> bool:
        return self.current is None and not self.before_migrations

    @property
    def shown(self) -> str:
        if self.current:
            return self.current
        return "none: made before migrations" if self.before_migrations else "none: empty database"


def _read_state(conn: Connection) -> SchemaState:
    # alembic is slow to load (0.1 to 0.3 s): not before the schema is used
    from alembic.runtime.migration import MigrationContext

    current = MigrationContext.configure(conn).get_current_revision()
    before = current is None and sa.inspect(conn).has_table("webhook")
    state = SchemaState(current=current, head=head_revision(), before_migrations=before)
    if current is not None and current not in {s.revision for s in _scripts().walk_revisions()}:
        raise SchemaUnknown(
            f"Database schema is at revision {current}, which this version of Kwik Console does not know "
            f"(it needs {state.head}): a newer release migrated it; run that release"
        )
    return state


def schema_state(engine: Engine) -> SchemaState:
    with engine.connect() as conn:
        return _read_state(conn)


def init_db(engine: Engine) -> None:
    """Bring the schema to head: in local mode always, in hosted mode only from empty (see the module doc)."""
    state = schema_state(engine)  # no lock, so a start at head writes nothing
    if state.up_to_date:
        return
    if not get_settings().local_mode and not state.empty:
        # Its two reads (the version, then the tables) may straddle another replica's migration committing:
        # no version yet, then its tables, reads as "made before migrations". Read again, after that commit.
        state = schema_state(engine)
        if state.up_to_date:
            return
    if not get_settings().local_mode and not state.empty:
        raise SchemaBehind(
            f"Database schema is behind (revision {state.shown}, code needs {state.head}): run `{UPGRADE_COMMAND}`"
        )
    try:
        upgrade(engine)
    except DatabaseUnavailable:
        raise
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(
            f"Database schema upgrade from revision {state.shown} to {state.head} failed and was rolled back: "
            f"{first_line(getattr(exc, 'orig', None) or exc)}"
        ) from exc


def upgrade(engine: Engine) -> tuple[SchemaState, str]:
    """Migrate to head, one process at a time; returns the state found and the revision reached."""
    # alembic is slow to load (0.1 to 0.3 s): not before the schema is used
    from alembic import command

    with engine.connect() as conn:
        with _migration_lock(conn):
            state = _read_state(conn)  # again: another process may have migrated while we waited
            if not state.up_to_date:
                config = alembic_config(conn)
                if state.before_migrations:
                    command.stamp(config, RELEASE_REVISION)
                command.upgrade(config, "head")
        return state, state.head


@contextlib.contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """One transaction for the whole migration, held by one process at a time."""
    if conn.dialect.name == "postgresql":
        conn.begin()
        # A migration may rewrite big tables and wait for another process's: the sessions' limits are not its.
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
        conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
        # Released when the transaction ends, however it ends.
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_ID)))
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return
    # SQLite: foreign keys off, or a batch migration's copy-and-drop of a table would cascade
    # deletes into its children; the pragma cannot change inside a transaction.
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    conn.commit()
    try:
        conn.begin()
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's write lock, for the whole migration
        try:
            yield
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration broke foreign keys, so it was rolled back: {broken[:5]}")
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
    finally:
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.commit()


def schema_differences(conn: Connection) -> list:
    """What autogenerate would write for this database: empty when the migrations match the models."""
    # alembic is slow to load (0.1 to 0.3 s): not before the schema is used
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext  # (same reason)

    context = MigrationContext.configure(
        conn, opts={k: v for k, v in MIGRATION_OPTIONS.items() if k != "render_as_batch"}
    )
    return compare_metadata(context, table_metadata())


def new_revision(message: str) -> Path:
    """Write the next migration from the models' differences with head (for developers; edit it after)."""
    # alembic is slow to load (0.1 to 0.3 s): not before the schema is used
    from alembic import command

    rev_id = f"{int(head_revision()) + 1:04d}"
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'head.db'}")
        try:
            upgrade(engine)
            with engine.begin() as conn:
                script = command.revision(alembic_config(conn), message=message, autogenerate=True, rev_id=rev_id)
        finally:
            engine.dispose()
    _scripts.cache_clear()
    return Path(script.path)
