"""Schema migrations: a release's database upgrades with every row kept, head matches the models, replicas
starting together never race, hosted mode refuses a database that is behind, the SQLite file is private."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import importlib
import json
import os
import pkgutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import Session, select

import kwik_console
from kwik_console.core import settings
from kwik_console.store import db, schema
from kwik_console.store.tables import Attempt, Delivery, Event, PreviousSecret, Subscription, Webhook
from tests.conftest import ROOT, _drop_postgres_database, _postgres_database, configure

RELEASE = "11f8716"  # the last release made without migrations: its databases come from create_all
RELEASE_TABLES = ("webhook", "subscription", "event", "delivery", "attempt")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Tests here switch modes: leave no cached settings or engines to the next test."""
    yield
    settings.get_settings.cache_clear()
    db._engine_for.cache_clear()


# ---------------------------------------------------------------- building old databases


@functools.cache
def _release_models() -> str | None:
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{RELEASE}:kwik_console/models.py"], capture_output=True, text=True
    )
    return shown.stdout if shown.returncode == 0 else None


# Runs in its own process: the release's models would clash with today's in SQLModel's metadata.
RELEASE_CREATE_ALL = """
import importlib.util, sys
import sqlalchemy as sa
from sqlmodel import SQLModel
spec = importlib.util.spec_from_file_location("release_models", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
SQLModel.metadata.create_all(sa.create_engine(sys.argv[2].replace("postgresql://", "postgresql+psycopg://", 1)))
"""


def make_release_database(url: str, tmp_path: Path) -> None:
    """The database an install of the release has: that release's create_all, no alembic_version."""
    source = _release_models()
    if source is None:
        pytest.skip(f"git history without release {RELEASE}")
    models = tmp_path / "release_models.py"
    models.write_text(source)
    subprocess.run([sys.executable, "-c", RELEASE_CREATE_ALL, str(models), url], check=True, timeout=60)


def make_revision_database(url: str, revision: str) -> None:
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(schema.alembic_config(conn), revision)
    finally:
        engine.dispose()


def _schema(url: str) -> dict:
    """Everything the database says about its own schema, as text, without the version table."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                rows = conn.exec_driver_sql(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                    "AND tbl_name != 'alembic_version'"
                ).all()
                return {(t, n): (tbl, " ".join((sql or "").split())) for t, n, tbl, sql in rows}
            columns = conn.exec_driver_sql(
                "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = 'public' AND table_name != 'alembic_version'"
            ).all()
            indexes = conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename != 'alembic_version'"
            ).all()
            constraints = conn.exec_driver_sql(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text != 'alembic_version'"
            ).all()
            return {
                "columns": sorted(map(tuple, columns)),
                "indexes": sorted(map(tuple, indexes)),
                "constraints": sorted(map(tuple, constraints)),
            }
    finally:
        engine.dispose()


@pytest.fixture
def second_database_url(database_url, tmp_path):
    """Another empty database of the same kind."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second.db'}"
        return
    name = f"kwik_test_second_{uuid.uuid4().hex[:12]}"
    yield _postgres_database(name)
    _drop_postgres_database(name)


def test_revision_0001_is_exactly_the_release_schema(database_url, second_database_url, tmp_path):
    """Release databases are stamped 0001 and upgraded from there, so 0001 must be what that release made."""
    make_release_database(database_url, tmp_path)
    make_revision_database(second_database_url, schema.RELEASE_REVISION)
    release, revision = _schema(database_url), _schema(second_database_url)
    assert revision == release
    # The due index is partial: its WHERE is part of what was compared.
    assert "WHERE (next_attempt_at IS NOT NULL)" in _index_sql(release, "ix_delivery_due").replace(
        "WHERE next_attempt_at IS NOT NULL", "WHERE (next_attempt_at IS NOT NULL)"
    )


def _index_sql(schema: dict, name: str) -> str:
    if "indexes" in schema:  # PostgreSQL
        return dict(schema["indexes"])[name]
    return schema[("index", name)][1]


# ---------------------------------------------------------------- rows kept


def _insert_release_rows(url: str) -> None:
    """Rows in every table of the release, through the database's own reflected schema."""
    engine = db.make_engine(url)
    meta = sa.MetaData()
    try:
        with engine.begin() as conn:
            meta.reflect(conn)
            t = meta.tables
            conn.execute(
                t["webhook"].insert(),
                [
                    dict(
                        id=1,
                        name="Orders",
                        url="https://127.0.0.1:9/orders",
                        status="live",
                        secret="whsec_current1",
                        previous_secret="whsec_legacy_signing",
                        previous_secret_expires_at=NOW + dt.timedelta(hours=5),
                        search_text="orders",
                        created_at=NOW,
                        updated_at=NOW,
                    ),
                    dict(
                        id=2,
                        name="Refunds",
                        url="https://127.0.0.1:9/refunds",
                        status="disabled",
                        secret="whsec_current2",
                        previous_secret="whsec_legacy_expired",
                        previous_secret_expires_at=NOW - dt.timedelta(hours=1),
                        search_text="refunds",
                        created_at=NOW,
                        updated_at=NOW,
                    ),
                    dict(
                        id=3,
                        name="Plain",
                        url="https://127.0.0.1:9/plain",
                        status="live",
                        secret="whsec_current3",
                        previous_secret=None,
                        previous_secret_expires_at=None,
                        search_text="plain",
                        created_at=NOW,
                        updated_at=NOW,
                    ),
                ],
            )
            conn.execute(
                t["subscription"].insert(),
                [
                    dict(webhook_id=1, event_type="payment.created"),
                    dict(webhook_id=1, event_type="refund.created"),
                    dict(webhook_id=2, event_type="refund.created"),
                    dict(webhook_id=3, event_type="payment.created"),
                ],
            )
            conn.execute(
                t["event"].insert(),
                [
                    dict(
                        id="evt_release0000000000000001",
                        type="payment.created",
                        test=False,
                        body='{"type":"payment.created","data":{"amount":1200}}',
                        created_at=NOW,
                    ),
                    dict(
                        id="evt_release0000000000000002",
                        type="refund.created",
                        test=True,
                        body='{"type":"refund.created","data":{}}',
                        created_at=NOW,
                    ),
                ],
            )
            conn.execute(
                t["delivery"].insert(),
                [
                    dict(
                        id=1,
                        event_id="evt_release0000000000000001",
                        webhook_id=1,
                        event_type="payment.created",
                        test=False,
                        status="success",
                        attempt_count=1,
                        last_http_code=200,
                        next_attempt_at=None,
                        lease_until=None,
                        leased_by=None,
                        created_at=NOW,
                        updated_at=NOW,
                    ),
                    dict(
                        id=2,
                        event_id="evt_release0000000000000001",
                        webhook_id=3,
                        event_type="payment.created",
                        test=False,
                        status="retrying",
                        attempt_count=2,
                        last_http_code=503,
                        next_attempt_at=NOW + dt.timedelta(minutes=5),
                        lease_until=None,
                        leased_by=None,
                        created_at=NOW,
                        updated_at=NOW,
                    ),
                    dict(
                        id=3,
                        event_id="evt_release0000000000000002",
                        webhook_id=2,
                        event_type="refund.created",
                        test=True,
                        status="pending",
                        attempt_count=0,
                        last_http_code=None,
                        next_attempt_at=NOW,
                        lease_until=NOW + dt.timedelta(seconds=60),
                        leased_by="worker-1",
                        created_at=NOW,
                        updated_at=NOW,
                    ),
                ],
            )
            conn.execute(
                t["attempt"].insert(),
                [
                    dict(
                        id=1,
                        delivery_id=1,
                        number=1,
                        attempted_at=NOW,
                        http_code=200,
                        duration_ms=42,
                        request_headers={"webhook-id": "evt_release0000000000000001"},
                        response_headers={"content-type": "text/plain"},
                        response_body="ok",
                        error=None,
                    ),
                    dict(
                        id=2,
                        delivery_id=2,
                        number=1,
                        attempted_at=NOW,
                        http_code=None,
                        duration_ms=5000,
                        request_headers={},
                        response_headers={},
                        response_body="",
                        error="timed out",
                    ),
                    dict(
                        id=3,
                        delivery_id=2,
                        number=2,
                        attempted_at=NOW,
                        http_code=503,
                        duration_ms=12,
                        request_headers={"webhook-id": "evt_release0000000000000001"},
                        response_headers={"retry-after": "60"},
                        response_body="busy",
                        error=None,
                    ),
                ],
            )
    finally:
        engine.dispose()


def _rows(url: str, tables=RELEASE_TABLES) -> dict[str, list[dict]]:
    engine = db.make_engine(url)
    meta = sa.MetaData()
    try:
        with engine.connect() as conn:
            meta.reflect(conn, only=list(tables))
            return {
                name: [
                    dict(r._mapping)
                    for r in conn.execute(sa.select(meta.tables[name]).order_by(*meta.tables[name].primary_key.columns))
                ]
                for name in tables
            }
    finally:
        engine.dispose()


@pytest.mark.parametrize("made_by", ["release create_all", "revision 0001"])
def test_upgrade_keeps_every_row_and_moves_the_legacy_previous_secret(made_by, database_url, tmp_path, monkeypatch):
    if made_by == "release create_all":
        make_release_database(database_url, tmp_path)
    else:
        make_revision_database(database_url, schema.RELEASE_REVISION)
    _insert_release_rows(database_url)
    before = _rows(database_url)
    assert all(before[t] for t in RELEASE_TABLES)

    configure(monkeypatch, KWIK_DATABASE_URL=database_url, KWIK_MODE="local")
    engine = db.get_engine()  # a local start upgrades

    assert schema.schema_state(engine).up_to_date
    after = _rows(database_url)
    for webhook in before["webhook"]:
        # Moved to previous_secret, or dropped once expired (0002); the legacy columns themselves dropped (0006).
        del webhook["previous_secret"], webhook["previous_secret_expires_at"]
        # Added by 0005, empty on existing rows: no rate limit, not failing, not the operational webhook.
        webhook.update(
            max_per_second=None,
            rate_next_at=None,
            failing_since=None,
            disabled_reason=None,
            disabled_at=None,
            operational=False,
        )
        webhook.update(all_events=False, headers={})  # added by 0007: the chosen types, no custom headers
    for delivery in before["delivery"]:
        delivery.update(recovery_id=None)
    assert after == before
    moved = _rows(database_url, ["previous_secret"])["previous_secret"]
    assert [(r["webhook_id"], r["secret"]) for r in moved] == [(1, "whsec_legacy_signing")]
    with Session(engine) as session:  # and the code reads what the release wrote
        assert session.exec(select(PreviousSecret)).one().expires_at == NOW + dt.timedelta(hours=5)
        assert [w.secret for w in session.exec(select(Webhook).order_by(Webhook.id))] == [
            "whsec_current1",
            "whsec_current2",
            "whsec_current3",
        ]
        assert len(session.exec(select(Subscription)).all()) == 4
        assert len(session.exec(select(Event)).all()) == 2
        assert session.get(Delivery, 2).retry_at == NOW + dt.timedelta(minutes=5)
        assert session.get(Attempt, 3).response_headers == {"retry-after": "60"}


def test_a_failed_upgrade_changes_nothing(database_url, monkeypatch):
    """One transaction for the whole upgrade, on SQLite as on PostgreSQL."""
    make_revision_database(database_url, schema.RELEASE_REVISION)
    engine = db.make_engine(database_url)
    with engine.begin() as conn:  # a view in the way of a table 0002 creates
        conn.exec_driver_sql("CREATE VIEW previous_secret AS SELECT id FROM webhook")
    configure(monkeypatch, KWIK_DATABASE_URL=database_url, KWIK_MODE="local")

    with pytest.raises(
        db.DatabaseUnavailable,
        match=r"^Database schema upgrade from revision 0001 to \d{4} failed "
        r"and was rolled back: ",
    ):
        db.get_engine()

    with engine.connect() as conn:
        assert schema.schema_state(engine).current == schema.RELEASE_REVISION
        assert not sa.inspect(conn).has_table("member")
    engine.dispose()


def test_the_legacy_previous_secret_columns_come_back_empty_on_a_downgrade_and_go_again(database_url):
    make_revision_database(database_url, "0006")
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO webhook (id, name, url, status, secret, search_text, operational, "
                    "created_at, updated_at) VALUES (1, 'Orders', 'https://127.0.0.1:9/orders', 'live', "
                    "'whsec_current1', 'orders', false, :now, :now)"
                ),
                {"now": NOW},
            )
            conn.execute(sa.text("INSERT INTO subscription (webhook_id, event_type) VALUES (1, 'payment.created')"))
        with engine.connect() as conn, schema._migration_lock(conn):
            command.downgrade(schema.alembic_config(conn), "0005")
        (webhook,) = _rows(database_url, ["webhook"])["webhook"]
        assert (webhook["secret"], webhook["previous_secret"], webhook["previous_secret_expires_at"]) == (
            "whsec_current1",
            None,
            None,
        )
        assert len(_rows(database_url, ["subscription"])["subscription"]) == 1  # the webhook's copy cascaded nothing

        with engine.connect() as conn, schema._migration_lock(conn):
            command.upgrade(schema.alembic_config(conn), "head")
        with engine.connect() as conn:
            assert schema.schema_differences(conn) == []
        assert "previous_secret" not in _rows(database_url, ["webhook"])["webhook"][0]
    finally:
        engine.dispose()


# ---------------------------------------------------------------- head matches the models


def _import_every_module() -> None:
    """Every module of the package, so any table defined anywhere is in SQLModel's metadata."""
    for found in pkgutil.walk_packages(kwik_console.__path__, "kwik_console."):
        if not found.name.startswith("kwik_console.store.migrations"):  # env.py runs only under Alembic
            importlib.import_module(found.name)


def test_head_has_no_difference_from_the_models(kwik):
    """Fails when a model changes without a migration: add one with `kwik-console db revision -m ...`."""
    _import_every_module()
    engine = db.get_engine()  # a fresh database, through every migration
    assert schema.schema_state(engine).up_to_date
    with engine.connect() as conn:
        assert schema.schema_differences(conn) == []


def test_every_module_with_tables_is_known_to_the_migrations():
    """Autogenerate sees only schema.MODEL_MODULES' tables: one missing there would be written as a drop."""
    _import_every_module()
    from sqlmodel import SQLModel

    alone = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from kwik_console.store import schema; "
            "print(json.dumps(sorted(schema.table_metadata().tables)))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(alone.stdout) == sorted(SQLModel.metadata.tables)


# ---------------------------------------------------------------- replicas, hosted mode


def _secret_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


# A replica's start: wait at the gate with everything imported, then open the database.
REPLICA = """
import sys, time
from pathlib import Path
how, ready, gate = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
from kwik_console.store import db
if how == "cli":
    from kwik_console import cli
ready.touch()
while not gate.exists():
    time.sleep(0.005)
if how == "cli":
    sys.exit(cli.main(["db", "upgrade"]))
db.get_engine()
"""


def _wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_replicas_starting_together_on_an_empty_database_all_succeed(database_url, tmp_path):
    """The create_all race (UniqueViolation on pg_type) crashed 5 of 6; under the migration lock, none."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWIK_")}
    gate = tmp_path / "gate"
    replicas = []
    for i in range(6):
        # Half as `kwik-console db upgrade`, half as a hosted console's start, which creates an empty schema.
        how = "cli" if i % 2 else "start"
        replica_env = env | {
            "KWIK_DATABASE_URL": database_url,
            "KWIK_MODE": "hosted" if how == "start" else "local",
            "KWIK_SECRET_KEY": _secret_key(),
        }
        ready = tmp_path / f"ready{i}"
        replicas.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", REPLICA, how, str(ready), str(gate)],
                    env=replica_env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    _wait_for(lambda: all(r.exists() or p.poll() is not None for r, p in replicas), what="replicas ready")
    gate.touch()
    results = [(p.wait(timeout=120), *p.communicate()) for _, p in replicas]

    assert [(code, err) for code, _, err in results] == [(0, "")] * 6
    engine = db.make_engine(database_url)
    try:
        assert schema.schema_state(engine).up_to_date
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
            assert schema.schema_differences(conn) == []
    finally:
        engine.dispose()
    creates = [out for code, out, _ in results if out.startswith("Created the database schema")]
    assert len(creates) <= 1  # one migrated; the others found it done


@pytest.mark.parametrize("made_by", ["revision 0001", "release create_all"])
def test_hosted_mode_refuses_a_database_that_is_behind_naming_the_command(
    made_by, database_url, tmp_path, monkeypatch, capsys
):
    if made_by == "release create_all":
        make_release_database(database_url, tmp_path)
        shown = "none: made before migrations"
    else:
        make_revision_database(database_url, schema.RELEASE_REVISION)
        shown = schema.RELEASE_REVISION
    key = _secret_key()
    configure(monkeypatch, KWIK_DATABASE_URL=database_url, KWIK_MODE="hosted", KWIK_SECRET_KEY=key)
    message = (
        f"Database schema is behind (revision {shown}, code needs {schema.head_revision()}): "
        "run `kwik-console db upgrade`"
    )

    with pytest.raises(schema.SchemaBehind) as refused:
        db.get_engine()
    assert str(refused.value) == message

    assert _cli(capsys, "webhooks", "list") == (1, "", f"kwik-console: error: {message}\n")

    code, out, _ = _cli(capsys, "db", "current", "--json")
    assert (code, json.loads(out)) == (
        0,
        {
            "current": None if made_by == "release create_all" else "0001",
            "head": schema.head_revision(),
            "up_to_date": False,
            "before_migrations": made_by == "release create_all",
        },
    )
    code, out, err = _cli(capsys, "db", "upgrade")
    assert code == 0 and out.startswith("Upgraded the database schema"), err

    assert schema.schema_state(db.get_engine()).up_to_date  # and now it starts
    code, out, _ = _cli(capsys, "db", "history", "--json")
    items = json.loads(out)
    assert [i["revision"] for i in items][:2] == ["0001", "0002"] and all(i["applied"] for i in items)
    assert [i["revision"] for i in items if i["current"] and i["head"]] == [schema.head_revision()]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    from kwik_console.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_database_from_a_newer_release_is_refused(kwik):
    engine = db.get_engine()
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    db._engine_for.cache_clear()
    with pytest.raises(schema.SchemaUnknown, match="revision 9999, which this version of Kwik Console does not know"):
        db.get_engine()


# ---------------------------------------------------------------- the SQLite file


def test_sqlite_file_and_its_new_folders_are_readable_only_by_their_owner(tmp_path, monkeypatch):
    path = tmp_path / "new" / "data" / "kwik.db"
    existing = stat.S_IMODE(tmp_path.stat().st_mode)
    previous_umask = os.umask(0o022)  # the usual umask, which would make them world-readable
    try:
        configure(monkeypatch, KWIK_DATABASE_URL=f"sqlite:///{path}", KWIK_MODE="local")
        engine = db.get_engine()
        with Session(engine) as session:  # a write, so SQLite makes its -wal and -shm files
            session.add(Event(id="evt_private000000000000001", type="payment.created", body="{}", created_at=NOW))
            session.commit()
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in (tmp_path / "new", path.parent, path, Path(f"{path}-wal"), Path(f"{path}-shm"))
            }
    finally:
        os.umask(previous_umask)
        db._engine_for.cache_clear()
        settings.get_settings.cache_clear()
    assert modes == {"new": 0o700, "data": 0o700, "kwik.db": 0o600, "kwik.db-wal": 0o600, "kwik.db-shm": 0o600}
    assert stat.S_IMODE(tmp_path.stat().st_mode) == existing  # a folder we did not make is left as it was


def test_a_hosted_start_whose_reads_straddle_another_replicas_migration_starts(database_url, monkeypatch):
    """A hosted start reads the schema's version, then whether its tables exist. When another replica's
    migration commits between the two, it saw no version and then the tables: "made before migrations"."""
    configure(monkeypatch, KWIK_DATABASE_URL=database_url, KWIK_MODE="hosted", KWIK_SECRET_KEY=_secret_key())
    real_inspect = sa.inspect
    migrated = []

    def inspect_once_another_replica_migrated(subject):
        if not migrated:
            migrated.append(True)
            other = db.make_engine(database_url)
            try:
                schema.upgrade(other)  # another replica, on its own connection, commits the whole schema
            finally:
                other.dispose()
        return real_inspect(subject)

    monkeypatch.setattr(schema.sa, "inspect", inspect_once_another_replica_migrated)
    engine = db.make_engine(database_url)
    try:
        schema.init_db(engine)  # no SchemaBehind
        assert migrated and schema.schema_state(engine).up_to_date
    finally:
        engine.dispose()
