"""Access tokens for the REST API: create (shown once), list, revoke, and check on every request.

A token is `kwik_` followed by 40 letters and digits: the prefix names the kind of key,
so secret scanners and people can tell one when they see it (like Stripe's `sk_live_`).
The database keeps only its SHA-256 digest, never the token itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
import string

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kwik_console.core.clock import utcnow
from kwik_console.core.errors import InvalidInput, NotFound, check_all, check_id
from kwik_console.core.text import check_text
from kwik_console.store.token_tables import AccessToken
from kwik_console.team import audit
from kwik_console.team.digests import digest

TOKEN_PREFIX = "kwik_"
TOKEN_LENGTH = 40  # random characters after the prefix: about 238 bits
SHOWN_PREFIX = 12  # "kwik_" and 7 characters: how a token is named in lists and the audit trail
NAME_MAX = 100
EXPIRY_MAX_DAYS = 3650
# What each scope lets a token do; access.SCOPE_ACTIONS maps them onto the console's actions.
SCOPES = ("read", "write", "publish")
SCOPE_HELP = {
    "read": "Read webhooks, event types, deliveries and the event stream. Never a signing secret.",
    "write": "Everything read allows, plus create, edit and delete webhooks, send tests, reveal and rotate "
    "signing secrets.",
    "publish": "Publish events with POST /events.",
}
_ALPHABET = string.ascii_letters + string.digits
TOKEN_PATTERN = re.compile(rf"^{TOKEN_PREFIX}[A-Za-z0-9]{{{TOKEN_LENGTH}}}$")


@dataclasses.dataclass(frozen=True)
class NewToken:
    """A token just made: `token` is the only time anyone sees it."""

    record: AccessToken
    token: str


@dataclasses.dataclass(frozen=True)
class TokenCaller:
    """Who is behind an API request made with a token: what the guard and the audit trail need."""

    id: int
    name: str
    prefix: str
    scopes: frozenset[str]

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(None, f"token {self.name} ({self.prefix}…)")


def scope_list(scopes: str) -> list[str]:
    return [s for s in scopes.split(",") if s]


# ---------------------------------------------------------------- rules (pure)


def validate_scopes(scopes) -> list[str]:
    if isinstance(scopes, str):
        scopes = scopes.split(",")
    chosen = {s.strip().lower() for s in (scopes or []) if isinstance(s, str) and s.strip()}
    if not chosen:
        raise InvalidInput({"scopes": "Choose at least one scope: read, write or publish."})
    unknown = sorted(chosen - set(SCOPES))
    if unknown:
        raise InvalidInput({"scopes": f"Unknown scope: {', '.join(unknown)}. Scopes are read, write and publish."})
    return [s for s in SCOPES if s in chosen]


def validate_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput({"name": "Name is required."})
    if len(name) > NAME_MAX:
        raise InvalidInput({"name": f"Name must be at most {NAME_MAX} characters (it has {len(name)})."})
    return check_text("name", "Name", name)


def validate_expiry_days(days) -> int | None:
    if days is None or days == "" or days == 0:
        return None
    try:
        value = int(days)
    except (TypeError, ValueError):
        raise InvalidInput({"expires_in_days": "Expiry must be a whole number of days."}) from None
    if not 1 <= value <= EXPIRY_MAX_DAYS:
        raise InvalidInput(
            {
                "expires_in_days": f"Expiry must be between 1 and {EXPIRY_MAX_DAYS} days, "
                "or none for a token that does not expire."
            }
        )
    return value


def new_token_text() -> str:
    return TOKEN_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(TOKEN_LENGTH))


# ---------------------------------------------------------------- service functions


def create_token(*, session: Session, name: str, scopes, expires_in_days=None, actor: audit.Actor) -> NewToken:
    clean = check_all(
        (
            ("name", validate_name, name),
            ("scopes", validate_scopes, scopes),
            ("expires_in_days", validate_expiry_days, expires_in_days),
        )
    )
    now, text = utcnow(), new_token_text()
    days = clean["expires_in_days"]
    record = AccessToken(
        name=clean["name"],
        prefix=text[:SHOWN_PREFIX],
        token_hash=digest(text),
        scopes=",".join(clean["scopes"]),
        created_at=now,
        created_by=actor.email[:254],
        expires_at=now + dt.timedelta(days=days) if days else None,
    )
    session.add(record)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="token.created",
        target=_target(record),
        detail={
            "scopes": scope_list(record.scopes),
            "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        },
    )
    return NewToken(record, text)


def list_tokens(*, session: Session) -> list[AccessToken]:
    """Every token, newest first; revoked ones too, so the list shows what was revoked and when."""
    return list(session.exec(select(AccessToken).order_by(col(AccessToken.id).desc())))


def get_token(*, session: Session, token_id: int) -> AccessToken:
    record = session.get(AccessToken, check_id("Token", token_id))
    if record is None:
        raise NotFound(f"Token {token_id} does not exist.")
    return record


def revoke_token(*, session: Session, token_id: int, actor: audit.Actor) -> AccessToken:
    """The token stops working at once, on every replica: each request looks it up."""
    record = get_token(session=session, token_id=token_id)
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.add(record)
        audit.record(session=session, actor=actor, action="token.revoked", target=_target(record))
    return record


def _target(record: AccessToken) -> str:
    return f"token {record.id} ({record.name}, {record.prefix}…)"


class TokenRefused(Exception):
    """A token that is malformed, unknown, revoked or expired; the message says which, for the caller."""


# `last_used_at` moves on at most this often: one write a minute per token, not one per request.
TOUCH_EVERY = dt.timedelta(seconds=60)
_LOOKUP = sa.select(
    AccessToken.id,
    AccessToken.name,
    AccessToken.prefix,
    AccessToken.scopes,
    AccessToken.expires_at,
    AccessToken.revoked_at,
    AccessToken.last_used_at,
).where(AccessToken.token_hash == sa.bindparam("token_hash"))
_TOUCH = (
    sa.update(AccessToken).where(AccessToken.id == sa.bindparam("token_id")).values(last_used_at=sa.bindparam("now"))
)


def check(connection, token: str, now: dt.datetime) -> TokenCaller:
    """The caller behind `token`, or TokenRefused. Marks it used (`last_used_at`, to the minute) in the same
    transaction."""
    if not TOKEN_PATTERN.match(token):
        raise TokenRefused("This is not a Kwik access token: they look like kwik_ followed by 40 letters and digits.")
    row = connection.execute(_LOOKUP, {"token_hash": digest(token)}).first()
    if row is None:
        raise TokenRefused("This access token is unknown: it was never made here, or it was deleted.")
    token_id, name, prefix, scopes, expires_at, revoked_at, last_used_at = row
    if revoked_at is not None:
        raise TokenRefused(f"This access token ({prefix}…) was revoked.")
    if expires_at is not None and expires_at <= now:
        raise TokenRefused(f"This access token ({prefix}…) expired.")
    if last_used_at is None or now - last_used_at >= TOUCH_EVERY:
        connection.execute(_TOUCH, {"token_id": token_id, "now": now})
    return TokenCaller(token_id, name, prefix, frozenset(scope_list(scopes)))
