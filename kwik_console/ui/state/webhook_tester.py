"""The Test Webhook dialog: pick an event type, preview its sample, send it at once, show the outcome."""

from __future__ import annotations

import json

import reflex as rx

from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.delivery.test_webhook import send_test
from kwik_console.events import catalog
from kwik_console.team import access
from kwik_console.ui.views import TestOutcome

DEFAULT_TYPE = "payment.created"


class TestWebhookState(rx.State):
    open: bool = False
    webhook_id: int = 0
    webhook_name: str = ""
    event_type: str = DEFAULT_TYPE
    sending: bool = False
    sent: bool = False
    outcome: TestOutcome = TestOutcome()
    error: str = ""

    @rx.var
    def preview(self) -> str:
        if not catalog.is_event_type(self.event_type):
            return ""
        return json.dumps(
            {"type": self.event_type, "test": True, "data": catalog.sample_data(self.event_type)}, indent=2
        )

    @rx.var
    def description(self) -> str:
        event_type = catalog.EVENT_TYPES.get(self.event_type)
        return event_type.description if event_type else ""

    @rx.event
    def start(self, webhook_id: int, name: str):
        self.webhook_id, self.webhook_name = webhook_id, name
        self.sending, self.sent, self.error, self.outcome, self.open = False, False, "", TestOutcome(), True

    @rx.event
    def set_open(self, value: bool):
        self.open = value

    @rx.event
    def set_event_type(self, value: str):
        self.event_type, self.sent, self.error = value, False, ""

    @rx.event(background=True)
    async def send(self):
        # Background: the attempt may take up to the 15 s timeout, and the
        # rest of the console stays usable meanwhile.
        async with self:
            if self.sending:
                return
            self.sending, self.sent, self.error = True, False, ""
            webhook_id, event_type = self.webhook_id, self.event_type
        actor = access.actor()  # the guard set it for this task, before the handler began
        try:
            _, sent = await send_test(webhook_id=webhook_id, event_type=event_type, actor=actor)
            outcome, error = (TestOutcome.of(sent), "") if sent else (TestOutcome(), "No outcome yet.")
        except (InvalidInput, NotFound) as exc:
            outcome, error = TestOutcome(), exc.message if isinstance(exc, InvalidInput) else str(exc)
        async with self:
            self.outcome, self.error, self.sending, self.sent = outcome, error, False, True
