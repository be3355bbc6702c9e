"""Builders the tests share: a webhook made through the service as any face would, and a test sent to it now."""

from __future__ import annotations

import asyncio

from kwik_console.delivery import scheduler
from kwik_console.events.publishing import Published, publish
from kwik_console.store import db
from kwik_console.store.tables import Webhook
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput

PAYMENT = {"object": "payment", "id": "pay_1", "amount": 100}


def make_hook(
    url: str = "https://127.0.0.1:9/kwik", events=("payment.created",), name: str = "Endpoint", **more
) -> Webhook:
    """A webhook created by the CLI's actor, committed; `more` is any other WebhookInput field (status, ...)."""
    with db.session_scope() as s:
        return webhooks.create_webhook(
            session=s, data=WebhookInput(name=name, url=url, events=list(events), **more), actor=audit.CLI
        )


def send_test(webhook_id: int, event_type: str = "payment.created", data: dict | None = None):
    """A test event sent to one webhook at once, as Test Webhook does: (the publish, the attempt's outcome)."""
    published: Published = publish(
        event_type, PAYMENT if data is None else data, test=True, webhook_id=webhook_id, wake=False
    )
    (outcome,) = asyncio.run(scheduler.deliver_now(published.delivery_ids))
    return published, outcome
