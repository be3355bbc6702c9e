"""Shared fixtures: a real SQLite file per test, settings from the environment, a real receiver."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from kwik_console.core import settings
from kwik_console.runtime import wiring
from kwik_console.store import db, schema
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent

# The engine's hooks, as every process that delivers installs them (the app, the CLI).
wiring.install()


# Hosted mode requires a key for signing secrets at rest; tests use this one.
TEST_SECRET_KEY = "a2V5LWZvci1rd2lrLWNvbnNvbGUtdGVzdHMtb25seS0="


def configure(monkeypatch, **env: str) -> settings.Settings:
    """Point Kwik at this environment for the rest of the test."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings.get_settings.cache_clear()
    return settings.get_settings()


POSTGRES_ADMIN_URL = os.environ.get("KWIK_TEST_POSTGRES_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")


def _postgres_database(name: str, template: str | None = None):
    """Create a PostgreSQL database for one test, empty or a copy of `template`; None if no server is reachable."""
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        return None
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def _drop_postgres_database(name: str):
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> None:
    """Bring an empty database to the code's head revision, as a process's first get_engine() does."""
    engine = db.make_engine(url)
    try:
        schema.upgrade(engine)
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:  # everything into the main file, which is what gets copied
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()


class MigratedDatabases:
    """A database of each kind at the code's head revision, made on first use and once a session.

    Migrating an empty database was most of a test's set-up; a copy of one already migrated is the same
    database, made in a fraction of the time.
    """

    def __init__(self, folder: Path):
        self._folder = folder
        self._sqlite: Path | None = None
        self._postgres: str | None = None

    def sqlite_copy(self, path: Path) -> str:
        if self._sqlite is None:
            template = self._folder / "kwik.db"
            _migrate(f"sqlite:///{template}")
            self._sqlite = template
        shutil.copy(self._sqlite, path)  # with its mode: readable only by its owner, as Kwik makes it
        return f"sqlite:///{path}"

    def postgres_copy(self, name: str) -> str | None:
        if self._postgres is None:
            template = f"kwik_template_{os.getpid()}"
            url = _postgres_database(template)
            if url is None:
                return None
            _migrate(url)
            self._postgres = template
        return _postgres_database(name, template=self._postgres)

    def close(self) -> None:
        if self._postgres is not None:
            _drop_postgres_database(self._postgres)


@pytest.fixture(scope="session")
def migrated_databases(tmp_path_factory):
    databases = MigratedDatabases(tmp_path_factory.mktemp("migrated"))
    yield databases
    databases.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, migrated_databases):
    """Every database-backed test runs on a real SQLite file and on a real PostgreSQL database.

    Empty for a test that takes only this (the migration tests); at the code's head revision for a test
    that takes `kwik`, which is where its first get_engine() would have brought it.
    """
    migrated = "kwik" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "kwik.db"
        yield migrated_databases.sqlite_copy(path) if migrated else f"sqlite:///{path}"
        return
    name = f"kwik_test_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    url = migrated_databases.postgres_copy(name) if migrated else _postgres_database(name)
    if url is None:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}; .ci/run starts it")
    yield url
    db._engine_for.cache_clear()
    _drop_postgres_database(name)


@pytest.fixture
def kwik(monkeypatch, database_url):
    """Settings for a fast test: a real database file, short timeouts and a short retry schedule."""
    s = configure(
        monkeypatch,
        KWIK_DATABASE_URL=database_url,
        KWIK_MODE="local",
        KWIK_RETRY_SCHEDULE="0.3,0.3",
        KWIK_CONNECT_TIMEOUT="1",
        KWIK_ATTEMPT_TIMEOUT="1",
        KWIK_LEASE_SECONDS="3",
        KWIK_POLL_SECONDS="0.2",
    )
    yield s
    settings.get_settings.cache_clear()


@pytest.fixture
def session(kwik):
    with db.session_scope() as s:
        yield s


@pytest.fixture
def receiver():
    r = Receiver(slow_seconds=2.5).start()
    yield r
    r.stop()


@pytest.fixture
def cli_env(kwik) -> dict[str, str]:
    """Environment for a `kwik-console` subprocess sharing this test's database and settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWIK_")}
    env.update({k: v for k, v in os.environ.items() if k.startswith("KWIK_")})
    env["PYTHONUNBUFFERED"] = "1"
    return env


# The installed entry point, as a merchant runs it.
KWIK_CONSOLE = [str(Path(sys.executable).parent / "kwik-console")]
