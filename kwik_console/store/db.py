"""The process's engine and sessions: `get_engine()` opens the database KWIK_DATABASE_URL names once per process,
with its schema at the code's revision (schema.py), and `session_scope()` is a transaction on it.

How an engine is made (pragmas, pool) is in engines.py; short write transactions on hot paths in writes.py.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlmodel import Session

from kwik_console.core.settings import SettingsError, get_settings
from kwik_console.store.engines import DatabaseUnavailable, first_line, make_engine
from kwik_console.store.schema import init_db, table_metadata

URL_SETTING = "KWIK_DATABASE_URL"


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
    # Every model module registered before the first session, whichever of them this process imported:
    # a table's foreign key may name a table another module defines.
    table_metadata()
    engine = _checked_engine(url)
    try:
        init_db(engine)
    except BaseException:
        engine.dispose()  # not cached: the next call tries again, perhaps after an upgrade
        raise
    _opened[url] = engine
    return engine


# Engines opened and migrated in this process, by URL: `opened_engine` never opens one.
_opened: dict[str, Engine] = {}


def get_engine() -> Engine:
    """The process's engine, with the schema at the code's revision (see `schema.init_db`).

    Raises SettingsError for a URL that is not one Kwik can use, and
    DatabaseUnavailable when the database cannot be opened (SchemaBehind when
    hosted mode finds it needs an upgrade); each says so in one line, without
    the password.
    """
    url = get_settings().database_url
    with _opening(url):
        return _engine_for(url)


def opened_engine() -> Engine | None:
    """The process's engine if `get_engine` has opened it already, else None (it opens nothing)."""
    return _opened.get(get_settings().database_url)


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
