"""Members of a hosted console: invitations, passwords, roles, sign-in with throttling.

Passwords are hashed with argon2id (argon2-cffi's defaults). Sign-in answers
the same message, after about the same time, for an unknown email and for a
wrong password, and counts failures per account and per client address in the
database, so every replica sees the same counts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import secrets
from pathlib import Path

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, func, select

from kwik_console.core.clock import utcnow
from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.core.settings import get_settings
from kwik_console.store.team_tables import LinkPurpose, Member, MemberLink, MemberSession, Role, SignInThrottle
from kwik_console.team import audit, sessions
from kwik_console.team.digests import digest, new_token

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256  # argon2 hashes anything, but a megabyte "password" is only a way to burn CPU
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

SIGN_IN_FAILED = "That email and password don't match a member of this console."
LINK_INVALID = "This link has expired or was already used. Ask an admin of this console for a new one."

# Throttling: free tries within the window, then a lock that doubles with each further failure.
ACCOUNT_FREE_FAILURES = 5
ADDRESS_FREE_FAILURES = 20
THROTTLE_WINDOW = dt.timedelta(minutes=15)
FIRST_LOCK_SECONDS = 30
MAX_LOCK_SECONDS = 15 * 60

_hasher = PasswordHasher()  # argon2id, the library's current recommended cost


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


@functools.cache
def common_passwords() -> frozenset[str]:
    text = (Path(__file__).with_name("common_passwords.txt")).read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


# ---------------------------------------------------------------- rules (pure)


def normalize_email(email: str | None) -> str:
    return (email or "").strip().lower()


def validate_email(email: str | None) -> str:
    email = normalize_email(email)
    if not EMAIL_RE.match(email) or len(email) > 254:
        raise InvalidInput({"email": "Enter an email address like dev@example.com."})
    return email


def validate_role(role: str | None) -> Role:
    try:
        return Role((role or "").strip().lower())
    except ValueError:
        raise InvalidInput({"role": "Role must be admin, developer or viewer."}) from None


# Every way a new password can be refused, by a short code the accept page can carry in its address.
PASSWORD_PROBLEMS = {
    "short": f"Use at least {MIN_PASSWORD_LENGTH} characters.",
    "long": f"Use at most {MAX_PASSWORD_LENGTH} characters.",
    "common": "This password is too common or too easy to guess. Choose another.",
    "repetitive": "This password repeats too few characters. Choose another.",
    "mismatch": "The two passwords are not the same.",
    "link": LINK_INVALID,
}


def password_problem(password: str, *, email: str = "") -> str | None:
    """Why this password cannot be used, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return PASSWORD_PROBLEMS["short"]
    if len(password) > MAX_PASSWORD_LENGTH:
        return PASSWORD_PROBLEMS["long"]
    lowered = password.lower()
    if lowered in common_passwords() or (email and lowered in (email, email.split("@")[0])):
        return PASSWORD_PROBLEMS["common"]
    if len(set(password)) < 4:
        return PASSWORD_PROBLEMS["repetitive"]
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# ---------------------------------------------------------------- members


def get_member(*, session: Session, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound(f"Member {member_id} does not exist.")
    return member


def find_member(*, session: Session, email: str) -> Member:
    member = session.exec(select(Member).where(Member.email == normalize_email(email))).first()
    if member is None:
        raise NotFound(f"No member with the email {normalize_email(email)}.")
    return member


def list_members(*, session: Session) -> list[Member]:
    return list(session.exec(select(Member).order_by(Member.email)))


def count_members(*, session: Session) -> int:
    return session.exec(select(func.count()).select_from(Member)).one()


@dataclasses.dataclass
class Link:
    """A one-time link: `token` exists only here, in memory, to be shown once."""

    member: Member
    token: str
    expires_at: dt.datetime
    purpose: str

    def url(self, public_url: str | None = None) -> str:
        base = public_url or get_settings().console_url
        return f"{base}/accept?token={self.token}"


def _make_link(session: Session, member: Member, purpose: LinkPurpose) -> Link:
    # One live link per member: a new one replaces any earlier unused one.
    session.exec(sa.delete(MemberLink).where(MemberLink.member_id == member.id, MemberLink.used_at.is_(None)))
    token, now = new_token(), utcnow()
    expires = now + dt.timedelta(hours=get_settings().link_hours)
    session.add(
        MemberLink(member_id=member.id, token_hash=digest(token), purpose=purpose, created_at=now, expires_at=expires)
    )
    session.flush()
    return Link(member, token, expires, purpose)


def invite(*, session: Session, email: str, role: str, actor: audit.Actor) -> Link:
    """A new member with no password yet, and the one-time link to choose one."""
    email, role = validate_email(email), validate_role(role)
    if session.exec(select(Member.id).where(Member.email == email)).first() is not None:
        raise InvalidInput({"email": f"{email} is already a member."})
    member = Member(email=email, role=role, created_at=utcnow())
    session.add(member)
    session.flush()
    link = _make_link(session, member, LinkPurpose.INVITE)
    audit.record(
        session=session,
        actor=actor,
        action="member.invited",
        target=email,
        detail={"role": str(role), "link_expires_at": link.expires_at.isoformat(timespec="minutes")},
    )
    return link


def reset_link(*, session: Session, member_id: int, actor: audit.Actor) -> Link:
    """Sign the member out everywhere, void their password, and make a link to choose a new one."""
    member = get_member(session=session, member_id=member_id)
    member.password_hash = None
    session.add(member)
    revoke_all_sessions(session=session, member_id=member.id)
    link = _make_link(session, member, LinkPurpose.RESET)
    audit.record(session=session, actor=actor, action="member.password_reset", target=member.email)
    return link


def _admins(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Member).where(Member.role == Role.ADMIN)).one()


def set_role(*, session: Session, member_id: int, role: str, actor: audit.Actor) -> Member:
    role = validate_role(role)
    member = get_member(session=session, member_id=member_id)
    if member.role == role:
        return member
    if member.role == Role.ADMIN and _admins(session) <= 1:
        raise InvalidInput({"role": f"{member.email} is the last admin. Make another member admin first."})
    before = member.role
    member.role = role
    session.add(member)
    audit.record(
        session=session,
        actor=actor,
        action="member.role_changed",
        target=member.email,
        detail={"before": before, "after": str(role)},
    )
    return member


def remove(*, session: Session, member_id: int, actor: audit.Actor) -> Member:
    member = get_member(session=session, member_id=member_id)
    if member.role == Role.ADMIN and _admins(session) <= 1:
        raise InvalidInput({"member": f"{member.email} is the last admin and cannot be removed."})
    # Sessions and links go with the member (ON DELETE CASCADE, and explicitly for SQLite without the pragma).
    revoke_all_sessions(session=session, member_id=member.id)
    session.exec(sa.delete(MemberLink).where(MemberLink.member_id == member.id))
    session.delete(member)
    audit.record(
        session=session, actor=actor, action="member.removed", target=member.email, detail={"role": member.role}
    )
    return member


def revoke_all_sessions(*, session: Session, member_id: int, keep_session_id: int | None = None) -> int:
    query = sa.delete(MemberSession).where(MemberSession.member_id == member_id)
    if keep_session_id is not None:
        query = query.where(MemberSession.id != keep_session_id)
    return session.exec(query).rowcount


# ---------------------------------------------------------------- one-time links


def _live_link(session: Session, token: str) -> MemberLink | None:
    link = session.exec(select(MemberLink).where(MemberLink.token_hash == digest(token or ""))).first()
    if link is None or link.used_at is not None or link.expires_at <= utcnow():
        return None
    return link


def peek_link(*, session: Session, token: str) -> Member | None:
    """The member a link is for, if it still works; it is not used up."""
    link = _live_link(session, token)
    return session.get(Member, link.member_id) if link else None


def accept_link(*, session: Session, token: str, password: str, confirm: str) -> Member:
    """Set the password through a one-time link and use the link up."""
    link = _live_link(session, token)
    if link is None:
        raise InvalidInput({"token": LINK_INVALID})
    member = session.get(Member, link.member_id)
    if password != confirm:
        raise InvalidInput({"confirm": PASSWORD_PROBLEMS["mismatch"]})
    if problem := password_problem(password, email=member.email):
        raise InvalidInput({"password": problem})
    # Used once: the update only succeeds while the link is still unused, even with two requests at once.
    used = session.exec(
        sa.update(MemberLink).where(MemberLink.id == link.id, MemberLink.used_at.is_(None)).values(used_at=utcnow())
    ).rowcount
    if used != 1:
        raise InvalidInput({"token": LINK_INVALID})
    member.password_hash = hash_password(password)
    session.add(member)
    revoke_all_sessions(session=session, member_id=member.id)
    audit.record(
        session=session,
        actor=audit.Actor(member.id, member.email),
        action="member.password_set",
        target=member.email,
        detail={"through": link.purpose},
    )
    return member


def change_password(
    *, session: Session, member_id: int, current: str, new: str, confirm: str, keep_session_id: int | None
) -> int:
    """Change one's own password; every other session of the member ends. Returns how many ended."""
    member = get_member(session=session, member_id=member_id)
    if not member.password_hash or not _verify(member.password_hash, current):
        raise InvalidInput({"current": "Your current password is not right."})
    if new != confirm:
        raise InvalidInput({"confirm": PASSWORD_PROBLEMS["mismatch"]})
    if problem := password_problem(new, email=member.email):
        raise InvalidInput({"new": problem})
    member.password_hash = hash_password(new)
    session.add(member)
    ended = revoke_all_sessions(session=session, member_id=member.id, keep_session_id=keep_session_id)
    audit.record(
        session=session,
        actor=audit.Actor(member.id, member.email),
        action="member.password_changed",
        target=member.email,
        detail={"other_sessions_ended": ended},
    )
    return ended


def set_email_alerts(*, session: Session, member_id: int, on: bool) -> Member:
    """A member's own choice to be emailed when a webhook starts failing, is disabled or recovers (admins are,
    whatever they choose)."""
    member = get_member(session=session, member_id=member_id)
    member.email_alerts = bool(on)
    session.add(member)
    audit.record(
        session=session,
        actor=audit.Actor(member.id, member.email),
        action="member.email_alerts",
        target=member.email,
        detail={"on": member.email_alerts},
    )
    return member


# ---------------------------------------------------------------- sign-in and throttling


class Throttled(Exception):
    def __init__(self, seconds: int):
        self.seconds = max(1, seconds)
        super().__init__(f"Too many sign-in attempts. Try again in {self.seconds} s.")


def _throttle_keys(email: str, address: str) -> list[tuple[str, int]]:
    return [(f"account:{email}"[:300], ACCOUNT_FREE_FAILURES), (f"address:{address}"[:300], ADDRESS_FREE_FAILURES)]


def _check_throttle(session: Session, keys: list[tuple[str, int]], now: dt.datetime) -> None:
    rows = session.exec(select(SignInThrottle).where(SignInThrottle.key.in_([k for k, _ in keys]))).all()
    waits = [(r.locked_until - now).total_seconds() for r in rows if r.locked_until and r.locked_until > now]
    if waits:
        raise Throttled(int(max(waits) + 0.999))


def _record_failure(session: Session, keys: list[tuple[str, int]], now: dt.datetime) -> None:
    for key, free in keys:
        row = session.get(SignInThrottle, key, with_for_update=True)
        if row is None:
            row = SignInThrottle(key=key, failures=0, window_started_at=now)
        elif row.window_started_at + THROTTLE_WINDOW < now and not (row.locked_until and row.locked_until > now):
            row.failures, row.window_started_at = 0, now  # a quiet window forgives the past
        row.failures += 1
        if row.failures >= free:
            seconds = min(MAX_LOCK_SECONDS, FIRST_LOCK_SECONDS * 2 ** (row.failures - free))
            row.locked_until = now + dt.timedelta(seconds=seconds)
        session.add(row)


def sign_in(*, session: Session, email: str, password: str, address: str, user_agent: str = "") -> tuple[Member, str]:
    """Check the password and open a session. Returns the member and the session token (for the cookie only).

    Raises Throttled, or InvalidInput with SIGN_IN_FAILED whatever was wrong.
    """
    email, now = normalize_email(email), utcnow()
    keys = _throttle_keys(email, address)
    _check_throttle(session, keys, now)
    member = session.exec(select(Member).where(Member.email == email)).first() if email else None
    # An unknown email costs the same argon2 work as a wrong password.
    ok = _verify(member.password_hash if member and member.password_hash else _dummy_hash(), password[:1024])
    if not (member and member.password_hash and ok):
        _record_failure(session, keys, now)
        audit.record(
            session=session,
            actor=audit.Actor(member.id if member else None, email),
            action="sign_in.failed",
            target=email,
            client_address=address,
        )
        session.commit()  # the count and the trail must survive the error raised next
        raise InvalidInput({"password": SIGN_IN_FAILED})
    session.exec(sa.delete(SignInThrottle).where(SignInThrottle.key == keys[0][0]))
    if _hasher.check_needs_rehash(member.password_hash):
        member.password_hash = hash_password(password)
    return member, _open_session(session, member, now, address, user_agent)


def sign_in_by_link(
    *, session: Session, token: str, password: str, confirm: str, address: str, user_agent: str = ""
) -> tuple[Member, str]:
    """Accept an invitation or reset link and sign straight in."""
    member = accept_link(session=session, token=token, password=password, confirm=confirm)
    return member, _open_session(session, member, utcnow(), address, user_agent, detail={"through": "link"})


def _open_session(session: Session, member: Member, now, address: str, user_agent: str, detail=None) -> str:
    """A member signed in: the time noted, a session opened (its token returned) and the sign-in audited."""
    member.last_sign_in_at = now
    session.add(member)
    token = sessions.open_session(session=session, member=member, address=address, user_agent=user_agent)
    audit.record(
        session=session,
        actor=audit.Actor(member.id, member.email),
        action="sign_in.succeeded",
        target=member.email,
        client_address=address,
        detail=detail,
    )
    return token
