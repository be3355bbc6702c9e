"""Resend one delivery now: same event, same `webhook-id`, recorded in the same delivery's history."""

from __future__ import annotations

from sqlmodel import Session, col, update

from kwik_console.core.errors import InvalidInput, NotFound, check_id
from kwik_console.delivery.scheduler import deliver_now
from kwik_console.store.db import session_scope
from kwik_console.store.db_clock import database_now
from kwik_console.store.tables import Delivery, Webhook, WebhookStatus
from kwik_console.team.audit import Actor, record


def prepare_resend(*, session: Session, delivery_id: int, actor: Actor) -> Delivery:
    """Make the delivery due now, in the caller's transaction; then `deliver_now([id])` sends it.

    Its lease guarantees one attempt in flight at most: a delivery on the wire
    is refused here, and if a dispatcher claims it between this and the send,
    `deliver_now` waits for that attempt and reports it. A pending retry is
    brought forward; the schedule goes on from the new outcome.
    """
    delivery = session.get(Delivery, check_id("Delivery", delivery_id))
    if delivery is None:
        raise NotFound(f"Delivery {delivery_id} does not exist.")
    webhook = session.get(Webhook, delivery.webhook_id)
    if webhook.status != WebhookStatus.LIVE:
        label = WebhookStatus(webhook.status).label
        raise InvalidInput({"delivery": f"Webhook {webhook.name!r} is {label}: set its Status to Live to resend."})
    now = database_now(session.connection())  # leases and due times are by the database's clock
    moved = session.exec(
        update(Delivery)
        .where(col(Delivery.id) == delivery.id, col(Delivery.lease_until).is_(None) | (col(Delivery.lease_until) < now))
        .values(next_attempt_at=now, updated_at=now)
    ).rowcount
    if not moved:
        raise InvalidInput(
            {
                "delivery": "An attempt of this delivery is on its way now: its outcome shows here "
                "in a moment. Resend it after that, if it is still needed."
            }
        )
    record(
        session=session,
        actor=actor,
        action="delivery.resent",
        target=f"delivery {delivery.id}",
        detail={"event_id": delivery.event_id, "webhook_id": delivery.webhook_id},
    )
    session.flush()
    return delivery


async def resend(delivery_id: int, *, actor: Actor):
    """Resend now and return the attempt's outcome (types.Outcome), or None if none came in time."""

    with session_scope() as session:
        prepare_resend(session=session, delivery_id=delivery_id, actor=actor)
    outcomes = await deliver_now([delivery_id])
    return outcomes[0] if outcomes else None
