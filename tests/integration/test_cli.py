"""`kwik-console` as people and scripts use it."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from kwik_console.cli import main
from kwik_console.store.db import session_scope
from kwik_console.team import audit
from tests.conftest import KWIK_CONSOLE


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cells(line: str) -> list[str]:
    """A table row's cells: columns are at least two spaces apart, and no cell here holds two spaces."""
    return re.split(r"\s{2,}", line.strip())


WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
EVENT_ID = r"evt_[0-9a-z]{26}"


def create(capsys, url, events="payment.created,customer.created", name="Orders"):
    code, out, err = run(capsys, "webhooks", "create", "--name", name, "--url", url, "--events", events, "--json")
    assert code == 0, err
    return json.loads(out)


def test_create_json_has_id_and_secret_and_list_shows_it(kwik, capsys):
    created = create(capsys, "https://127.0.0.1:9/orders/kwik")
    assert created["id"] == 1 and created["secret"].startswith("whsec_")
    assert created["events"] == ["customer.created", "payment.created"] and created["status"] == "live"

    code, out, _ = run(capsys, "webhooks", "list")
    assert code == 0
    header, rule, row = out.splitlines()
    assert cells(header) == ["ID", "Created", "Name", "Webhook URL", "Status", "Max/s", "Failing since"]
    assert "Orders" in row and "https://127.0.0.1:9/orders/kwik" in row and row.rstrip().endswith("Live")

    code, out, _ = run(capsys, "webhooks", "list", "--search", "ORDERS/KWIK", "--json")
    assert [w["id"] for w in json.loads(out)["items"]] == [1]
    assert "secret" not in json.loads(out)["items"][0]


def test_update_rotate_and_delete(kwik, capsys):
    created = create(capsys, "https://127.0.0.1:9/orders/kwik")
    code, out, _ = run(capsys, "webhooks", "update", "1", "--status", "disabled", "--name", "Orders v2", "--json")
    assert code == 0 and json.loads(out)["status"] == "disabled" and json.loads(out)["name"] == "Orders v2"
    code, out, _ = run(capsys, "webhooks", "rotate-secret", "1", "--json")
    assert code == 0 and json.loads(out)["secret"] not in (created["secret"], None)
    code, out, _ = run(capsys, "webhooks", "delete", "1")
    assert code == 0 and out.strip() == "Deleted webhook 1 (Orders v2)."
    assert run(capsys, "webhooks", "list")[1].strip() == "No webhooks yet."


def test_each_webhook_command_writes_one_audit_entry_with_real_values(kwik, capsys):
    create(capsys, "https://127.0.0.1:9/orders/kwik", events="payment.created")
    run(capsys, "webhooks", "update", "1", "--name", "Orders v2")
    run(capsys, "webhooks", "update", "1", "--name", "Orders v2")  # no change: no entry
    run(capsys, "webhooks", "rotate-secret", "1")
    run(capsys, "webhooks", "delete", "1")
    with session_scope() as session:
        entries = list(reversed(audit.list_entries(session=session).items))
    assert [(e.action, e.target, e.actor_email) for e in entries] == [
        ("webhook.created", "webhook 1 (Orders)", "kwik-console CLI"),
        ("webhook.edited", "webhook 1 (Orders v2)", "kwik-console CLI"),
        ("secret.rotated", "webhook 1 (Orders v2)", "kwik-console CLI"),
        ("webhook.deleted", "webhook 1 (Orders v2)", "kwik-console CLI"),
    ]
    created, edited, rotated, deleted = (e.detail for e in entries)
    assert created["after"] == {
        "name": "Orders",
        "url": "https://127.0.0.1:9/orders/kwik",
        "status": "live",
        "events": ["payment.created"],
        "max_per_second": None,
        "headers": [],
    }
    assert edited["before"]["name"] == "Orders" and edited["after"]["name"] == "Orders v2"
    expires = dt.datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert dt.timedelta(hours=23) < expires - entries[2].at <= dt.timedelta(hours=24)
    assert deleted["before"]["name"] == "Orders v2" and "secret" not in deleted["before"]


def test_events_types(kwik, capsys):
    code, out, _ = run(capsys, "events", "types", "--json")
    types = json.loads(out)
    assert code == 0 and len(types) == 19 and types[0]["type"] == "bank_account.created"


def test_publish_delivers_at_once_and_deliveries_show_attempts(kwik, capsys, receiver):
    created = create(capsys, receiver.url("/ok"))
    code, out, err = run(capsys, "events", "publish", "payment.created", "--sample", "--json")
    assert code == 0, err
    published = json.loads(out)
    assert published["deliveries"][0]["status"] == "success" and published["deliveries"][0]["http_code"] == 200
    (request,) = receiver.hits("/ok")
    assert Verifier(created["secret"]).verify(request.body, request.headers)["data"]["id"].startswith("pay_")

    code, out, _ = run(capsys, "events", "publish", "customer.created", "--data", '{"object":"customer","id":"cus_9"}')
    assert code == 0
    summary, header, _rule, row = out.splitlines()
    assert re.fullmatch(rf"Published {EVENT_ID} \(customer\.created\) to 1 webhook\(s\)\.", summary)
    assert cells(header) == ["Delivery", "Status", "HTTP Code", "Duration", "Response"]
    delivery_id, status, http_code, duration, response = cells(row)
    assert (delivery_id, status, http_code, response) == ("2", "Success", "200", '{"received":true}')
    assert re.fullmatch(r"\d+ ms", duration)

    code, out, _ = run(capsys, "deliveries", "list", "--webhook", "1", "--json")
    items = json.loads(out)["items"]
    assert [d["event_type"] for d in items] == ["customer.created", "payment.created"]  # newest first
    code, out, _ = run(capsys, "deliveries", "show", str(items[0]["id"]), "--json")
    shown = json.loads(out)
    assert shown["payload"]["data"] == {"object": "customer", "id": "cus_9"}
    assert shown["attempts"][0]["http_code"] == 200
    assert shown["attempts"][0]["request_headers"]["webhook-id"] == shown["event_id"]

    code, out, _ = run(capsys, "deliveries", "show", str(items[0]["id"]))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Delivery 2: customer.created {shown['event_id']} to webhook 1 (Orders)"
    assert [cells(line) for line in lines[1:5]] == [
        ["Status", "Success"],
        ["Test Event", "no"],
        ["Retry Timestamp"],
        ["Retry Counter", "0"],
    ]
    assert lines[5] == "" and len(lines) == 9
    assert cells(lines[6]) == ["Attempt", "Time", "HTTP Code", "Duration", "Response / error"]
    number, when, http_code, duration, response = cells(lines[8])
    assert (number, http_code, response) == ("1", "200", '{"received":true}')
    assert re.fullmatch(WHEN, when) and re.fullmatch(r"\d+ ms", duration)


def test_test_event_to_a_failing_endpoint_shows_retrying(kwik, capsys, receiver):
    create(capsys, receiver.url("/fail"))
    code, out, _ = run(capsys, "events", "publish", "invoice.created", "--test", "--webhook", "1")
    assert code == 0
    _summary, _header, _rule, row = out.splitlines()
    delivery_id, status, http_code, _duration, response = cells(row)
    assert (delivery_id, status, http_code, response) == ("1", "Retrying", "500", "internal error")

    code, out, _ = run(capsys, "deliveries", "list", "--status", "retrying")
    assert code == 0
    header, _rule, row = out.splitlines()
    assert cells(header) == [
        "ID",
        "Webhook",
        "Event",
        "Status",
        "HTTP Code",
        "Test Event",
        "Retry Timestamp",
        "Retry Counter",
    ]
    delivery_id, webhook_id, event, status, http_code, test, retry_at, retry_counter = cells(row)
    assert (delivery_id, webhook_id, status, http_code, test, retry_counter) == (
        "1",
        "1",
        "Retrying",
        "500",
        "yes",
        "0",
    )
    assert re.fullmatch(rf"invoice\.created {EVENT_ID}", event) and re.fullmatch(WHEN, retry_at)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["webhooks", "create", "--name", "", "--url", "https://127.0.0.1:9/a", "--events", "payment.created"],
            "Name is required.",
        ),
        (
            ["webhooks", "create", "--name", "A", "--url", "http://a.example.invalid", "--events", "payment.created"],
            "must use https://",
        ),
        (
            ["webhooks", "create", "--name", "A", "--url", "https://127.0.0.1:9/a", "--events", "pay.created"],
            "Unknown event type: pay.created.",
        ),
        (["webhooks", "create", "--name", "A", "--url", "https://127.0.0.1:9/a"], "--events"),
        (
            [
                "webhooks",
                "create",
                "--name",
                "A",
                "--url",
                "https://127.0.0.1:9/a",
                "--events",
                "payment.created",
                "--status",
                "paused",
            ],
            "invalid choice",
        ),
        (["webhooks", "update", "7", "--name", "B"], "Webhook 7 does not exist."),
        (["webhooks", "update", "1"], "nothing to change"),
        (["webhooks", "update", "x", "--name", "B"], "invalid int value"),
        (["webhooks", "delete", "7"], "Webhook 7 does not exist."),
        (["webhooks", "rotate-secret", "7"], "Webhook 7 does not exist."),
        (["webhooks", "show", "7"], "Webhook 7 does not exist."),
        (["webhooks", "list", "--page", "0"], "Page must be 1 or more."),
        (["webhooks", "frobnicate"], "invalid choice"),
        (["events", "publish", "payment.deleted"], "Unknown event type 'payment.deleted'"),
        (["events", "publish", "payment.created", "--data", "{nope"], "--data is not valid JSON"),
        (["events", "publish", "payment.created", "--data", "[1]"], "Event data must be a JSON object."),
        (["events", "publish", "payment.created", "--data", "{}", "--sample"], "not both"),
        (["events", "publish", "payment.created", "--test"], "A test event needs the webhook"),
        (["events", "publish", "payment.created", "--webhook", "9"], "Webhook 9 does not exist."),
        (["deliveries", "list", "--status", "lost"], "Status must be one of"),
        (["deliveries", "list", "--limit", "0"], "Page size"),
        (["deliveries", "show", "5"], "Delivery 5 does not exist."),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(kwik, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("kwik-console: error: ")
    assert message in err


def test_bad_input_writes_nothing(kwik, capsys):
    run(capsys, "webhooks", "create", "--name", "A", "--url", "http://a.example.invalid", "--events", "payment.created")
    assert json.loads(run(capsys, "webhooks", "list", "--json")[1])["total"] == 0


def test_installed_entry_point_and_bad_settings(cli_env):
    cli_env["KWIK_RETRY_SCHEDULE"] = "soon"
    result = subprocess.run([*KWIK_CONSOLE, "events", "types"], env=cli_env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("kwik-console: error: KWIK_RETRY_SCHEDULE must be comma-separated")
    del cli_env["KWIK_RETRY_SCHEDULE"]
    result = subprocess.run([*KWIK_CONSOLE, "events", "types"], env=cli_env, capture_output=True, text=True)
    assert result.returncode == 0 and "payment.created" in result.stdout
