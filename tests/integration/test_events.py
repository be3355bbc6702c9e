import json
import time

import pytest
from sqlmodel import func, select

from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.events.publishing import new_event_id, publish
from kwik_console.store.tables import Delivery, Event
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput


def hook(session, name, events, status="live"):
    webhook = webhooks.create_webhook(
        session=session,
        data=WebhookInput(name=name, url=f"https://127.0.0.1:9/{name}/hook", events=events, status=status),
        actor=audit.CLI,
    )
    session.commit()
    return webhook


def test_publish_fans_out_to_live_subscribers_only(session):
    a = hook(session, "a", ["payment.created", "payment.updated"])
    b = hook(session, "b", ["payment.created"])
    hook(session, "c", ["customer.created"])
    hook(session, "d", ["payment.created"], status="disabled")
    published = publish("payment.created", {"object": "payment", "id": "pay_1"}, session=session, wake=False)
    rows = session.exec(select(Delivery).order_by(Delivery.id)).all()
    assert [d.webhook_id for d in rows] == [a.id, b.id]
    assert published.delivery_ids == [d.id for d in rows]
    assert {d.status for d in rows} == {"pending"} and all(d.next_attempt_at for d in rows)

    envelope = json.loads(published.event.body)
    assert envelope["id"] == published.event.id and envelope["id"].startswith("evt_")
    assert envelope["type"] == "payment.created" and envelope["test"] is False
    assert envelope["data"] == {"object": "payment", "id": "pay_1"}
    assert envelope["created_at"].endswith("Z") and len(envelope["created_at"]) == 24


def test_no_subscribers_still_records_the_event(session):
    published = publish("payout.created", {"object": "payout"}, session=session, wake=False)
    assert published.delivery_ids == []
    assert session.get(Event, published.event.id) is not None


def test_test_event_goes_to_the_one_webhook_even_if_not_subscribed(session):
    a = hook(session, "a", ["payment.created"])
    hook(session, "b", ["invoice.created"])
    published = publish(
        "invoice.created", {"object": "invoice"}, test=True, webhook_id=a.id, session=session, wake=False
    )
    (delivery,) = session.exec(select(Delivery)).all()
    assert delivery.webhook_id == a.id and delivery.test is True
    assert json.loads(published.event.body)["test"] is True


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("payment.deleted", {}), {}, "type"),
        (("payment.created", ["not", "an", "object"]), {}, "data"),
        (("payment.created", {}), {"test": True}, "webhook"),
    ],
)
def test_bad_publish_writes_nothing(session, args, kwargs, field):
    hook(session, "a", ["payment.created"])
    with pytest.raises(InvalidInput) as raised:
        publish(*args, session=session, wake=False, **kwargs)
    assert field in raised.value.errors
    assert session.exec(select(func.count()).select_from(Event)).one() == 0


def test_publish_to_missing_or_disabled_webhook(session):
    disabled = hook(session, "d", ["payment.created"], status="disabled")
    with pytest.raises(NotFound):
        publish("payment.created", {}, test=True, webhook_id=999, session=session, wake=False)
    with pytest.raises(InvalidInput, match="Disabled"):
        publish("payment.created", {}, test=True, webhook_id=disabled.id, session=session, wake=False)
    assert session.exec(select(func.count()).select_from(Event)).one() == 0


def test_event_ids_are_unique_and_time_ordered():
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 30 for i in ids)
    time.sleep(0.002)
    assert new_event_id() > max(ids)  # a later millisecond sorts after
