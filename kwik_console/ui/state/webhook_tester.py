"""The Test Webhook dialog: pick an event type, edit its sample payload, send it at once, show the outcome.

The payload is the event's `data`; the service checks it against the type's schema and sends nothing if it does
not fit, and its reason shows beside the field.
"""

from __future__ import annotations

import json

import reflex as rx

from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.delivery.test_webhook import send_test
from kwik_console.events import catalog, payloads
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
    # The `data` being edited, as JSON text, and why it cannot be sent (beside the field).
    payload: str = ""
    payload_error: str = ""

    @rx.var
    def description(self) -> str:
        event_type = catalog.EVENT_TYPES.get(self.event_type)
        return event_type.description if event_type else ""

    def _sample(self) -> None:
        data = catalog.sample_data(self.event_type) if catalog.is_event_type(self.event_type) else {}
        self.payload, self.payload_error = json.dumps(data, indent=2, ensure_ascii=False), ""

    @rx.event
    def start(self, webhook_id: int, name: str):
        self.webhook_id, self.webhook_name = webhook_id, name
        self.sending, self.sent, self.error, self.outcome, self.open = False, False, "", TestOutcome(), True
        self._sample()

    @rx.event
    def set_open(self, value: bool):
        self.open = value

    @rx.event
    def set_event_type(self, value: str):
        self.event_type, self.sent, self.error = value, False, ""
        self._sample()

    @rx.event
    def set_payload(self, value: str):
        self.payload, self.payload_error = value, ""

    @rx.event
    def reset_payload(self):
        self._sample()

    @rx.event(background=True)
    async def send(self):
        # Background: the attempt may take up to the 15 s timeout, and the
        # rest of the console stays usable meanwhile.
        async with self:
            if self.sending:
                return
            self.sending, self.sent, self.error, self.payload_error = True, False, "", ""
            webhook_id, event_type, text = self.webhook_id, self.event_type, self.payload
        actor = access.actor()  # the guard set it for this task, before the handler began
        payload_error = ""
        try:
            data = payloads.parse_data(text)
            _, sent = await send_test(webhook_id=webhook_id, event_type=event_type, data=data, actor=actor)
            outcome, error = (TestOutcome.of(sent), "") if sent else (TestOutcome(), "No outcome yet.")
        except InvalidInput as exc:
            payload_error = exc.errors.pop("data", "")
            outcome, error = TestOutcome(), " ".join(exc.errors.values())
        except NotFound as exc:
            outcome, error = TestOutcome(), str(exc)
        async with self:
            self.outcome, self.error, self.payload_error, self.sending = outcome, error, payload_error, False
            # Refused for its payload alone: nothing was sent, so there is no outcome to show.
            self.sent = not (payload_error and not error)
