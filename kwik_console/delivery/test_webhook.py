"""Test Webhook: a test event sent to one webhook at once, and its outcome; the same for every face.

The payload is the event's `data` (Kwik writes the envelope around it): the type's sample, or one the sender
edited, which must fit the type's JSON schema; one that does not is refused and nothing is sent. A failing test
is retried like any other delivery. The send is recorded in the audit trail with what came of it.
"""

from __future__ import annotations

import asyncio

from kwik_console.delivery import scheduler
from kwik_console.delivery.types import Outcome
from kwik_console.events import catalog, schemas
from kwik_console.events.publishing import Published, publish
from kwik_console.store.db import session_scope
from kwik_console.team import audit


async def send_test(
    *, webhook_id: int, event_type: str, actor: audit.Actor, data: dict | None = None, client_address: str = ""
) -> tuple[Published, Outcome | None]:
    """Publish a test event (the type's sample, or `data`) to this webhook alone and attempt it now.

    InvalidInput, with nothing sent, if `data` does not fit the type's schema.
    """
    if catalog.is_event_type(event_type):  # an unknown type is publish's to refuse, with the others' words
        if data is None:
            data = catalog.sample_data(event_type)
        else:
            schemas.check_data(event_type, data)
    # Publishing writes to the database: off the event loop, which other pages share.
    published = await asyncio.to_thread(publish, event_type, data, test=True, webhook_id=webhook_id, wake=False)
    outcomes = await scheduler.deliver_now(published.delivery_ids)  # a test makes exactly one delivery
    outcome = outcomes[0] if outcomes else None
    await asyncio.to_thread(_record, webhook_id, event_type, published, outcome, actor, client_address)
    return published, outcome


def _record(webhook_id, event_type, published, outcome, actor, client_address) -> None:
    with session_scope() as session:
        audit.record(
            session=session,
            actor=actor,
            action="test.sent",
            target=f"webhook {webhook_id}",
            detail={
                "event_type": event_type,
                "event_id": published.event.id,
                "status": outcome.status if outcome else None,
                "http_code": outcome.http_code if outcome else None,
            },
            client_address=client_address,
        )
