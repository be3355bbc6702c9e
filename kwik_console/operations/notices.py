"""Operational events: the console's notices about webhooks, sent to the operational webhook.

They are events like any other (catalogue group "operational"), signed the
same way, and never delivered to the webhook they are about. Without an
operational webhook nothing is published.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlmodel import Session, col
from sqlmodel import select as sm_select

from kwik_console.core.clock import iso_millis, utcnow
from kwik_console.core.errors import NotFound
from kwik_console.core.settings import get_settings
from kwik_console.events import catalog
from kwik_console.events.publishing import publish_notice
from kwik_console.store.tables import Delivery, Subscription, Webhook, WebhookStatus
from kwik_console.team.audit import Actor, record
from kwik_console.webhooks import rules
from kwik_console.webhooks import service as webhooks

W = Webhook.__table__.c
D = Delivery.__table__.c
OPERATIONAL_NAME = "Operational webhook"


def _stamp(when: dt.datetime | None) -> str | None:
    return iso_millis(when) if when else None


def _has_operational(conn) -> bool:
    return conn.execute(select(W.id).where(W.operational.is_(True)).limit(1)).first() is not None


def _webhook_data(row, **more) -> dict:
    return {"object": "webhook", "id": row.id, "name": row.name, "url": row.url, "status": row.status, **more}


def _publish(conn, event_type: str, data: dict, about: int | None) -> None:
    if _has_operational(conn):
        publish_notice(conn, event_type, data, about_webhook_id=about)


def webhook_failing(conn, row, outcome, since: dt.datetime) -> None:
    _publish(
        conn,
        "webhook.failing",
        _webhook_data(row, failing_since=_stamp(since), last_http_code=outcome.http_code, last_error=outcome.error),
        row.id,
    )


def webhook_recovered(conn, row, outcome) -> None:
    _publish(
        conn,
        "webhook.recovered",
        _webhook_data(row, failing_since=None, last_http_code=outcome.http_code, last_error=None),
        row.id,
    )


def webhook_disabled(conn, row, *, reason: str, failing_since: dt.datetime | None, disabled_at: dt.datetime) -> None:
    _publish(
        conn,
        "webhook.disabled",
        _webhook_data(
            row,
            status=WebhookStatus.DISABLED.value,
            failing_since=_stamp(failing_since),
            disabled_at=_stamp(disabled_at),
            reason=reason,
        ),
        row.id,
    )


def delivery_exhausted(conn, webhook_id: int, outcome) -> None:
    if not _has_operational(conn):
        return
    row = conn.execute(select(D.event_id, D.event_type).where(D.id == outcome.delivery_id)).first()
    data = {
        "object": "delivery",
        "id": outcome.delivery_id,
        "webhook_id": webhook_id,
        "event_id": row.event_id if row else None,
        "event_type": row.event_type if row else None,
        "attempts": outcome.attempt_number,
        "last_http_code": outcome.http_code,
        "last_error": outcome.error,
    }
    publish_notice(conn, "delivery.exhausted", data, about_webhook_id=webhook_id)


# ---------------------------------------------------------------- the operational webhook (admins)


def operational_webhook(*, session: Session) -> Webhook | None:
    query = sm_select(Webhook).where(col(Webhook.operational).is_(True)).order_by(Webhook.id).limit(1)
    return session.exec(query).first()


def set_operational_webhook(*, session: Session, url: str, actor: Actor) -> Webhook:
    """Create the operational webhook, or change its URL. It receives every operational event type."""
    clean = rules.validate_url(url, local_mode=get_settings().local_mode)
    webhook = operational_webhook(session=session)
    now = utcnow()
    if webhook is None:
        webhook = Webhook(
            name=OPERATIONAL_NAME,
            url=clean,
            status=WebhookStatus.LIVE,
            secret=webhooks.new_secret(),
            search_text=f"{OPERATIONAL_NAME} {clean}".lower(),
            operational=True,
            created_at=now,
            updated_at=now,
        )
        session.add(webhook)
        session.flush()
        session.add_all(Subscription(webhook_id=webhook.id, event_type=t) for t in catalog.operational_type_names())
    else:
        webhook.url, webhook.updated_at = clean, now
        webhook.search_text = f"{OPERATIONAL_NAME} {clean}".lower()
        session.add(webhook)
    session.flush()
    record(session=session, actor=actor, action="operational_webhook.set", target=clean)
    return webhook


def reveal_operational_secret(*, session: Session, webhook_id: int, actor: Actor, copied: bool = False) -> str:
    """The operational webhook's signing secret, for an admin; the read is recorded in the audit trail."""
    webhook = operational_webhook(session=session)
    if webhook is None or webhook.id != webhook_id:
        raise NotFound("No operational webhook is set.")
    record(
        session=session,
        actor=actor,
        action="secret.copied" if copied else "secret.revealed",
        target=webhooks.audit_target(webhook),
    )
    return webhook.secret


def remove_operational_webhook(*, session: Session, actor: Actor) -> bool:
    """Remove the operational webhook with its deliveries; False if there was none."""
    webhook = operational_webhook(session=session)
    if webhook is None:
        return False
    webhooks.remove_webhook_rows(session=session, webhook_id=webhook.id)
    record(session=session, actor=actor, action="operational_webhook.removed", target=webhook.url)
    return True
