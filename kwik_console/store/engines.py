"""How an engine is made: SQLite's pragmas and private file, PostgreSQL's driver and pool, and the ping after idle.

Below both the schema (which migrates a scratch engine) and `db` (which opens the process's engine and brings
its schema to head), so neither imports the other in a circle.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import create_engine

from kwik_console.store import deadline

SQLITE_BUSY_TIMEOUT_MS = 10_000


class DatabaseUnavailable(SQLAlchemyError):
    """The database KWIK_DATABASE_URL names cannot be opened: not running, unreachable, or refused us.

    An SQLAlchemyError, so the console's "database unavailable" handling covers it.
    """


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
    engine = create_engine(url, pool_size=10, max_overflow=10, connect_args=POSTGRES_CONNECT_ARGS)
    deadline.watch(engine)  # first: a ping at checkout is a step's wait too
    _ping_when_idle(engine)
    return engine


# How long a session waits on PostgreSQL before it gives up, rather than waiting for ever on a database or
# path gone quiet: to connect (libpq's connect_timeout covers the whole start-up); a dead peer found by TCP
# keepalives and unacknowledged writes (tcp_user_timeout); a statement, or a lock, that takes too long on
# the server. A migration lifts the last two for its own transaction (schema.py). The path that stays open
# and answers nothing is store/deadline.py's.
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
    "options": "-c statement_timeout=60s -c lock_timeout=15s",
}


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


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__
