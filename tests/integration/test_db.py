"""The database engine's pooled connections on PostgreSQL: pinged before use only after being idle, so a
restarted server's dead connections are replaced, and a busy process pays no round trip for the ping."""

from __future__ import annotations

import os

import psycopg
import pytest
import sqlalchemy as sa

from kwik_console.core import settings
from kwik_console.store import db, engines
from tests.conftest import POSTGRES_ADMIN_URL, _drop_postgres_database, _postgres_database, configure


@pytest.fixture
def postgres(monkeypatch):
    name = f"kwik_test_db_{os.getpid()}"
    url = _postgres_database(name)
    if url is None:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}; .ci/run starts it")
    configure(monkeypatch, KWIK_DATABASE_URL=url, KWIK_MODE="local")
    yield db.get_engine()
    db._engine_for.cache_clear()
    settings.get_settings.cache_clear()
    _drop_postgres_database(name)


def _backend(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()


def _terminate(pid: int) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def test_a_connection_idle_past_the_ping_interval_whose_server_side_died_is_replaced_at_checkout(postgres, monkeypatch):
    engine = postgres
    first = _backend(engine)
    assert _backend(engine) == first  # the pool hands the same connection back
    _terminate(first)
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.0)  # as if it had been idle a while
    assert _backend(engine) != first  # pinged, found dead, replaced: the caller never sees the error


def test_a_connection_used_a_moment_ago_is_not_pinged(postgres, monkeypatch):
    engine = postgres
    first = _backend(engine)
    _terminate(first)
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 3600.0)
    # No ping: the dead connection is used as it is, and the query meets the error (which the ping saves
    # a connection idle for longer from).
    with pytest.raises(sa.exc.OperationalError):
        _backend(engine)
    assert _backend(engine) != first  # SQLAlchemy dropped it on the error: the next checkout is a new one
