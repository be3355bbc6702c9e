"""Hosted mode's delivery rules: no internal addresses at connect time, signing secrets encrypted at rest.

Every connection these tests make goes to 127.0.0.1; the one host name used
resolves there through a test resolver (DNS for a made-up name cannot run here).
"""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlmodel import Session, select
from standardwebhooks.webhooks import Webhook as Verifier

from kwik_console.delivery import scheduler
from kwik_console.events.publishing import publish
from kwik_console.store import db, secret_box
from kwik_console.store.tables import Attempt, Delivery
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.secrets import rekey
from tests.conftest import configure
from tests.factories import make_hook

KEY_1, KEY_2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
REBIND_HOST = "hooks.test-rebind.invalid"


def send(webhook_id):
    published = publish("payment.created", {"object": "payment"}, test=True, webhook_id=webhook_id, wake=False)
    (outcome,) = asyncio.run(scheduler.deliver_now(published.delivery_ids))
    return outcome


@pytest.fixture
def rebinding_dns(monkeypatch):
    """REBIND_HOST resolves to 127.0.0.1, as a name an attacker points inward after creation would."""
    real = aiohttp.ThreadedResolver.resolve

    async def resolve(self, host, port=0, family=0):
        if host == REBIND_HOST:
            return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": 2, "proto": 0, "flags": 4}]
        return await real(self, host, port, family)

    monkeypatch.setattr(aiohttp.ThreadedResolver, "resolve", resolve)


def test_a_host_that_resolves_inward_passes_creation_and_is_refused_at_connect_time(
    kwik, receiver, monkeypatch, rebinding_dns
):
    configure(monkeypatch, KWIK_MODE="hosted", KWIK_SECRET_KEY=KEY_1)
    port = receiver.base_url.rsplit(":", 1)[1]
    webhook = make_hook(f"https://{REBIND_HOST}:{port}/ok")  # a public-looking name: accepted
    outcome = send(webhook.id)
    assert (outcome.status, outcome.http_code) == ("retrying", None)
    assert outcome.error == "address 127.0.0.1 is not allowed"
    assert outcome.response_body == ""
    assert receiver.requests == []
    with Session(db.get_engine()) as s:
        (attempt,) = s.exec(select(Attempt)).all()
    assert attempt.error == "address 127.0.0.1 is not allowed"  # what the event log shows


def test_an_address_written_in_the_url_is_checked_again_when_sending(kwik, receiver, monkeypatch):
    webhook = make_hook(receiver.url("/ok"))  # allowed when it was made, in local mode
    configure(monkeypatch, KWIK_MODE="hosted", KWIK_SECRET_KEY=KEY_1)
    outcome = send(webhook.id)
    assert outcome.error == "address 127.0.0.1 is not allowed"
    assert receiver.requests == []


def test_redirects_stay_refused_in_hosted_mode(kwik, receiver, monkeypatch):
    webhook = make_hook(receiver.url("/moved"))
    configure(monkeypatch, KWIK_MODE="hosted", KWIK_SECRET_KEY=KEY_1, KWIK_ALLOWED_NETWORKS="127.0.0.0/8")
    outcome = send(webhook.id)
    assert (outcome.status, outcome.http_code) == ("retrying", 301)
    assert [r.path for r in receiver.requests] == ["/moved"]


def stored_text(engine) -> list[str]:
    """Every text value in the webhook and previous_secret tables, read past the ORM."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM webhook")).all()
        rows += conn.execute(sa.text("SELECT * FROM previous_secret")).all()
    return [str(v) for row in rows for v in row]


def test_signing_secrets_are_encrypted_at_rest(kwik, receiver, monkeypatch):
    configure(monkeypatch, KWIK_SECRET_KEY=KEY_1)
    webhook = make_hook(receiver.url("/ok"))
    original = webhook.secret
    with db.session_scope() as s:
        current = webhooks.rotate_secret(session=s, webhook_id=webhook.id, actor=audit.CLI).secret
    values = stored_text(db.get_engine())
    assert not [v for v in values if "whsec_" in v]
    assert sum(v.startswith(secret_box.PREFIX) for v in values) == 2
    # The dispatcher opens them: both the old and the new secret sign.
    assert send(webhook.id).status == "success"
    (request,) = receiver.hits("/ok")
    for secret in (original, current):
        assert Verifier(secret).verify(request.body, request.headers)


def test_a_wrong_key_is_a_clear_error(kwik, monkeypatch):
    configure(monkeypatch, KWIK_SECRET_KEY=KEY_1)
    webhook = make_hook("http://127.0.0.1:9/hook")
    configure(monkeypatch, KWIK_SECRET_KEY=KEY_2)
    with pytest.raises(secret_box.SecretKeyError, match="cannot be decrypted with any key in KWIK_SECRET_KEY"):
        with Session(db.get_engine()) as s:
            s.get(webhooks.Webhook, webhook.id).secret  # noqa: B018


def test_rekeying_while_delivering_fails_no_signature(kwik, receiver, monkeypatch):
    configure(monkeypatch, KWIK_SECRET_KEY=KEY_1)
    hooks = [make_hook(receiver.url("/ok"), name=f"Endpoint {n}") for n in range(5)]
    secrets = {h.id: h.secret for h in hooks}
    # Every process gets the new key first, the old one after it; then the secrets are sealed again.
    configure(monkeypatch, KWIK_SECRET_KEY=f"{KEY_2},{KEY_1}")
    ids: list[int] = []

    async def main():
        async with scheduler.running():
            rekeyed = threading.Thread(target=lambda: [rekey(db.get_engine(), batch=1) for _ in range(5)])
            rekeyed.start()
            while rekeyed.is_alive() or len(ids) < 100:
                ids.extend(await asyncio.to_thread(lambda: publish("payment.created", {}).delivery_ids))
                await asyncio.sleep(0.01)
            for _ in range(400):
                with Session(db.get_engine()) as s:
                    if all(s.get(Delivery, i).status == "success" for i in ids):
                        return True
                await asyncio.sleep(0.05)
            return False

    assert asyncio.run(main())
    assert len(receiver.hits("/ok")) == len(ids)
    for request in receiver.hits("/ok"):
        assert any(_verifies(secret, request) for secret in secrets.values())
    # Sealed with the new key alone now: the old one can be dropped.
    configure(monkeypatch, KWIK_SECRET_KEY=KEY_2)
    with Session(db.get_engine()) as s:
        assert {s.get(webhooks.Webhook, h.id).secret for h in hooks} == set(secrets.values())


def _verifies(secret, request) -> bool:
    try:
        Verifier(secret).verify(request.body, request.headers)
        return True
    except Exception:  # noqa: BLE001  the standardwebhooks package raises its own error types
        return False
