"""The REST API's resources and its errors, on a real database, through the real ASGI app in this process.

Tests that need real processes (concurrency, two replicas, the stream) are in test_api_live.py.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from kwik_console.core.errors import InvalidInput
from kwik_console.store.db import session_scope
from kwik_console.team import audit
from kwik_console.webhooks import rules

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from kwik_console.api import create_app  # noqa: E402

PROBLEM = "application/problem+json"


@pytest.fixture
def api(kwik):
    """The API, called from this machine (loopback) in local mode: no token needed."""
    with TestClient(create_app(), client=("127.0.0.1", 50123)) as client:
        yield client


def _webhook(api, name="Orders", url=None, events=("payment.created",)) -> dict:
    response = api.post(
        "/api/v1/webhooks",
        json={"name": name, "url": url or "https://127.0.0.1:9/hooks/" + name, "events": list(events)},
    )
    assert response.status_code == 201, response.text
    return response.json()


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["code"] == code and body["title"] and body["detail"]
    return body


def test_webhooks_create_read_update_delete(api):
    made = _webhook(api, events=["payment.updated", "payment.created"])
    assert made["events"] == ["payment.created", "payment.updated"]  # catalogue order, as the service stores them
    assert "secret" not in made
    assert api.get(f"/api/v1/webhooks/{made['id']}").json() == made
    changed = api.patch(f"/api/v1/webhooks/{made['id']}", json={"status": "disabled"}).json()
    assert changed["status"] == "disabled" and changed["name"] == "Orders"
    assert api.delete(f"/api/v1/webhooks/{made['id']}").status_code == 204
    assert_problem(api.get(f"/api/v1/webhooks/{made['id']}"), 404, "not_found")


def test_webhook_list_searches_and_pages_with_a_cursor(api):
    for name in ("alpha-one", "beta", "alpha-two", "alpha-three"):
        _webhook(api, name=name)
    first = api.get("/api/v1/webhooks", params={"search": "ALPHA", "limit": 2}).json()
    assert [w["name"] for w in first["items"]] == ["alpha-three", "alpha-two"] and first["total"] == 3
    second = api.get("/api/v1/webhooks", params={"search": "alpha", "limit": 2, "cursor": first["next_cursor"]}).json()
    assert [w["name"] for w in second["items"]] == ["alpha-one"] and second["next_cursor"] is None


def test_the_api_refuses_what_the_service_refuses_with_the_same_field_errors(api):
    bad = {"name": " ", "url": "ftp://example.invalid", "events": ["payment.created", "nope.nothing"]}
    with pytest.raises(InvalidInput) as service:
        rules.validate(rules.WebhookInput(**bad))
    body = assert_problem(api.post("/api/v1/webhooks", json=bad), 422, "invalid_input")
    assert {e["field"]: e["detail"] for e in body["errors"]} == service.value.errors
    assert api.get("/api/v1/webhooks").json()["total"] == 0  # changes nothing


@pytest.mark.parametrize(
    "send, status, code",
    [
        (
            lambda api: api.post(
                "/api/v1/webhooks", content=b'{"name": "x",', headers={"content-type": "application/json"}
            ),
            400,
            "malformed_json",
        ),
        (
            lambda api: api.post(
                "/api/v1/webhooks", json={"name": 7, "url": "https://127.0.0.1:9/a", "events": "payment.created"}
            ),
            422,
            "invalid_input",
        ),
        (
            lambda api: api.post(
                "/api/v1/webhooks",
                json={
                    "name": "x",
                    "url": "https://127.0.0.1:9/a",
                    "events": ["payment.created"],
                    "secret": "whsec_mine",
                },
            ),
            422,
            "invalid_input",
        ),
        (lambda api: api.post("/api/v1/webhooks", json=["not", "an", "object"]), 422, "invalid_input"),
        (
            lambda api: api.post("/api/v1/webhooks", content=b"name=x", headers={"content-type": "text/plain"}),
            415,
            "unsupported_media_type",
        ),
        (
            lambda api: api.post("/api/v1/events", json={"type": "payment.created", "data": {"note": "x" * 300_000}}),
            413,
            "body_too_large",
        ),
        (
            lambda api: api.post(
                "/api/v1/events",
                content=iter([b'{"type": "payment.created", "data": {"n": "', b"x" * 300_000, b'"}}']),
                headers={"content-type": "application/json"},
            ),
            413,
            "body_too_large",
        ),
        (lambda api: api.post("/api/v1/events", json={"type": "payment.nope", "data": {}}), 422, "invalid_input"),
        (lambda api: api.get("/api/v1/webhooks/12345"), 404, "not_found"),
        (lambda api: api.get("/api/v1/webhooks/abc"), 404, "not_found"),
        (lambda api: api.get("/api/v1/webhooks/99999999999999999999999"), 404, "not_found"),
        (lambda api: api.get("/api/v1/deliveries/0"), 404, "not_found"),
        (lambda api: api.get("/api/v1/nothing-here"), 404, "not_found"),
        (lambda api: api.put("/api/v1/webhooks", json={}), 405, "method_not_allowed"),
        (lambda api: api.get("/api/v1/webhooks", params={"cursor": "forged"}), 422, "invalid_input"),
        (lambda api: api.get("/api/v1/webhooks", params={"limit": "lots"}), 422, "invalid_input"),
        (
            lambda api: api.post(
                "/api/v1/events",
                json={"type": "payment.created", "data": {}},
                headers={"Idempotency-Key": "has spaces"},
            ),
            400,
            "invalid_idempotency_key",
        ),
    ],
    ids=[
        "bad-json",
        "wrong-types",
        "unknown-field",
        "not-an-object",
        "not-json",
        "oversized",
        "oversized-chunked",
        "unknown-event-type",
        "unknown-id",
        "non-numeric-id",
        "huge-id",
        "unknown-delivery",
        "unknown-route",
        "wrong-method",
        "forged-cursor",
        "non-numeric-limit",
        "bad-idempotency-key",
    ],
)
def test_every_kind_of_bad_input_gets_a_problem(api, send, status, code):
    assert_problem(send(api), status, code)


def test_field_errors_name_the_fields_at_fault(api):
    body = assert_problem(
        api.post(
            "/api/v1/webhooks",
            json={"name": 7, "url": "https://127.0.0.1:9/a", "events": ["payment.created"], "colour": "red"},
        ),
        422,
        "invalid_input",
    )
    assert {e["field"] for e in body["errors"]} == {"name", "colour"}
    assert "Unknown field: colour." in body["detail"]


def test_publish_answers_202_with_the_event_and_its_deliveries(api, session):
    _webhook(api, name="a")
    _webhook(api, name="b", events=["payment.updated"])
    response = api.post("/api/v1/events", json={"type": "payment.created", "data": {"id": "pay_1"}})
    assert response.status_code == 202
    body = response.json()
    assert body["id"].startswith("evt_") and body["deliveries"] == 1 and body["type"] == "payment.created"


def test_a_repeat_with_the_same_idempotency_key_returns_the_first_result(api):
    _webhook(api)
    send = {"type": "payment.created", "data": {"id": "pay_1"}}
    first = api.post("/api/v1/events", json=send, headers={"Idempotency-Key": "order-1"})
    again = api.post("/api/v1/events", json=send, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert (first.headers["idempotent-replayed"], again.headers["idempotent-replayed"]) == ("false", "true")
    other = api.post("/api/v1/events", json={**send, "data": {"id": "pay_2"}}, headers={"Idempotency-Key": "order-1"})
    assert_problem(other, 422, "idempotency_key_reused")
    deliveries = api.get("/api/v1/webhooks/1/deliveries").json()["items"]
    assert len(deliveries) == 1


def test_test_webhook_answers_with_the_outcome_and_the_log_shows_every_attempt(api, receiver):
    made = _webhook(api, url=receiver.url("/ok"))
    outcome = api.post(f"/api/v1/webhooks/{made['id']}/test", json={"event_type": "payment.updated"}).json()
    assert outcome["status"] == "success" and outcome["http_code"] == 200
    assert receiver.hits("/ok")[0].headers["webhook-id"] == outcome["event_id"]
    api.post("/api/v1/events", json={"type": "payment.created", "data": {"id": "pay_1"}})
    page = api.get(f"/api/v1/webhooks/{made['id']}/deliveries", params={"test": "true"}).json()
    assert [d["id"] for d in page["items"]] == [outcome["delivery_id"]]
    assert (
        api.get(f"/api/v1/webhooks/{made['id']}/deliveries", params={"test": "false"}).json()["items"][0]["test"]
        is False
    )
    assert (
        api.get(f"/api/v1/webhooks/{made['id']}/deliveries", params={"status": "success"}).json()["items"][0]["id"]
        == outcome["delivery_id"]
    )
    assert_problem(
        api.get(f"/api/v1/webhooks/{made['id']}/deliveries", params={"status": "lost"}), 422, "invalid_input"
    )
    detail = api.get(f"/api/v1/deliveries/{outcome['delivery_id']}").json()
    assert detail["payload"]["test"] is True and detail["payload"]["id"] == outcome["event_id"]
    assert [(a["number"], a["http_code"]) for a in detail["attempts"]] == [(1, 200)]
    assert detail["attempts"][0]["request_headers"]["webhook-id"] == outcome["event_id"]


def test_secret_reveal_and_rotate(api):
    made = _webhook(api)
    first = api.get(f"/api/v1/webhooks/{made['id']}/secret").json()
    assert first["secret"].startswith("whsec_") and first["previous_secrets_expire_at"] == []
    rotated = api.post(f"/api/v1/webhooks/{made['id']}/secret/rotate").json()
    assert rotated["secret"] != first["secret"] and len(rotated["previous_secrets_expire_at"]) == 1
    with session_scope() as session:
        actions = [e.action for e in audit.list_entries(session=session).items]
    assert {"secret.revealed", "secret.rotated", "webhook.created"} <= set(actions)


def test_event_types_carry_samples_and_schemas_that_describe_them(api):
    jsonschema = pytest.importorskip("jsonschema_rs")
    items = api.get("/api/v1/event-types").json()["items"]
    assert len(items) == 19
    for item in items:
        assert item["description"] and item["sample"]["object"] == item["group"]
        jsonschema.validate(item["schema"], item["sample"])
    checkout = next(i for i in items if i["type"] == "checkout.completed")["schema"]["properties"]
    assert checkout["payment_id"]["type"] == ["null", "string"]  # null when the checkout expired
    assert checkout["created_at"]["format"] == "date-time"
    assert jsonschema.is_valid(checkout["amount"], 12500) and not jsonschema.is_valid(checkout["amount"], "12500")


def test_openapi_is_3_1_and_the_docs_page_needs_no_cdn(api):
    spec = api.get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert "Problem" in spec["components"]["schemas"]
    # Every section the operations name is listed (TAGS gives the page's order).
    used = {tag for path in spec["paths"].values() for operation in path.values() for tag in operation["tags"]}
    assert sorted(t["name"] for t in spec["tags"]) == sorted(used)
    page = api.get("/api/v1/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text and "//cdn" not in page.text
    import re

    assert '<a href="/">&larr; Back to the console</a>' in page.text
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        if asset == "/":
            continue  # the way back to the console
        assert asset.startswith("/api/v1/"), asset
        assert api.get(asset).status_code == 200, asset


def test_the_api_process_leaves_what_it_loads_out_of_later_collections(cli_env):
    # Its own process: freezing is once per process, and this test's process has frozen long ago.
    script = """
import gc, sys, time
from kwik_console.core import process
process.FREEZE_AGAIN_AFTER_SECONDS = 0.5
from kwik_console.api import create_app
assert gc.get_freeze_count() == 0
create_app()
at_start = gc.get_freeze_count()
import xml.dom.minidom  # loaded later, as a first request may load a module the start did not
deadline = time.monotonic() + 30
while gc.get_freeze_count() <= at_start and time.monotonic() < deadline:
    time.sleep(0.1)
print(at_start, gc.get_freeze_count())
"""
    done = subprocess.run([sys.executable, "-c", script], env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    at_start, later = map(int, done.stdout.split())
    assert at_start > 10_000 and later > at_start
