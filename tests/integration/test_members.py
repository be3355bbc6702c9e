"""Members, one-time links, passwords, sign-in throttling and sessions, on a real SQLite file and real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess

import pytest
import sqlalchemy as sa

from kwik_console.core.clock import utcnow
from kwik_console.core.errors import InvalidInput
from kwik_console.store import db
from kwik_console.store.db import session_scope
from kwik_console.store.team_tables import Role
from kwik_console.team import audit, members, sessions
from tests.conftest import KWIK_CONSOLE, TEST_SECRET_KEY, configure

PASSWORD = "kettle orbit lantern 42"


def _raw(sql: str, **params) -> list[tuple]:
    """Read the database directly, as someone with a copy of it would."""
    with db.get_engine().connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(sql), params)]


def _member(email: str, role: str = Role.DEVELOPER, password: str = PASSWORD) -> members.Member:
    with session_scope() as session:
        link = members.invite(session=session, email=email, role=role, actor=audit.CLI)
        return members.accept_link(session=session, token=link.token, password=password, confirm=password)


def _sign_in(email: str, password: str = PASSWORD, address: str = "10.0.0.1") -> str:
    with session_scope() as session:
        return members.sign_in(session=session, email=email, password=password, address=address)[1]


def _check(token: str, now: dt.datetime | None = None):
    with session_scope() as session:
        return sessions.check(session=session, token=token, now=now)


def test_invitation_link_sets_an_argon2id_password_once(kwik):
    with session_scope() as session:
        link = members.invite(session=session, email="Dev@Example.com ", role="developer", actor=audit.CLI)
    assert link.url("https://kwik.example.com").startswith("https://kwik.example.com/accept?token=")
    # The link is stored only as its SHA-256.
    stored = _raw("SELECT token_hash FROM memberlink")
    assert stored == [(hashlib.sha256(link.token.encode()).hexdigest(),)]
    assert link.token not in json.dumps(_raw("SELECT * FROM memberlink"), default=str)
    with session_scope() as session:
        assert members.peek_link(session=session, token=link.token).email == "dev@example.com"
        with pytest.raises(InvalidInput, match="at least 12"):
            members.accept_link(session=session, token=link.token, password="short", confirm="short")
        with pytest.raises(InvalidInput, match="too common"):
            members.accept_link(session=session, token=link.token, password="Password1234", confirm="Password1234")
        with pytest.raises(InvalidInput, match="not the same"):
            members.accept_link(session=session, token=link.token, password=PASSWORD, confirm=PASSWORD + "!")
    with session_scope() as session:
        members.accept_link(session=session, token=link.token, password=PASSWORD, confirm=PASSWORD)
    [(password_hash,)] = _raw("SELECT password_hash FROM member WHERE email = 'dev@example.com'")
    assert password_hash.startswith("$argon2id$v=19$")
    assert PASSWORD not in password_hash
    # Works once.
    with session_scope() as session, pytest.raises(InvalidInput, match="expired or was already used"):
        members.accept_link(session=session, token=link.token, password=PASSWORD, confirm=PASSWORD)


def test_an_expired_link_does_not_work(kwik):
    with session_scope() as session:
        link = members.invite(session=session, email="late@example.com", role="viewer", actor=audit.CLI)
    with db.get_engine().begin() as connection:
        connection.execute(
            sa.text("UPDATE memberlink SET expires_at = :past"),
            {"past": (utcnow() - dt.timedelta(seconds=1)).replace(tzinfo=None)},
        )
    with session_scope() as session:
        assert members.peek_link(session=session, token=link.token) is None
        with pytest.raises(InvalidInput, match="expired"):
            members.accept_link(session=session, token=link.token, password=PASSWORD, confirm=PASSWORD)


def test_sign_in_gives_one_message_for_an_unknown_email_and_a_wrong_password(kwik):
    _member("dev@example.com")
    messages = []
    for email, password in (("nobody@example.com", PASSWORD), ("dev@example.com", "wrong password here")):
        with session_scope() as session, pytest.raises(InvalidInput) as caught:
            members.sign_in(session=session, email=email, password=password, address="10.0.0.9")
        messages.append(caught.value.message)
    assert messages[0] == messages[1] == members.SIGN_IN_FAILED
    # Both failures stayed in the trail, though the sign-in raised.
    assert _raw("SELECT count(*) FROM audit_entry WHERE action = 'sign_in.failed'") == [(2,)]


def test_session_tokens_are_hashed_at_rest(kwik):
    _member("dev@example.com")
    token = _sign_in("DEV@example.com")
    rows = _raw("SELECT token_hash FROM member_session")
    assert rows == [(hashlib.sha256(token.encode()).hexdigest(),)]
    assert token not in json.dumps(_raw("SELECT * FROM member_session"), default=str)
    signed_in = _check(token)
    assert (signed_in.email, signed_in.role) == ("dev@example.com", "developer")


def test_invalid_idle_expired_and_signed_out_sessions_are_refused(kwik, monkeypatch):
    _member("dev@example.com")
    assert _check("made-up-token") is None
    assert _check("") is None

    token = _sign_in("dev@example.com")
    idle = dt.timedelta(minutes=kwik.session_idle_minutes)
    assert _check(token, now=utcnow() + idle - dt.timedelta(seconds=5)) is not None  # activity moves the idle limit
    assert _check(token, now=utcnow() + 2 * idle - dt.timedelta(seconds=10)) is not None
    assert _check(token, now=utcnow() + 3 * idle + dt.timedelta(seconds=1)) is None
    assert _raw("SELECT count(*) FROM member_session") == [(0,)]  # an expired session is deleted

    token = _sign_in("dev@example.com")
    assert _check(token, now=utcnow() + dt.timedelta(hours=kwik.session_max_hours, seconds=1)) is None

    token, other = _sign_in("dev@example.com"), _sign_in("dev@example.com")
    with session_scope() as session:
        sessions.end(session=session, token=token)
    assert _check(token) is None and _check(other) is not None
    with session_scope() as session:
        assert sessions.end_everywhere(session=session, member_id=_check(other).member_id) == 1
    assert _check(other) is None


def test_changing_ones_password_signs_out_the_other_sessions(kwik):
    _member("dev@example.com")
    here, there = _sign_in("dev@example.com"), _sign_in("dev@example.com")
    me = _check(here)
    with session_scope() as session, pytest.raises(InvalidInput, match="current password"):
        members.change_password(
            session=session,
            member_id=me.member_id,
            current="not it at all",
            new="x",
            confirm="x",
            keep_session_id=me.session_id,
        )
    new = "another long passphrase"
    with session_scope() as session:
        ended = members.change_password(
            session=session,
            member_id=me.member_id,
            current=PASSWORD,
            new=new,
            confirm=new,
            keep_session_id=me.session_id,
        )
    assert ended == 1
    assert _check(here) is not None and _check(there) is None
    _sign_in("dev@example.com", new)
    with session_scope() as session, pytest.raises(InvalidInput):
        members.sign_in(session=session, email="dev@example.com", password=PASSWORD, address="10.0.0.1")


def test_throttling_per_account_holds_even_for_the_right_password(kwik):
    _member("dev@example.com")
    for _ in range(members.ACCOUNT_FREE_FAILURES):
        with session_scope() as session, pytest.raises(InvalidInput):
            members.sign_in(session=session, email="dev@example.com", password="wrong guess 123", address="10.0.0.1")
    db._engine_for.cache_clear()  # another replica: the count lives in the database
    with session_scope() as session, pytest.raises(members.Throttled) as caught:
        members.sign_in(session=session, email="dev@example.com", password=PASSWORD, address="10.0.0.2")
    assert 0 < caught.value.seconds <= members.FIRST_LOCK_SECONDS
    assert f"Try again in {caught.value.seconds} s" in str(caught.value)
    [(failures,)] = _raw("SELECT failures FROM sign_in_throttle WHERE key = 'account:dev@example.com'")
    assert failures == members.ACCOUNT_FREE_FAILURES
    # The lock ends: move it into the past, as time would.
    with db.get_engine().begin() as connection:
        connection.execute(
            sa.text("UPDATE sign_in_throttle SET locked_until = :past"),
            {"past": (utcnow() - dt.timedelta(seconds=1)).replace(tzinfo=None)},
        )
    assert _sign_in("dev@example.com")


def test_throttling_per_client_address(kwik):
    _member("dev@example.com")
    for n in range(members.ADDRESS_FREE_FAILURES):
        with session_scope() as session, pytest.raises(InvalidInput):
            members.sign_in(
                session=session, email=f"guess{n}@example.com", password="wrong guess 123", address="203.0.113.7"
            )
    with session_scope() as session, pytest.raises(members.Throttled):
        members.sign_in(session=session, email="dev@example.com", password=PASSWORD, address="203.0.113.7")
    assert _sign_in("dev@example.com", address="198.51.100.1")  # another address is not held up


def test_the_last_admin_cannot_be_demoted_or_removed(kwik):
    first = _member("first@example.com", Role.ADMIN)
    with session_scope() as session:
        with pytest.raises(InvalidInput, match="last admin"):
            members.set_role(session=session, member_id=first.id, role="viewer", actor=audit.CLI)
        with pytest.raises(InvalidInput, match="last admin"):
            members.remove(session=session, member_id=first.id, actor=audit.CLI)
    second = _member("second@example.com", Role.VIEWER)
    token = _sign_in("first@example.com")
    with session_scope() as session:
        members.set_role(session=session, member_id=second.id, role="admin", actor=audit.CLI)
        members.remove(session=session, member_id=first.id, actor=audit.CLI)
    assert _check(token) is None  # a removed member's sessions end with them
    assert _raw("SELECT email, role FROM member") == [("second@example.com", "admin")]


def test_users_cli_creates_the_first_admin_with_a_one_time_link(kwik, cli_env, monkeypatch):
    configure(
        monkeypatch, KWIK_MODE="hosted", KWIK_PUBLIC_URL="https://kwik.example.com", KWIK_SECRET_KEY=TEST_SECRET_KEY
    )
    cli_env.update(KWIK_MODE="hosted", KWIK_PUBLIC_URL="https://kwik.example.com", KWIK_SECRET_KEY=TEST_SECRET_KEY)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*KWIK_CONSOLE, "users", *args], env=cli_env, capture_output=True, text=True, timeout=60)

    created = cli("create", "--email", "owner@example.com", "--role", "admin", "--json")
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)
    assert out["member"]["role"] == "admin" and out["member"]["status"] == "invited"
    assert out["link"].startswith("https://kwik.example.com/accept?token=")
    token = out["link"].split("token=")[1]
    with session_scope() as session:
        members.accept_link(session=session, token=token, password=PASSWORD, confirm=PASSWORD)
    listed = json.loads(cli("list", "--json").stdout)
    assert [(m["email"], m["status"]) for m in listed] == [("owner@example.com", "active")]
    refused = cli("set-role", "owner@example.com", "--role", "viewer")
    assert refused.returncode == 2 and "last admin" in refused.stderr
    again = cli("create", "--email", "OWNER@example.com", "--role", "viewer")
    assert again.returncode == 2 and "already a member" in again.stderr
    reset = cli("reset-password", "owner@example.com", "--json")
    assert reset.returncode == 0 and json.loads(reset.stdout)["link"] != out["link"]
    with session_scope() as session, pytest.raises(InvalidInput):  # the old password is void until a new one is set
        members.sign_in(session=session, email="owner@example.com", password=PASSWORD, address="10.0.0.1")
