"""Test Webhook: a test event sent to one webhook at once, and its outcome; the same for every face.

A failing test is retried like any other delivery. The send is recorded in the audit trail with what came of it.
"""

from __future__ import annotations

import asyncio

from kwik_console.delivery import scheduler
from kwik_console.delivery.types import Outcome
from kwik_console.events import catalog
from kwik_console.events.publishing import Published, publish
from kwik_console.store.db import session_scope
from kwik_console.team import audit


async def send_test(
    *, webhook_id: int, event_type: str, actor: audit.Actor, data: dict | None = None, client_address: str = ""
) -> tuple[Published, Outcome | None]:
    """Publish a test event (the type's sample, or `data`) to this webhook alone and attempt it now."""
    body = catalog.sample_data(event_type) if data is None and catalog.is_event_type(event_type) else data
    # Publishing writes to the database: off the event loop, which other pages share.
    published = await asyncio.to_thread(publish, event_type, body, test=True, webhook_id=webhook_id, wake=False)
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
