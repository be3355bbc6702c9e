"""The audit trail: who did what, when, with the before and after where that matters.

Entries are written in the same transaction as the change they describe, so
a change that rolls back leaves no entry, and an entry never lacks its change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from sqlmodel import Session, select

from kwik_console.core.clock import utcnow
from kwik_console.store.team_tables import AuditEntry

# Every action the trail records, with the words the Audit trail page shows.
ACTIONS: dict[str, str] = {
    "webhook.created": "Webhook created",
    "webhook.edited": "Webhook edited",
    "webhook.deleted": "Webhook deleted",
    "secret.revealed": "Secret revealed",
    "secret.copied": "Secret copied",
    "secret.rotated": "Secret rotated",
    "test.sent": "Test sent",
    "webhook.paused": "Webhook paused",
    "webhook.resumed": "Webhook resumed",
    "webhook.auto_disabled": "Webhook disabled automatically",
    "delivery.resent": "Delivery resent",
    "recovery.started": "Recovery started",
    "recovery.cancelled": "Recovery cancelled",
    "operational_webhook.set": "Operational webhook set",
    "operational_webhook.removed": "Operational webhook removed",
    "member.invited": "Member invited",
    "member.role_changed": "Role changed",
    "member.removed": "Member removed",
    "member.password_reset": "Password reset link made",
    "member.password_set": "Password set from a link",
    "member.password_changed": "Password changed",
    "member.email_alerts": "Alert emails turned on or off",
    "sign_in.succeeded": "Signed in",
    "sign_in.failed": "Sign-in failed",
    "sign_out": "Signed out",
    "sign_out.everywhere": "Signed out everywhere",
    "access.refused": "Access refused",
    "token.created": "Access token created",
    "token.revoked": "Access token revoked",
    "token.used": "Access token used",
}
PAGE_SIZE = 50

# ------------------------------------------------------------------ details as a person reads them

_ISO = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d")
_SHORT = 120
# Words for the keys details use; any other key reads with its underscores as spaces.
_LABELS = {
    "expires_at": "expires",
    "link_expires_at": "link expires",
    "previous_secret_expires_at": "previous secret signs until",
    "failing_since": "failing since",
    "max_per_second": "max per second",
    "other_sessions_ended": "other sessions ended",
    "event_id": "event",
    "webhook_id": "webhook",
    "on": "alert emails",
}
# What an empty value means, by key: an expiry that is not set never comes.
_EMPTY = {"expires_at": "never", "max_per_second": "no limit"}

Value = str | dt.datetime


@dataclasses.dataclass(frozen=True)
class DetailLine:
    """One line of an entry's details: `label: value`, or `label: was → value` for a change.

    A time stays a datetime, for the page to show in the viewer's time zone.
    """

    label: str
    value: Value
    was: Value | None = None  # set for a change only


def _readable(key: str, value: Any) -> Value:
    if value is None or value == [] or value == "":
        return _EMPTY.get(key, "none")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and _ISO.match(value):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    if isinstance(value, list):
        text = ", ".join(str(_readable(key, v)) for v in value)
    elif isinstance(value, dict):
        text = ", ".join(f"{_label(k)} {_readable(k, v)}" for k, v in value.items())
    else:
        text = str(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


def _label(key: str) -> str:
    return _LABELS.get(key, key.replace("_", " "))


def describe(detail: dict[str, Any]) -> list[DetailLine]:
    """An entry's details as lines a person reads: no `None`, no raw ISO text; only what changed of a change."""
    lines = []
    before, after = detail.get("before"), detail.get("after")
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                lines.append(DetailLine(_label(key), _readable(key, after.get(key)), _readable(key, before.get(key))))
    elif isinstance(after, dict) or isinstance(before, dict):
        # Created (after only) or deleted (before only): what it was.
        lines += [DetailLine(_label(k), _readable(k, v)) for k, v in (after or before).items()]
    elif before is not None or after is not None:
        lines.append(DetailLine("changed", _readable("", after), _readable("", before)))
    lines += [DetailLine(_label(k), _readable(k, v)) for k, v in detail.items() if k not in ("before", "after")]
    return lines


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who acted: a member, or the local console's one implicit admin (no id), or the CLI."""

    member_id: int | None
    email: str


LOCAL = Actor(None, "local admin")
CLI = Actor(None, "kwik-console CLI")
CONSOLE = Actor(None, "Kwik Console")  # what the console does by itself: auto-disable


def entry(
    actor: Actor, action: str, target: str = "", detail: dict[str, Any] | None = None, client_address: str = ""
) -> dict:
    """An entry's values, for `append_entries`."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}: add it to audit.ACTIONS")
    return {
        "at": utcnow(),
        "actor_id": actor.member_id,
        "actor_email": actor.email[:254],
        "action": action,
        "target": target[:300],
        "detail": detail or {},
        "client_address": client_address[:64],
    }


def record(
    *,
    session: Session,
    actor: Actor,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    client_address: str = "",
) -> AuditEntry:
    row = AuditEntry(**entry(actor, action, target, detail, client_address))
    session.add(row)
    return row


_INSERT = AuditEntry.__table__.insert()


def append(
    connection,
    *,
    actor: Actor,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    client_address: str = "",
) -> None:
    """`record` for a hot path on a Core connection (every API request): one prebuilt INSERT, no ORM."""
    connection.execute(_INSERT, entry(actor, action, target, detail, client_address))


def append_entries(connection, entries: list[dict]) -> None:
    """Several `entry`s in one call of the prebuilt INSERT (an executemany): the uses of publishes that share a
    transaction."""
    if entries:
        connection.execute(_INSERT, entries)


@dataclasses.dataclass
class AuditPage:
    items: list[AuditEntry]
    next_before_id: int | None  # pass as before_id for the next (older) page; None on the last page


def list_entries(
    *,
    session: Session,
    actor_email: str | None = None,
    action: str | None = None,
    before_id: int | None = None,
    limit: int = PAGE_SIZE,
) -> AuditPage:
    """Newest first, in keyset pages: stable while new entries arrive."""
    query = select(AuditEntry)
    if actor_email:
        query = query.where(AuditEntry.actor_email == actor_email)
    if action:
        query = query.where(AuditEntry.action == action)
    if before_id:
        query = query.where(AuditEntry.id < before_id)
    rows = list(session.exec(query.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows, rows[-1].id if more else None)


def actor_emails(*, session: Session) -> list[str]:
    """Everyone who appears in the trail, for the member filter (removed members included)."""
    return sorted(e for e in session.exec(select(AuditEntry.actor_email).distinct()) if e)
