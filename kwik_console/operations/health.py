"""A webhook's health: pause and resume, the failing warning, and auto-disable after long failure.

`Webhook.failing_since` is kept by the dispatcher as it records attempts (after_record.py):
set at the first failure after a success, cleared by the next success.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from kwik_console.core.clock import utcnow
from kwik_console.core.errors import InvalidInput
from kwik_console.core.settings import get_settings
from kwik_console.operations import alerts, notices
from kwik_console.store.db import session_scope
from kwik_console.store.db_clock import database_now
from kwik_console.store.tables import Webhook, WebhookStatus
from kwik_console.team.audit import CONSOLE, Actor, record
from kwik_console.webhooks import service as webhooks

log = logging.getLogger(__name__)

W = Webhook.__table__.c
# A webhook counts as failing once its attempts have failed for this long, or for half the auto-disable time
# when that is shorter (failing_after).
FAILING_AFTER = dt.timedelta(hours=1)


def failing_after(auto_disable_after: float) -> dt.timedelta:
    """How long after its first failure a webhook counts as failing: for its badge, and its alert email.

    Long enough that a blip which the retries absorb says nothing; short enough to come well before the
    console disables it (`auto_disable_after`, in seconds; 0 when auto-disable is off).
    """
    if auto_disable_after > 0:
        return min(FAILING_AFTER, dt.timedelta(seconds=auto_disable_after / 2))
    return FAILING_AFTER


def pause_webhook(*, session: Session, webhook_id: int, actor: Actor) -> Webhook:
    """Paused: events are still recorded and deliveries created, but none is attempted until resumed."""
    webhook = webhooks.webhook_to_change(session=session, webhook_id=webhook_id)
    if webhook.status == WebhookStatus.PAUSED:
        return webhook
    if webhook.status == WebhookStatus.DISABLED:
        raise InvalidInput({"status": "A Disabled webhook receives nothing to hold back: set it Live, then pause it."})
    webhooks.set_status(session=session, webhook=webhook, status=WebhookStatus.PAUSED)
    record(session=session, actor=actor, action="webhook.paused", target=f"webhook {webhook.id}")
    session.flush()
    return webhook


def resume_webhook(*, session: Session, webhook_id: int, actor: Actor) -> Webhook:
    """Live again (from Paused or Disabled): what waited goes out now, oldest first, within the caps."""
    webhook = webhooks.webhook_to_change(session=session, webhook_id=webhook_id)
    if webhook.status == WebhookStatus.LIVE:
        return webhook
    was = webhook.status
    webhooks.set_status(session=session, webhook=webhook, status=WebhookStatus.LIVE)
    record(session=session, actor=actor, action="webhook.resumed", target=f"webhook {webhook.id}", detail={"was": was})
    session.flush()
    return webhook


@dataclasses.dataclass(frozen=True)
class Health:
    """What the list's badge and the webhook page's banner say."""

    failing_since: dt.datetime | None
    warn: bool  # failing for `failing_after` or more: the failing badge shows
    disabled_reason: str | None
    disabled_at: dt.datetime | None


def health_of(webhook: Webhook, now: dt.datetime | None = None) -> Health:
    now = now or utcnow()
    since = webhook.failing_since
    return Health(
        since,
        since is not None and now - since >= failing_after(get_settings().auto_disable_after),
        shown_reason(webhook.disabled_reason),
        webhook.disabled_at if webhook.status == WebhookStatus.DISABLED else None,
    )


# Reasons recorded before the banner told the failing time itself ended with a server-formatted UTC time.
_OLD_SINCE = re.compile(r" \(since \d{4}-\d\d-\d\d \d\d:\d\d UTC\)(?=\.$)")


def shown_reason(reason: str | None) -> str | None:
    """The reason as a person reads it: the time it started is shown in the viewer's zone beside it, not in it."""
    return _OLD_SINCE.sub("", reason) if reason else reason


def _span(seconds: float) -> str:
    days, hours = int(seconds // 86400), int(seconds % 86400 // 3600)
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h"
    minutes = int(seconds // 60)
    return f"{minutes} min" if minutes else f"{int(seconds)} s"


def disable_failing(engine: Engine, *, after_seconds: float, now: dt.datetime | None = None) -> list[int]:
    """Disable every Live webhook whose attempts have all failed for `after_seconds`; return their ids.

    Each is disabled in its own transaction with its audit entry and its
    `webhook.disabled` notice; the conditional update lets one process only do it.
    """
    if after_seconds <= 0:
        return []
    with engine.connect() as conn:
        # By the database's clock, as failing_since is written (after_record.py).
        cutoff = (now or database_now(conn)) - dt.timedelta(seconds=after_seconds)
        due = list(
            conn.execute(
                select(W.id).where(
                    W.status == WebhookStatus.LIVE.value, W.failing_since.is_not(None), W.failing_since <= cutoff
                )
            ).scalars()
        )
    disabled = []

    for webhook_id in due:
        with session_scope() as session:
            webhook = session.get(Webhook, webhook_id)
            if (
                webhook is None
                or webhook.status != WebhookStatus.LIVE
                or not webhook.failing_since
                or webhook.failing_since > cutoff
            ):
                continue
            since = webhook.failing_since
            reason = f"Every attempt failed for {_span(after_seconds)}."
            moved = session.exec(
                update(Webhook)
                .where(W.id == webhook_id, W.status == WebhookStatus.LIVE.value)
                .values(status=WebhookStatus.DISABLED.value)
            ).rowcount
            if not moved:
                continue
            session.refresh(webhook)
            webhooks.set_status(session=session, webhook=webhook, status=WebhookStatus.DISABLED, reason=reason)
            record(
                session=session,
                actor=CONSOLE,
                action="webhook.auto_disabled",
                target=f"webhook {webhook_id}",
                detail={"reason": reason, "failing_since": since.isoformat()},
            )
            session.flush()
            notices.webhook_disabled(
                session.connection(), webhook, reason=reason, failing_since=since, disabled_at=webhook.disabled_at
            )
            alerts.webhook_disabled(session.connection(), webhook, reason=reason, disabled_at=webhook.disabled_at)
            disabled.append(webhook_id)
            log.warning("webhook %s disabled: %s", webhook_id, reason)
    return disabled
