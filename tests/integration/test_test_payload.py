"""A test sent with my own payload: it arrives exactly as written, and one that does not fit the event type's
schema is refused with the schema's reason and nothing is sent. The service, the API, and the CLI
(`events publish --test`, `trigger`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import warnings

import pytest
from sqlmodel import func, select

from kwik_console.cli import main
from kwik_console.core.errors import InvalidInput
from kwik_console.delivery.test_webhook import send_test
from kwik_console.events import catalog
from kwik_console.store.db import session_scope
from kwik_console.store.tables import Delivery, Event
from kwik_console.team import audit
from tests.api_server import ApiServer
from tests.conftest import KWIK_CONSOLE
from tests.factories import make_hook

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from kwik_console.api import create_app  # noqa: E402

EDITED = catalog.sample_data("payment.created") | {
    "amount": 5000,
    "description": "Edited by hand – £50, ünïcode",
    "metadata": {"order": "A-1"},  # a field the sample does not have: receivers may see more
}


def _counts() -> tuple[int, int]:
    with session_scope() as s:
        return s.exec(select(func.count()).select_from(Event)).one(), s.exec(
            select(func.count()).select_from(Delivery)
        ).one()


def _data_received(receiver) -> list[dict]:
    return [json.loads(r.body)["data"] for r in receiver.requests]


def test_the_service_sends_the_edited_payload_exactly(kwik, receiver):
    webhook = make_hook(receiver.url("/ok"))
    published, outcome = asyncio.run(
        send_test(webhook_id=webhook.id, event_type="payment.created", data=EDITED, actor=audit.CLI)
    )
    assert outcome.status == "success"
    (request,) = receiver.requests
    envelope = json.loads(request.body)
    assert envelope["data"] == EDITED and envelope["test"] is True and envelope["type"] == "payment.created"
    assert request.headers["webhook-id"] == published.event.id


def test_the_service_refuses_a_payload_that_does_not_fit_and_sends_nothing(kwik, receiver):
    webhook = make_hook(receiver.url("/ok"))
    before = _counts()
    with pytest.raises(InvalidInput) as refused:
        asyncio.run(
            send_test(
                webhook_id=webhook.id,
                event_type="payment.created",
                data=EDITED | {"amount": "5000"},
                actor=audit.CLI,
            )
        )
    assert refused.value.errors == {
        "data": 'The payload does not fit the payment.created schema: data.amount: "5000" is not of type "integer"'
    }
    assert _counts() == before and receiver.requests == []


@pytest.fixture
def api(kwik):
    """The API, called from this machine (loopback) in local mode: no token needed."""
    with TestClient(create_app(), client=("127.0.0.1", 50123)) as client:
        yield client


def test_the_api_test_route_takes_the_payload_and_answers_422_when_it_does_not_fit(api, receiver):
    webhook = make_hook(receiver.url("/ok"))
    sent = api.post(f"/api/v1/webhooks/{webhook.id}/test", json={"event_type": "payment.created", "data": EDITED})
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "success"
    assert _data_received(receiver) == [EDITED]

    before = _counts()
    missing = {k: v for k, v in EDITED.items() if k != "currency"}
    refused = api.post(f"/api/v1/webhooks/{webhook.id}/test", json={"event_type": "payment.created", "data": missing})
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["code"] == "invalid_input"
    assert problem["errors"] == [
        {
            "field": "data",
            "detail": 'The payload does not fit the payment.created schema: data: "currency" is a required property',
        }
    ]
    assert _counts() == before and len(receiver.requests) == 1

    # Without data: the type's sample, as before.
    assert api.post(f"/api/v1/webhooks/{webhook.id}/test", json={"event_type": "payout.created"}).status_code == 200
    assert _data_received(receiver)[-1] == catalog.sample_data("payout.created")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_events_publish_test_sends_data_with_overrides_exactly(kwik, receiver, capsys):
    webhook = make_hook(receiver.url("/ok"))
    code, out, err = run(
        capsys,
        "events",
        "publish",
        "payment.created",
        "--test",
        "--webhook",
        str(webhook.id),
        "--data",
        json.dumps(EDITED),
        "--override",
        "amount=7000",
        "--override",
        "metadata.order=B-2",
        "--override",
        "method=bank_transfer",
    )
    assert code == 0, err
    assert _data_received(receiver) == [
        EDITED | {"amount": 7000, "metadata": {"order": "B-2"}, "method": "bank_transfer"}
    ]
    with session_scope() as s:
        assert "test.sent" in [e.action for e in audit.list_entries(session=s).items]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--override", "amount=lots"], 'data.amount: "lots" is not of type "integer"'),
        (["--override", "created_at=yesterday"], 'data.created_at: "yesterday" is not a "date-time"'),
        (["--data", '{"object": "payment"}'], '"amount" is a required property'),
        (["--override", "amount"], "write it as path=value"),
        (["--data", "{nope"], "--data is not valid JSON"),
    ],
)
def test_events_publish_test_refuses_bad_payloads_in_one_line_and_sends_nothing(kwik, receiver, capsys, argv, message):
    webhook = make_hook(receiver.url("/ok"))
    before = _counts()
    code, out, err = run(capsys, "events", "publish", "payment.created", "--test", "--webhook", str(webhook.id), *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err
    assert _counts() == before and receiver.requests == []


def test_events_publish_of_a_real_event_takes_overrides(kwik, receiver, capsys):
    make_hook(receiver.url("/ok"), events=("invoice.created",))
    code, _, err = run(capsys, "events", "publish", "invoice.created", "--override", "amount_due=1", "--json")
    assert code == 0, err
    assert _data_received(receiver) == [catalog.sample_data("invoice.created") | {"amount_due": 1}]


def test_trigger_publishes_the_sample_as_changed_and_refuses_one_that_does_not_fit(kwik, tmp_path, cli_env):
    with ApiServer(tmp_path / "api.log") as api:
        trigger = [*KWIK_CONSOLE, "trigger", "customer.created", "--console", api.url]
        done = subprocess.run(
            [*trigger, "--override", "metadata.crm_id=abc-7", "--override", "metadata.seats=7", "--json"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        event_id = json.loads(done.stdout)["id"]
        with session_scope() as s:
            body = json.loads(s.get(Event, event_id).body)
        assert body["data"] == catalog.sample_data("customer.created") | {"metadata": {"crm_id": "abc-7", "seats": 7}}

        before = _counts()
        refused = subprocess.run(
            [*trigger, "--data", json.dumps(catalog.sample_data("customer.created") | {"country": 44})],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2 and refused.stdout == ""
        assert refused.stderr.count("\n") == 1
        assert 'data.country: 44 is not of type "string"' in refused.stderr, refused.stderr
        assert _counts() == before
