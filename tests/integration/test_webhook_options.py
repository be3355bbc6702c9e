"""A webhook's options: "All events" (including types added to the catalogue later) and custom headers,
through the service, the engine, the API and the CLI, against a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import warnings

import pytest
from sqlmodel import select
from standardwebhooks.webhooks import Webhook as Verifier

from kwik_console.cli import main
from kwik_console.core.errors import InvalidInput
from kwik_console.delivery import scheduler
from kwik_console.delivery.resend import resend
from kwik_console.events import catalog
from kwik_console.events.publishing import publish, publish_notice, publish_together
from kwik_console.operations import notices
from kwik_console.store import db
from kwik_console.store.tables import Attempt, Delivery, Subscription, Webhook
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.factories import PAYMENT, make_hook, send_test

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from kwik_console.api import create_app  # noqa: E402

NEW_TYPE = "refund.created"


@pytest.fixture
def new_type(monkeypatch):
    """A type added to the catalogue after the webhooks were made, as a release that adds one does."""
    assert not catalog.is_event_type(NEW_TYPE)
    added = catalog.EventType(NEW_TYPE, "A refund was created.", {"object": "refund", "id": "re_1", "amount": 250})
    monkeypatch.setitem(catalog.EVENT_TYPES, NEW_TYPE, added)  # removed again when the test ends
    return NEW_TYPE


def deliver(delivery_ids):
    return asyncio.run(scheduler.deliver_now(delivery_ids))


def rows(model, **where):
    with db.session_scope() as s:
        return s.exec(select(model).filter_by(**where)).all()


# ---------------------------------------------------------------- all events


def test_an_all_events_webhook_receives_a_type_added_to_the_catalogue_after_it_was_made(kwik, receiver, monkeypatch):
    everything = make_hook(receiver.url("/ok"), events=["*"], name="Everything")
    chosen = make_hook(receiver.url("/fail"), events=["payment.created"], name="Payments only")
    assert everything.all_events and not chosen.all_events
    assert {w.id: w.headers for w in rows(Webhook)} == {everything.id: {}, chosen.id: {}}  # none given: none stored
    assert rows(Subscription, webhook_id=everything.id) == []  # a flag, not a list of today's types

    added = catalog.EventType(NEW_TYPE, "A refund was created.", {"object": "refund", "id": "re_1", "amount": 250})
    monkeypatch.setitem(catalog.EVENT_TYPES, NEW_TYPE, added)
    published = publish(NEW_TYPE, {"object": "refund", "id": "re_9", "amount": 250}, wake=False)

    assert len(published.delivery_ids) == 1  # the all-events webhook's only, not the payments one's
    (outcome,) = deliver(published.delivery_ids)
    assert (outcome.status, outcome.http_code) == ("success", 200)
    (request,) = receiver.hits("/ok")
    sent = Verifier(everything.secret).verify(request.body, request.headers)
    assert sent["type"] == NEW_TYPE and sent["data"]["id"] == "re_9"
    assert receiver.hits("/fail") == []


def test_all_events_in_a_batch_and_to_one_webhook(kwik, receiver, new_type):
    everything = make_hook(receiver.url("/ok"), events=["*"])
    chosen = make_hook(receiver.url("/ok"), events=["payment.created"])
    with db.session_scope() as s:
        out = publish_together(s, [(new_type, {"id": "re_1"}), ("payment.created", PAYMENT)])
        s.commit()
    made = {p.event.type: p.delivery_ids for p in out}
    assert {d.webhook_id for d in rows(Delivery, event_type=new_type)} == {everything.id}
    assert {d.webhook_id for d in rows(Delivery, event_type="payment.created")} == {everything.id, chosen.id}
    assert len(made[new_type]) == 1 and len(made["payment.created"]) == 2

    # A real event addressed to one webhook needs it to be subscribed: "All events" is.
    assert len(publish(new_type, {"id": "re_2"}, webhook_id=everything.id, wake=False).delivery_ids) == 1
    assert publish(new_type, {"id": "re_3"}, webhook_id=chosen.id, wake=False).delivery_ids == []


def test_operational_events_never_go_to_an_all_events_webhook(kwik, receiver):
    everything = make_hook(receiver.url("/ok"), events=["*"])
    with db.session_scope() as s:
        operational = notices.set_operational_webhook(session=s, url=receiver.url("/ok"), actor=audit.CLI)
        operational_id = operational.id
    with db.get_engine().begin() as conn:
        made = publish_notice(conn, "webhook.failing", {"object": "webhook", "id": 99}, about_webhook_id=99)
    assert [d.webhook_id for d in rows(Delivery, event_type="webhook.failing")] == [operational_id]
    assert len(made) == 1 and everything.id != operational_id
    # Nor can a merchant ask for them by name next to "*".
    with pytest.raises(InvalidInput) as refused:
        make_hook(events=["*", "webhook.failing"])
    assert "must be alone" in refused.value.errors["events"]


def test_switching_between_all_and_selected_events(kwik):
    hook = make_hook(events=["payment.created", "invoice.created"])
    with db.session_scope() as s:
        webhooks.update_webhook(session=s, webhook_id=hook.id, data=WebhookInput(events=["*"]), actor=audit.CLI)
    assert rows(Subscription, webhook_id=hook.id) == []
    with db.session_scope() as s:
        assert webhooks.webhook_events(session=s, webhook_id=hook.id) == ["*"]
        webhooks.update_webhook(
            session=s, webhook_id=hook.id, data=WebhookInput(events=["customer.created"]), actor=audit.CLI
        )
    with db.session_scope() as s:
        assert s.get(Webhook, hook.id).all_events is False
        assert webhooks.webhook_events(session=s, webhook_id=hook.id) == ["customer.created"]
        trail = audit.list_entries(session=s, action="webhook.edited", limit=10).items
    assert [e.detail["after"]["events"] for e in reversed(trail)] == [["*"], ["customer.created"]]


# ---------------------------------------------------------------- custom headers


HEADERS = {"X-Team": "orders", "Authorization": "Bearer tok_123"}


def test_custom_headers_arrive_with_each_delivery_and_are_recorded(kwik, receiver):
    hook = make_hook(receiver.url("/ok"), events=["payment.created"], headers=HEADERS)
    published = publish("payment.created", PAYMENT, wake=False)
    (outcome,) = deliver(published.delivery_ids)
    assert outcome.status == "success"
    (request,) = receiver.hits("/ok")
    assert request.headers["x-team"] == "orders" and request.headers["authorization"] == "Bearer tok_123"
    assert Verifier(hook.secret).verify(request.body, request.headers)["id"] == published.event.id
    (attempt,) = rows(Attempt, delivery_id=outcome.delivery_id)
    assert attempt.request_headers["X-Team"] == "orders"
    assert attempt.request_headers["webhook-id"] == published.event.id

    # Resend and Test Webhook carry them too.
    asyncio.run(resend(outcome.delivery_id, actor=audit.CLI))
    send_test(hook.id)
    assert [r.headers.get("x-team") for r in receiver.hits("/ok")] == ["orders"] * 3
    # The audit trail keeps the names, never the values (an Authorization value is a credential).
    with db.session_scope() as s:
        (created,) = audit.list_entries(session=s, action="webhook.created", limit=5).items
    assert created.detail["after"]["headers"] == ["Authorization", "X-Team"]
    assert "tok_123" not in json.dumps(created.detail)


def test_changing_and_clearing_headers(kwik, receiver):
    hook = make_hook(receiver.url("/ok"), headers={"X-One": "1"})
    with db.session_scope() as s:
        webhooks.update_webhook(session=s, webhook_id=hook.id, data=WebhookInput(name="Renamed"), actor=audit.CLI)
        assert s.get(Webhook, hook.id).headers == {"X-One": "1"}  # not given: unchanged
        webhooks.update_webhook(
            session=s, webhook_id=hook.id, data=WebhookInput(headers={"X-Two": "2"}), actor=audit.CLI
        )
    send_test(hook.id)
    (request,) = receiver.hits("/ok")
    assert request.headers.get("x-two") == "2" and "x-one" not in request.headers
    with db.session_scope() as s:
        webhooks.update_webhook(session=s, webhook_id=hook.id, data=WebhookInput(headers={}), actor=audit.CLI)
        assert s.get(Webhook, hook.id).headers == {}


@pytest.mark.parametrize("name", ["webhook-signature", "Content-Type", "Host", "Transfer-Encoding", "User-Agent"])
def test_a_forbidden_header_saves_nothing_through_the_service(kwik, name):
    with pytest.raises(InvalidInput) as refused:
        make_hook(headers={"X-Fine": "1", name: "x"})
    assert name in refused.value.errors["headers"]
    assert rows(Webhook) == []
    hook = make_hook(headers={"X-Fine": "1"})
    with pytest.raises(InvalidInput), db.session_scope() as s:
        webhooks.update_webhook(
            session=s, webhook_id=hook.id, data=WebhookInput(name="New", headers={name: "x"}), actor=audit.CLI
        )
    (kept,) = rows(Webhook)
    assert (kept.name, kept.headers) == ("Endpoint", {"X-Fine": "1"})


# ---------------------------------------------------------------- API


@pytest.fixture
def api(kwik):
    """The API, called from this machine (loopback) in local mode: no token needed."""
    with TestClient(create_app(), client=("127.0.0.1", 50123)) as client:
        yield client


def test_the_api_takes_and_answers_star_and_headers(api, receiver, new_type):
    made = api.post(
        "/api/v1/webhooks",
        json={"name": "All", "url": receiver.url("/ok"), "events": ["*"], "headers": {"X-Team": "orders"}},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["events"] == ["*"] and body["headers"] == {"X-Team": "orders"}
    assert api.get(f"/api/v1/webhooks/{body['id']}").json() == body

    sent = api.post("/api/v1/events", json={"type": new_type, "data": {"id": "re_1"}})
    assert sent.status_code in (200, 201, 202), sent.text
    deliver([d.id for d in rows(Delivery, event_type=new_type)])
    (request,) = receiver.hits("/ok")
    assert json.loads(request.body)["type"] == new_type and request.headers["x-team"] == "orders"

    changed = api.patch(f"/api/v1/webhooks/{body['id']}", json={"events": ["payment.created"], "headers": None})
    assert changed.json()["events"] == ["payment.created"] and changed.json()["headers"] == {}
    kept = api.patch(f"/api/v1/webhooks/{body['id']}", json={"name": "Renamed"}).json()
    assert kept["events"] == ["payment.created"] and kept["headers"] == {}


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("events", ["*", "payment.created"], "must be alone"),
        ("headers", {"Host": "evil.invalid"}, "Host"),
        ("headers", {"webhook-id": "x"}, "webhook-id"),
        ("headers", {"Proxy-Authorization": "x"}, "Proxy-Authorization"),
        ("headers", {"X-Bad": "a\r\nInjected: 1"}, "control characters"),
        ("headers", {"X Bad": "1"}, "header name"),
        ("headers", {"X-Big": "a" * 1025}, "1,024"),
        ("headers", {f"X-{n}": "1" for n in range(11)}, "At most 10"),
        ("headers", {"X-Same": "1", "x-same": "2"}, "only once"),
    ],
)
def test_the_api_refuses_bad_options_and_saves_nothing(api, field, value, words):
    good = {"name": "Orders", "url": "https://127.0.0.1:9/kwik", "events": ["payment.created"]}
    refused = api.post("/api/v1/webhooks", json=good | {field: value})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert words in {e["field"]: e["detail"] for e in refused.json()["errors"]}[field]
    assert api.get("/api/v1/webhooks").json()["total"] == 0

    made = api.post("/api/v1/webhooks", json=good | {"headers": {"X-Keep": "1"}}).json()
    refused = api.patch(f"/api/v1/webhooks/{made['id']}", json={"name": "Changed", field: value})
    assert refused.status_code == 422, refused.text
    assert api.get(f"/api/v1/webhooks/{made['id']}").json() == made


def test_the_openapi_document_describes_the_options(api):
    schemas = api.get("/api/v1/openapi.json").json()["components"]["schemas"]
    assert '["*"]' in schemas["WebhookCreate"]["properties"]["events"]["description"]
    assert "headers" in schemas["WebhookCreate"]["properties"] and "headers" in schemas["WebhookUpdate"]["properties"]
    assert "headers" in schemas["WebhookOut"]["required"]


# ---------------------------------------------------------------- CLI


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_takes_star_and_headers(kwik, capsys, receiver, new_type):
    code, out, err = run(
        capsys,
        *("webhooks", "create", "--name", "All", "--url", receiver.url("/ok"), "--events", "*"),
        *("--header", "X-Team: orders", "--header", "Authorization: Bearer tok_1", "--json"),
    )
    assert code == 0, err
    made = json.loads(out)
    assert made["events"] == ["*"] and made["headers"] == {"X-Team": "orders", "Authorization": "Bearer tok_1"}

    code, out, _ = run(capsys, "webhooks", "show", str(made["id"]))
    assert code == 0 and "All events" in out and "X-Team: orders" in out

    published = publish(new_type, {"id": "re_1"}, wake=False)
    deliver(published.delivery_ids)
    (request,) = receiver.hits("/ok")
    assert request.headers["x-team"] == "orders" and request.headers["authorization"] == "Bearer tok_1"

    code, out, err = run(capsys, "webhooks", "update", str(made["id"]), "--clear-headers", "--json")
    assert code == 0, err
    assert json.loads(out)["headers"] == {} and json.loads(out)["events"] == ["*"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (("--events", "*,payment.created"), "must be alone"),
        (("--events", "payment.created", "--header", "Content-Length: 5"), "Content-Length"),
        (("--events", "payment.created", "--header", "Connection: close"), "Connection"),
        (("--events", "payment.created", "--header", "X-No-Colon"), "Name: value"),
        (("--events", "payment.created", "--header", "X-A: 1", "--header", "x-a: 2"), "only once"),
    ],
)
def test_the_cli_refuses_bad_options_in_one_line_and_saves_nothing(kwik, capsys, argv, words):
    code, out, err = run(capsys, "webhooks", "create", "--name", "Orders", "--url", "https://127.0.0.1:9/k", *argv)
    assert code == 2 and out == "" and words in err and len(err.strip().splitlines()) == 1
    assert rows(Webhook) == []
    hook = make_hook(headers={"X-Keep": "1"})
    code, _, err = run(capsys, "webhooks", "update", str(hook.id), "--name", "Changed", *argv)
    assert code == 2 and words in err
    (kept,) = rows(Webhook)
    assert (kept.name, kept.headers) == ("Endpoint", {"X-Keep": "1"})
