"""Engine, sessions, SQLite pragmas and schema creation.

The schema is created on start by `init_db()`: missing tables are created
(SQLModel's `create_all`) and missing indexes added to existing tables; nothing
is altered or dropped. Every entry point (console, worker, CLI) calls it first.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

from sqlalchemy import Engine, event, insert, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlmodel import Session, SQLModel, create_engine

from kwik_console import models  # noqa: F401  (registers the tables)
from kwik_console import member_models  # noqa: F401  (members, sessions, audit trail)
from kwik_console.models import PreviousSecret, Webhook, utcnow
from kwik_console.settings import SettingsError, get_settings

SQLITE_BUSY_TIMEOUT_MS = 10_000
URL_SETTING = "KWIK_DATABASE_URL"


class DatabaseUnavailable(SQLAlchemyError):
    """The database KWIK_DATABASE_URL names cannot be opened: not running, unreachable, or refused us.

    An SQLAlchemyError, so the console's "database unavailable" handling covers it.
    """


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
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
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


@functools.cache
def _engine_for(url: str) -> Engine:
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise SettingsError(
            f"{URL_SETTING} is not a database URL; use sqlite:///path/to/kwik.db or postgresql://user@host/db"
        ) from None
    if backend not in ("sqlite", "postgresql"):
        raise SettingsError(f"{URL_SETTING} must name a SQLite or PostgreSQL database; got {_shown(url)!r}")
    engine = make_engine(url)
    init_db(engine)
    return engine


def get_engine() -> Engine:
    """The process's engine, with the schema in place.

    Raises SettingsError for a URL that is not one Kwik can use, and
    DatabaseUnavailable when the database cannot be opened; each says so in
    one line naming KWIK_DATABASE_URL, without the password.
    """
    url = get_settings().database_url
    try:
        return _engine_for(url)
    except (SettingsError, DatabaseUnavailable):
        raise
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise SettingsError(f"{URL_SETTING} cannot be used ({_shown(url)}): {_first_line(exc)}") from None
    except (SQLAlchemyError, OSError) as exc:
        reason = _first_line(getattr(exc, "orig", None) or exc)
        raise DatabaseUnavailable(
            f"{URL_SETTING} names a database that cannot be opened ({_shown(url)}): {reason}"
        ) from exc


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def init_db(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    # create_all skips the indexes of tables that already exist: add new ones.
    for table in SQLModel.metadata.sorted_tables:
        for index in table.indexes:
            index.create(engine, checkfirst=True)
    _move_legacy_previous_secrets(engine)


def _move_legacy_previous_secrets(engine: Engine) -> None:
    """Earlier versions kept one previous secret on the webhook row: move it to previous_secret.

    Idempotent; the legacy columns stay, unused and empty, until there are migrations.
    """
    legacy = or_(Webhook.previous_secret.is_not(None), Webhook.previous_secret_expires_at.is_not(None))
    with engine.connect() as conn:
        # Read first: a start with nothing to move must not take SQLite's write lock.
        if conn.execute(select(Webhook.id).where(legacy).limit(1)).first() is None:
            return
    with engine.begin() as conn:
        still_signing = select(Webhook.id, Webhook.previous_secret, Webhook.previous_secret_expires_at).where(
            Webhook.previous_secret.is_not(None), Webhook.previous_secret_expires_at > utcnow()
        )
        conn.execute(insert(PreviousSecret).from_select(["webhook_id", "secret", "expires_at"], still_signing))
        conn.execute(update(Webhook).where(legacy).values(previous_secret=None, previous_secret_expires_at=None))


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


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
