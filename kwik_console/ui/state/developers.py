"""The Developers page: the signature checker and verification code for the merchant's endpoint."""

from __future__ import annotations

import dataclasses
import json
import time

import reflex as rx
from sqlmodel import select

from kwik_console.core.clock import utcnow
from kwik_console.core.errors import NotFound
from kwik_console.events import deliveries
from kwik_console.store.db import session_scope
from kwik_console.store.tables import Delivery, Event
from kwik_console.team import access
from kwik_console.ui.state.common import read_secret
from kwik_console.ui.state.operations import OperationalState
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks import signature_check

MAX_BODY = 256 * 1024
PLACEHOLDER = ("your webhook", "https://example.com/kwik/webhooks")


@dataclasses.dataclass
class Finding:
    kind: str = ""
    text: str = ""


@dataclasses.dataclass
class DiffView:
    offset: int = 0
    line: int = 0
    column: int = 0
    sent: str = ""
    pasted: str = ""
    sent_length: int = 0
    pasted_length: int = 0


def _known_secrets(session, webhook) -> list[tuple[str, str]]:
    # How long a previous secret still signs, rather than a time in some zone inside the sentence.
    now = utcnow()
    known = [("the current secret", webhook.secret)]
    for old in webhooks.previous_secrets(session=session, webhook_id=webhook.id, now=now):
        minutes = max(int((old.expires_at - now).total_seconds() // 60), 1)
        left = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
        known.append((f"the previous secret (it signs for another {left})", old.secret))
    return known


def _as_sent(detail) -> dict[str, str]:
    """What the checker's fields want, as the latest attempt sent it: the three headers and the raw body."""
    sent = detail.attempts[-1].request_headers if detail.attempts else {}
    return {
        "check-webhook_id": sent.get("webhook-id", detail.event.id),
        "check-webhook_timestamp": sent.get("webhook-timestamp", ""),
        "check-webhook_signature": sent.get("webhook-signature", ""),
        "check-body": detail.event.body,
    }


def fill_fields(values: dict[str, str]) -> str:
    """A script that sets form fields by id, once they are drawn (they are not bound to the state)."""
    return f"""requestAnimationFrame(() => {{
  for (const [id, value] of Object.entries({json.dumps(values)})) {{
    const field = document.getElementById(id);
    if (field) field.value = value;
  }}
}});"""


class SignatureCheckState(rx.State):
    checked: bool = False
    valid: bool = False
    findings: list[Finding] = []
    diff: DiffView = DiffView()
    has_diff: bool = False
    found: str = ""  # which delivery the webhook-id named, if any
    webhook_name: str = PLACEHOLDER[0]
    webhook_url: str = PLACEHOLDER[1]
    language: str = "Python"
    # Filled in from a delivery ("Check signature" in its details): its webhook, whose secret may be revealed.
    from_delivery: int = 0
    from_webhook: int = 0

    @rx.var
    def samples(self) -> dict[str, str]:
        return signature_check.code_samples(webhook_name=self.webhook_name, url=self.webhook_url)

    @rx.var
    def sample(self) -> str:
        return self.samples.get(self.language, "")

    @rx.event
    def open_page(self):
        self.checked, self.findings, self.has_diff, self.found = False, [], False, ""
        self.from_delivery, self.from_webhook = 0, 0
        query = self.router.url.query_parameters
        then = []
        raw = query.get("webhook", "")
        if raw.isdigit():
            try:
                with session_scope() as session:
                    webhook = webhooks.get_webhook(session=session, webhook_id=int(raw))
                self.webhook_name, self.webhook_url = webhook.name, webhook.url
            except NotFound:
                pass
        raw = query.get("delivery", "")
        if raw.isdigit() and len(raw) < 19:
            try:
                with session_scope() as session:
                    detail = deliveries.get_delivery(session=session, delivery_id=int(raw))
            except NotFound as exc:
                then.append(rx.toast.error(str(exc)))
            else:
                self.from_delivery, self.from_webhook = detail.delivery.id, detail.webhook.id
                self.webhook_name, self.webhook_url = detail.webhook.name, detail.webhook.url
                then.append(rx.call_script(fill_fields(_as_sent(detail))))
        # The operational webhook's card, for admins only (for anyone else the guard would refuse it, with a toast).
        if access.may(access.member().role, access.Action.OPERATIONAL):
            then.append(OperationalState.load)
        return then

    @rx.event
    def fill_secret(self):
        """The secret of the delivery's webhook, into its field: a reveal, by the same rule and with the same
        audit entry as on the webhook's page. The browser gets it in a script; the state never holds it."""
        if not self.from_webhook:
            return None
        try:
            secret = read_secret(self.from_webhook, "secret.revealed")
        except NotFound as exc:
            return rx.toast.error(str(exc))
        return rx.call_script(fill_fields({"check-secret": secret}))

    @rx.event
    def set_language(self, value: str):
        if value in ("Python", "Node", "Go", "PHP"):
            self.language = value

    @rx.event
    def check(self, form: dict):
        msg_id = str(form.get("webhook_id", "")).strip()[:100]
        body = str(form.get("body", ""))[:MAX_BODY].encode()
        sent_body, known = None, []
        self.found = ""
        if msg_id:
            with session_scope() as session:
                event = session.get(Event, msg_id)
                delivery = (
                    event
                    and session.exec(select(Delivery).where(Delivery.event_id == msg_id).order_by(Delivery.id)).first()
                )
                if delivery is not None:
                    webhook = webhooks.get_webhook(session=session, webhook_id=delivery.webhook_id)
                    sent_body, known = event.body.encode(), _known_secrets(session, webhook)
                    self.webhook_name, self.webhook_url = webhook.name, webhook.url
                    self.found = f"Found {msg_id}: a {event.type} delivery to “{webhook.name}”."
        verdict = signature_check.check(
            secret=str(form.get("secret", "")),
            msg_id=msg_id,
            timestamp=str(form.get("webhook_timestamp", "")),
            signature=str(form.get("webhook_signature", "")),
            body=body,
            now=int(time.time()),
            sent_body=sent_body,
            known_secrets=known,
        )
        self.valid, self.checked = verdict.valid, True
        self.findings = [Finding(k, t) for k, t in verdict.findings]
        self.has_diff = verdict.diff is not None
        self.diff = DiffView(**dataclasses.asdict(verdict.diff)) if verdict.diff else DiffView()
