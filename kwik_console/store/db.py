"""Engine, sessions, SQLite pragmas, and the schema: Alembic migrations in kwik_console/store/migrations.

Every entry point (console, worker, CLI) calls `get_engine()` first, which
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

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import gc
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import Engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlmodel import Session, SQLModel, create_engine

from kwik_console.core.settings import SettingsError, get_settings

SQLITE_BUSY_TIMEOUT_MS = 10_000
URL_SETTING = "KWIK_DATABASE_URL"

# Every module that defines tables: the migrations are compared against all of them.
MODEL_MODULES = ("kwik_console.store.tables", "kwik_console.store.team_tables", "kwik_console.events.rollups", "kwik_console.events.search",
                 "kwik_console.store.token_tables")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The schema of the last release made by create_all (11f8716); such databases have no alembic_version.
RELEASE_REVISION = "0001"
# PostgreSQL advisory lock held while migrating ("kwik" in ASCII).
MIGRATION_LOCK_ID = 0x6B77_696B
UPGRADE_COMMAND = "kwik-console db upgrade"


class DatabaseUnavailable(SQLAlchemyError):
    """The database KWIK_DATABASE_URL names cannot be opened: not running, unreachable, or refused us.

    An SQLAlchemyError, so the console's "database unavailable" handling covers it.
    """


class SchemaBehind(DatabaseUnavailable):
    """Hosted mode: the database is at an older revision than the code, and must be upgraded first."""


class SchemaUnknown(DatabaseUnavailable):
    """The database is at a revision this code does not know: a newer release migrated it."""


def table_metadata() -> sa.MetaData:
    """SQLModel's metadata, with every table of every model module registered."""
    import importlib

    for module in MODEL_MODULES:
        importlib.import_module(module)
    return SQLModel.metadata


# ---------------------------------------------------------------- engines


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            _create_private_file(Path(parsed.database))
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # WAL lets the console read while the dispatcher writes; NORMAL
            # sync is durable across process crashes, which is what matters here.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver we ship; a bare postgresql:// would look for psycopg2.
        url = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(url, pool_size=10, max_overflow=10)
    _ping_when_idle(engine)
    return engine


# A pooled connection used this recently is taken as alive; one idle longer is pinged before use (a database
# restart drops them all). SQLAlchemy's pool_pre_ping pinged at every checkout: one more round trip for each
# publish, claim and record.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection, record) -> None:
        record.info["kwik_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, record, _proxy) -> None:
        idle_since = record.info.get("kwik_idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise sa.exc.DisconnectionError(str(exc)) from exc  # the pool replaces it, and tries again
            raise


def _create_private_file(path: Path) -> None:
    """Create the SQLite file, and any folder it needs, readable only by their owner.

    Signing secrets live in it. SQLite gives its -wal and -shm files the
    database file's permissions. An existing file or folder is left as it is.
    """
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _checked_engine(url: str) -> Engine:
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise SettingsError(
            f"{URL_SETTING} is not a database URL; use sqlite:///path/to/kwik.db or postgresql://user@host/db"
        ) from None
    if backend not in ("sqlite", "postgresql"):
        raise SettingsError(f"{URL_SETTING} must name a SQLite or PostgreSQL database; got {_shown(url)!r}")
    return make_engine(url)


@functools.cache
def _engine_for(url: str) -> Engine:
    engine = _checked_engine(url)
    try:
        init_db(engine)
    except BaseException:
        engine.dispose()  # not cached: the next call tries again, perhaps after an upgrade
        raise
    _opened[url] = engine
    return engine


# Engines opened and migrated in this process, by URL: `run_short_write` never opens one on the event loop.
_opened: dict[str, Engine] = {}


def get_engine() -> Engine:
    """The process's engine, with the schema at the code's revision (see `init_db`).

    Raises SettingsError for a URL that is not one Kwik can use, and
    DatabaseUnavailable when the database cannot be opened (SchemaBehind when
    hosted mode finds it needs an upgrade); each says so in one line, without
    the password.
    """
    url = get_settings().database_url
    with _opening(url):
        return _engine_for(url)


def migration_engine() -> Engine:
    """An engine for `kwik-console db ...`: the configured database, as it is. The caller disposes of it."""
    url = get_settings().database_url
    with _opening(url):
        engine = _checked_engine(url)
        with engine.connect():  # fail here, in one line, if it cannot be reached
            pass
        return engine


@contextlib.contextmanager
def _opening(url: str) -> Iterator[None]:
    try:
        yield
    except (SettingsError, DatabaseUnavailable):
        raise
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise SettingsError(f"{URL_SETTING} cannot be used ({_shown(url)}): {first_line(exc)}") from None
    except (SQLAlchemyError, OSError) as exc:
        reason = first_line(getattr(exc, "orig", None) or exc)
        raise DatabaseUnavailable(
            f"{URL_SETTING} names a database that cannot be opened ({_shown(url)}): {reason}"
        ) from exc


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


# ---------------------------------------------------------------- schema


def _render_item(type_: str, obj, autogen_context):
    """Autogenerate writes our column types (UTCDateTime, SealedSecret, ...) as the plain SQLAlchemy type they
    store, so a migration never imports the models it predates."""
    if type_ == "type" and isinstance(obj, sa.TypeDecorator):
        stored = obj.impl_instance
        if type(stored).__module__ == "sqlalchemy.sql.sqltypes":
            return f"sa.{stored!r}"
    return False


def _include_object(obj, name, type_, reflected, compare_to):
    """The payload search index (an FTS5 table and its shadow tables, or a pg_trgm index) is made by hand."""
    from kwik_console.events.search import HAND_MADE

    return not (reflected and compare_to is None and (name or "").startswith(HAND_MADE))


# How env.py configures Alembic, and how `schema_differences` compares: the same rules for both.
# Batch operations, because SQLite alters most things by copying the table.
MIGRATION_OPTIONS = {"render_as_batch": True, "compare_type": True, "render_item": _render_item,
                     "include_object": _include_object}


def alembic_config(connection: Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts():
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
        raise SchemaBehind(
            f"Database schema is behind (revision {state.shown}, code needs {state.head}): "
            f"run `{UPGRADE_COMMAND}`"
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
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={k: v for k, v in MIGRATION_OPTIONS.items()
                                                     if k != "render_as_batch"})
    return compare_metadata(context, table_metadata())


def new_revision(message: str) -> Path:
    """Write the next migration from the models' differences with head (for developers; edit it after)."""
    import tempfile

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


# ---------------------------------------------------------------- sessions

# SQLite has one writer at a time. Threads of one process that collide wait in
# SQLite's busy handler, which sleeps in steps of up to 100 ms: a request's tail
# latency. Short write transactions on hot paths (publish, the API's guard) take
# this lock first, so they queue in order instead of sleeping.
_sqlite_writer = threading.Lock()


@contextlib.contextmanager
def one_writer(engine: Engine) -> Iterator[None]:
    """Around a short write transaction: on SQLite, one at a time in this process; elsewhere nothing."""
    if engine.dialect.name != "sqlite":
        yield
        return
    if not _on_the_loop.get():
        with _sqlite_writer:
            yield
        return
    if not _sqlite_writer.acquire(blocking=False):
        raise WriterBusy
    try:
        yield
    finally:
        _sqlite_writer.release()


class WriterBusy(Exception):
    """`run_short_write` on the event loop found SQLite's writer taken: nothing was written, and the work
    goes to a thread, to wait there."""


T = TypeVar("T")

# Set while `run_short_write` runs its work on the event loop's own thread, which must never wait.
_on_the_loop = contextvars.ContextVar("kwik_on_the_loop", default=False)


@contextlib.contextmanager
def short_write(engine: Engine) -> Iterator[Connection]:
    """A short write transaction (`one_writer`, then `engine.begin()`). On the event loop (`run_short_write`)
    it never waits: SQLite's writer taken, here or by another process, raises WriterBusy, rolled back."""
    with one_writer(engine), engine.connect() as connection:
        if not _on_the_loop.get():  # set by run_short_write, for SQLite only
            with connection.begin():
                yield connection
            return
        driver = connection.connection.driver_connection
        driver.execute("PRAGMA busy_timeout=0")  # another process's write lock: refused at once, not waited for
        try:
            with connection.begin():
                yield connection
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
                raise WriterBusy from exc
            raise
        finally:
            if not connection.invalidated:
                try:
                    driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                except sqlite3.Error:
                    connection.invalidate()  # never back to the pool refusing at once; the work's outcome stands


async def run_short_write(work: Callable[[], T]) -> T:
    """`work()`, a short write transaction in `short_write`, for an async route. On SQLite it runs on the
    event loop's own thread when the writer is free: SQLite works in this process's CPU, one writer at a
    time, so a thread adds only handoffs of the GIL between it and the loop (bench/api.py, alternating:
    POST /events 0.46 to 0.50 of in-process publishing, against 0.31 to 0.34 on a thread). Anything that
    would wait for the writer goes to a thread instead. So does every transaction on PostgreSQL: its round
    trips would stall the loop (0.28 and 0.30 on the loop, against 0.34 and 0.45)."""
    engine = _opened.get(get_settings().database_url)
    checkedin = getattr(engine.pool, "checkedin", None) if engine is not None else None
    # On the loop only with SQLite's engine open and a connection idle in its pool: never a migration, a new
    # connection or a wait for one there (the first publish of a process goes to a thread).
    if engine is not None and engine.dialect.name == "sqlite" and checkedin is not None and checkedin() > 0:
        on_the_loop = _on_the_loop.set(True)
        try:
            return work()
        except WriterBusy:
            pass
        finally:
            _on_the_loop.reset(on_the_loop)
    return await asyncio.get_running_loop().run_in_executor(None, work)


# An event loop and the threads that do its database work hand the GIL to each other all
# the time; at Python's default 5 ms switch interval every database step queues for it
# (bench/delivery.py: publish -> first attempt took seconds at 150 events/s).
GIL_SWITCH_SECONDS = 0.0005


def short_gil_turns() -> None:
    """For a process whose event loop hands database work to threads: the scheduler's, the API's."""
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_SECONDS))


# What the first requests and looks load (the database driver, migrations, the HTTP client):
# frozen too, this long after start-up.
FREEZE_AGAIN_AFTER_SECONDS = 10.0


@functools.cache  # once per process: what is frozen is never collected
def freeze_startup_objects() -> None:
    """For a long-running process, once its code is loaded: Python's full collections walk every
    object alive, most of them modules, classes and caches that live as long as the process; in
    the API's process each paused every request for 70 to 130 ms (bench/api.py). Frozen, they are
    left out of every later collection."""

    def freeze() -> None:
        gc.collect()
        gc.freeze()

    freeze()
    again = threading.Timer(FREEZE_AGAIN_AFTER_SECONDS, freeze)
    again.daemon = True
    again.start()


@contextlib.contextmanager
def session_scope():
    """A session that commits on success and rolls back on any error."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# Last, so a model module may import from this one: sessions may use any model once the engine exists.
table_metadata()
