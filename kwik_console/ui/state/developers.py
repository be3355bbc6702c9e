"""The Developers page: the signature checker and verification code for the merchant's endpoint."""

from __future__ import annotations

import dataclasses
import time

import reflex as rx
from sqlmodel import select

from kwik_console.core.clock import utcnow
from kwik_console.core.errors import NotFound
from kwik_console.store.db import session_scope
from kwik_console.store.tables import Delivery, Event
from kwik_console.team import access
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
    known = [("the current secret", webhook.secret)]
    for old in webhooks.previous_secrets(session=session, webhook_id=webhook.id, now=utcnow()):
        known.append((f"the previous secret (signing until {old.expires_at:%d %b %H:%M} UTC)", old.secret))
    return known


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

    @rx.var
    def samples(self) -> dict[str, str]:
        return signature_check.code_samples(webhook_name=self.webhook_name, url=self.webhook_url)

    @rx.var
    def sample(self) -> str:
        return self.samples.get(self.language, "")

    @rx.event
    def open_page(self):
        self.checked, self.findings, self.has_diff, self.found = False, [], False, ""
        raw = self.router.url.query_parameters.get("webhook", "")
        if raw.isdigit():
            try:
                with session_scope() as session:
                    webhook = webhooks.get_webhook(session=session, webhook_id=int(raw))
                self.webhook_name, self.webhook_url = webhook.name, webhook.url
            except NotFound:
                pass
        # The operational webhook's card, for admins only (for anyone else the guard would refuse it, with a toast).
        if access.may(access.member().role, access.Action.OPERATIONAL):
            return OperationalState.load

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
