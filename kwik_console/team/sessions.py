"""Sign-in sessions: a random token in an HttpOnly cookie, its SHA-256 in the database.

`check()` runs on every state event in hosted mode, so a revoked session
(sign out, sign out everywhere, a password change, a removed member) stops
working at once, even on a page that is already open.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from http.cookies import CookieError, SimpleCookie
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from sqlmodel import Session

from kwik_console.core.clock import utcnow
from kwik_console.core.settings import get_settings
from kwik_console.core.text import CONTROL_CHARACTERS
from kwik_console.store.db import get_engine
from kwik_console.store.team_tables import Member, MemberSession
from kwik_console.team.digests import digest, new_token

COOKIE_NAME = "kwik_session"
# Activity refreshes `last_seen_at` at most this often: one write a minute, not one per event.
TOUCH_EVERY = dt.timedelta(seconds=60)


@dataclasses.dataclass(frozen=True)
class SignedIn:
    """Who is behind a request: what the guard and the audit trail need, nothing more."""

    member_id: int | None
    email: str
    role: str
    session_id: int | None = None


def safe_next(value: str | None) -> str:
    """Only a path on this console: never //evil.example or https://evil.example.

    Browsers drop tab, CR and LF from a URL and read a backslash as a slash, so `/\t/evil.example` would
    become `//evil.example`: any control character or backslash refuses the value, and so does anything
    that parses as more than a path. The same holds once percent-decoded (`/%09/`, `/%2F/`, `/%5C`), in
    case anything on the way decodes it once more.
    """
    if not value or not _only_a_path(value) or not _only_a_path(unquote(value)):
        return "/"
    return value


def _only_a_path(value: str) -> bool:
    # Browsers read any run of slashes after the first as "another host": ///evil.example too.
    if not value.startswith("/") or value.startswith("//") or "\\" in value or CONTROL_CHARACTERS.search(value):
        return False
    parts = urlsplit(value)
    return not (parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"))


def open_session(*, session: Session, member: Member, address: str = "", user_agent: str = "") -> str:
    settings, now, token = get_settings(), utcnow(), new_token()
    session.add(
        MemberSession(
            member_id=member.id,
            token_hash=digest(token),
            created_at=now,
            last_seen_at=now,
            expires_at=now + dt.timedelta(hours=settings.session_max_hours),
            client_address=address[:64],
            user_agent=user_agent[:300],
        )
    )
    session.flush()
    return token


_LOOKUP = (
    sa.select(
        MemberSession.id, MemberSession.last_seen_at, MemberSession.expires_at, Member.id, Member.email, Member.role
    )
    .join(Member, Member.id == MemberSession.member_id)
    .where(MemberSession.token_hash == sa.bindparam("token_hash"))
)


def check(*, session: Session, token: str | None, now: dt.datetime | None = None) -> SignedIn | None:
    """The member signed in with this token, or None if it is unknown, revoked, idle too long or too old."""
    if not token:
        return None
    return _check(session.connection(), token, now or utcnow())


def check_now(token: str | None) -> SignedIn | None:
    """`check` for the guard on every state event: one autocommit read (no BEGIN, no COMMIT), a write only to
    end an expired session or to move `last_seen_at` on (at most once a minute)."""
    if not token:
        return None

    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return _check(connection, token, utcnow())


def _check(connection, token: str, now: dt.datetime) -> SignedIn | None:
    row = connection.execute(_LOOKUP, {"token_hash": digest(token)}).first()
    if row is None:
        return None
    session_id, last_seen, expires_at, member_id, email, role = row
    idle = dt.timedelta(minutes=get_settings().session_idle_minutes)
    if expires_at <= now or last_seen + idle <= now:
        connection.execute(sa.delete(MemberSession).where(MemberSession.id == session_id))
        return None
    if now - last_seen >= TOUCH_EVERY:
        connection.execute(sa.update(MemberSession).where(MemberSession.id == session_id).values(last_seen_at=now))
    return SignedIn(member_id, email, role, session_id)


def end(*, session: Session, token: str | None) -> SignedIn | None:
    """Sign out this browser: its session stops working everywhere at once."""
    signed_in = check(session=session, token=token)
    if token:
        session.exec(sa.delete(MemberSession).where(MemberSession.token_hash == digest(token)))
    return signed_in


def end_everywhere(*, session: Session, member_id: int) -> int:
    return session.exec(sa.delete(MemberSession).where(MemberSession.member_id == member_id)).rowcount


def token_from_cookie_header(header: str | None) -> str | None:
    if not header:
        return None
    jar = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE_NAME)
    return morsel.value if morsel else None


def cookie_attributes() -> dict:
    """For Starlette's set_cookie: HttpOnly, SameSite=Lax, Secure when members use https."""
    settings = get_settings()
    return {
        "key": COOKIE_NAME,
        "httponly": True,
        "samesite": "lax",
        "path": "/",
        "secure": settings.public_url.startswith("https://"),
        "max_age": int(settings.session_max_hours * 3600),
    }
