"""Operating deliveries over the REST API: pause and resume, resend, recoveries, the operational webhook, rates.

On a real database, through the real ASGI app in this process; sends go to a real receiver on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import warnings

import pytest

from kwik_console.events import catalog
from kwik_console.operations import recovery
from kwik_console.store.db import get_engine, session_scope
from kwik_console.team import audit, tokens

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from kwik_console.api import create_app  # noqa: E402
from tests.integration.test_api import assert_problem  # noqa: E402

V1 = "/api/v1"


@pytest.fixture
def api(kwik):
    """Called from this machine in local mode: the local admin, no token."""
    with TestClient(create_app(), client=("127.0.0.1", 50124)) as client:
        yield client


@pytest.fixture
def remote(kwik):
    """Another machine: every call needs a token."""
    with TestClient(create_app(), client=("203.0.113.7", 50125)) as client:
        yield client


def _webhook(api, url="https://127.0.0.1:9/hooks", **more) -> dict:
    response = api.post(f"{V1}/webhooks", json={"name": "Orders", "url": url, "events": ["payment.created"], **more})
    assert response.status_code == 201, response.text
    return response.json()


def _bearer(scopes: str) -> dict:
    with session_scope() as session:
        token = tokens.create_token(session=session, name=f"t-{scopes}", scopes=scopes, actor=audit.CLI).token
    return {"Authorization": f"Bearer {token}"}


def _failed_deliveries(api, webhook_id: int, count: int) -> None:
    """`count` deliveries that ended as Failure: published, then the webhook disabled (which ends them)."""
    for n in range(count):
        assert api.post(f"{V1}/events", json={"type": "payment.created", "data": {"id": f"pay_{n}"}}).status_code == 202
    assert api.patch(f"{V1}/webhooks/{webhook_id}", json={"status": "disabled"}).json()["status"] == "disabled"
    assert api.patch(f"{V1}/webhooks/{webhook_id}", json={"status": "live"}).json()["status"] == "live"
    statuses = [d["status"] for d in api.get(f"{V1}/webhooks/{webhook_id}/deliveries").json()["items"]]
    assert statuses == ["failure"] * count


def _audit_actions() -> list[tuple[str, str]]:
    with session_scope() as session:
        return [(e.action, e.actor_email) for e in reversed(audit.list_entries(session=session).items)]


# ---------------------------------------------------------------- webhooks: status, rate, health


def test_pause_and_resume_and_resume_re_enables_a_disabled_webhook(api):
    made = _webhook(api)
    assert (
        made["status"],
        made["max_per_second"],
        made["failing_since"],
        made["disabled_reason"],
        made["disabled_at"],
    ) == ("live", None, None, None, None)
    paused = api.post(f"{V1}/webhooks/{made['id']}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert api.get(f"{V1}/webhooks/{made['id']}").json()["status"] == "paused"
    assert api.post(f"{V1}/webhooks/{made['id']}/resume").json()["status"] == "live"

    disabled = api.patch(f"{V1}/webhooks/{made['id']}", json={"status": "disabled"}).json()
    assert disabled["status"] == "disabled" and disabled["disabled_at"] is not None
    body = assert_problem(api.post(f"{V1}/webhooks/{made['id']}/pause"), 422, "invalid_input")
    assert [e["field"] for e in body["errors"]] == ["status"]
    resumed = api.post(f"{V1}/webhooks/{made['id']}/resume").json()
    assert resumed["status"] == "live" and resumed["disabled_at"] is None
    assert_problem(api.post(f"{V1}/webhooks/999/pause"), 404, "not_found")
    assert [a for a in _audit_actions() if a[0].startswith("webhook.") and a[0] != "webhook.created"] == [
        ("webhook.paused", "local admin"),
        ("webhook.resumed", "local admin"),
        ("webhook.edited", "local admin"),
        ("webhook.resumed", "local admin"),
    ]


def test_status_paused_is_accepted_in_create_and_patch(api):
    made = _webhook(api, status="paused")
    assert made["status"] == "paused"
    assert api.patch(f"{V1}/webhooks/{made['id']}", json={"status": "live"}).json()["status"] == "live"
    assert api.patch(f"{V1}/webhooks/{made['id']}", json={"status": "paused"}).json()["status"] == "paused"
    body = assert_problem(api.patch(f"{V1}/webhooks/{made['id']}", json={"status": "asleep"}), 422, "invalid_input")
    assert "Paused" in body["errors"][0]["detail"]


def test_max_per_second_null_removes_it_and_absent_leaves_it(api):
    made = _webhook(api, max_per_second=2.5)
    assert made["max_per_second"] == 2.5
    url = f"{V1}/webhooks/{made['id']}"
    assert api.patch(url, json={"name": "Orders v2"}).json()["max_per_second"] == 2.5
    assert api.patch(url, json={"max_per_second": 40}).json()["max_per_second"] == 40
    assert api.patch(url, json={"max_per_second": None}).json()["max_per_second"] is None
    assert api.get(url).json()["max_per_second"] is None
    with session_scope() as session:
        edits = [e.detail for e in audit.list_entries(session=session, action="webhook.edited").items]
    assert edits[0]["before"]["max_per_second"] == 40 and edits[0]["after"]["max_per_second"] is None


@pytest.mark.parametrize(
    "value, words",
    [
        (0, "from 0.1 to 1,000"),
        (5000, "from 0.1 to 1,000"),
        (-1, "from 0.1 to 1,000"),
        ("5", "must be a number"),
        (True, "must be a number"),
        ([5], "must be a number"),
    ],
)
def test_a_bad_max_per_second_is_a_problem_naming_the_field(api, value, words):
    made = _webhook(api)
    for response in (
        api.patch(f"{V1}/webhooks/{made['id']}", json={"max_per_second": value}),
        api.post(
            f"{V1}/webhooks",
            json={"name": "B", "url": "https://127.0.0.1:9/b", "events": ["payment.created"], "max_per_second": value},
        ),
    ):
        body = assert_problem(response, 422, "invalid_input")
        assert [e["field"] for e in body["errors"]] == ["max_per_second"] and words in body["detail"], body
    assert api.get(f"{V1}/webhooks").json()["total"] == 1


# ---------------------------------------------------------------- resend


def test_resend_sends_now_and_answers_with_the_real_outcome(api, receiver):
    made = _webhook(api, url=receiver.url("/fail"))
    first = api.post(f"{V1}/webhooks/{made['id']}/test", json={"event_type": "payment.created"}).json()
    assert (first["status"], first["http_code"]) == ("retrying", 500)
    api.patch(f"{V1}/webhooks/{made['id']}", json={"url": receiver.url("/ok")})

    response = api.post(f"{V1}/deliveries/{first['delivery_id']}/resend")
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert (outcome["delivery_id"], outcome["attempt"], outcome["status"], outcome["http_code"], outcome["error"]) == (
        first["delivery_id"],
        2,
        "success",
        200,
        None,
    )
    assert outcome["response_body"] == '{"received":true}'
    (hit,) = receiver.hits("/ok")
    assert hit.headers["webhook-id"] == first["event_id"]  # the same event, the same webhook-id
    detail = api.get(f"{V1}/deliveries/{first['delivery_id']}").json()
    assert [(a["number"], a["http_code"]) for a in detail["attempts"]] == [(1, 500), (2, 200)]
    # The answer is the attempt as recorded, its duration too.
    recorded = detail["attempts"][1]
    assert (outcome["duration_ms"], outcome["response_body"]) == (recorded["duration_ms"], recorded["response_body"])
    assert ("delivery.resent", "local admin") in _audit_actions()

    api.patch(f"{V1}/webhooks/{made['id']}", json={"url": receiver.url("/gone")})
    gone = api.post(f"{V1}/deliveries/{first['delivery_id']}/resend").json()
    assert (gone["attempt"], gone["http_code"]) == (3, 410)


def test_resend_refusals_are_problems(api):
    made = _webhook(api)
    api.post(f"{V1}/events", json={"type": "payment.created", "data": {"id": "pay_1"}})
    (delivery,) = api.get(f"{V1}/webhooks/{made['id']}/deliveries").json()["items"]
    api.post(f"{V1}/webhooks/{made['id']}/pause")
    body = assert_problem(api.post(f"{V1}/deliveries/{delivery['id']}/resend"), 422, "invalid_input")
    assert body["errors"][0]["field"] == "delivery" and "Paused" in body["detail"]
    assert_problem(api.post(f"{V1}/deliveries/4242/resend"), 404, "not_found")
    assert_problem(api.post(f"{V1}/deliveries/x/resend"), 404, "not_found")


# ---------------------------------------------------------------- recoveries


RECOVERY_KEYS = {
    "id",
    "webhook_id",
    "state",
    "since",
    "event_types",
    "statuses",
    "total",
    "queued",
    "sent",
    "succeeded",
    "failed",
    "queuing_done",
    "percent",
    "created_by",
    "created_at",
    "finished_at",
}


def test_recovery_start_status_list_and_cancel(api):
    made = _webhook(api)
    _failed_deliveries(api, made["id"], 3)
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    started = api.post(f"{V1}/webhooks/{made['id']}/recoveries", json={"since": since})
    assert started.status_code == 202, started.text
    progress = started.json()
    assert set(progress) == RECOVERY_KEYS
    assert (
        progress["webhook_id"],
        progress["state"],
        progress["total"],
        progress["queued"],
        progress["sent"],
        progress["percent"],
        progress["statuses"],
        progress["event_types"],
        progress["created_by"],
    ) == (made["id"], "running", 3, 0, 0, 0, ["failure"], [], "local admin")

    again = assert_problem(
        api.post(f"{V1}/webhooks/{made['id']}/recoveries", json={"since": since}), 409, "recovery_running"
    )
    assert again["errors"][0]["field"] == "webhook" and "already running" in again["detail"]

    assert api.get(f"{V1}/recoveries/{progress['id']}").json() == progress
    assert [r["id"] for r in api.get(f"{V1}/webhooks/{made['id']}/recoveries").json()["items"]] == [progress["id"]]

    cancelled = api.post(f"{V1}/recoveries/{progress['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    assert_problem(api.post(f"{V1}/recoveries/{progress['id']}/cancel"), 409, "recovery_not_running")
    assert [a for a, _ in _audit_actions() if a.startswith("recovery.")] == ["recovery.started", "recovery.cancelled"]

    # Cancelled, another may start; this one filters by type and status.
    filtered = api.post(
        f"{V1}/webhooks/{made['id']}/recoveries",
        json={"since": since[:10], "event_types": ["invoice.created"], "statuses": ["failure", "retrying"]},
    )
    assert filtered.status_code == 202
    assert (filtered.json()["total"], filtered.json()["state"], filtered.json()["statuses"]) == (
        0,
        "finished",
        ["failure", "retrying"],
    )  # nothing matched: finished at once
    assert filtered.json()["since"].startswith(since[:10] + "T00:00:00")


def test_a_recovery_runs_to_the_end_against_a_real_receiver(api, receiver):
    made = _webhook(api, url=receiver.url("/ok"))
    _failed_deliveries(api, made["id"], 2)
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()
    progress = api.post(f"{V1}/webhooks/{made['id']}/recoveries", json={"since": since}).json()

    # What a delivering process's job does, step by step: queue, send, finish.
    from kwik_console.delivery import scheduler

    assert recovery.run_recoveries(get_engine(), owner="test") == 2
    queued = api.get(f"{V1}/recoveries/{progress['id']}").json()
    assert (queued["state"], queued["queued"], queued["sent"]) == ("running", 2, 0)
    ids = [d["id"] for d in api.get(f"{V1}/webhooks/{made['id']}/deliveries").json()["items"]]
    outcomes = asyncio.run(scheduler.deliver_now(ids))
    assert [o.status for o in outcomes] == ["success", "success"]
    recovery.run_recoveries(get_engine(), owner="test")
    done = api.get(f"{V1}/recoveries/{progress['id']}").json()
    assert (done["state"], done["sent"], done["succeeded"], done["failed"], done["percent"]) == (
        "finished",
        2,
        2,
        0,
        100,
    )
    assert len(receiver.hits("/ok")) == 2


@pytest.mark.parametrize(
    "body, field",
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2999-01-01T00:00:00Z"}, "since"),
        ({}, "since"),
        ({"since": "2024-01-01", "statuses": ["success"]}, "statuses"),
        ({"since": "2024-01-01", "event_types": ["payment.nope"]}, "event_types"),
        ({"since": "2024-01-01", "colour": "red"}, "colour"),
    ],
)
def test_bad_recovery_input_is_a_problem_naming_the_field(api, body, field):
    made = _webhook(api)
    problem = assert_problem(api.post(f"{V1}/webhooks/{made['id']}/recoveries", json=body), 422, "invalid_input")
    assert [e["field"] for e in problem["errors"]] == [field], problem
    assert api.get(f"{V1}/webhooks/{made['id']}/recoveries").json()["items"] == []


def test_unknown_recoveries_and_webhooks_are_404(api):
    assert_problem(api.get(f"{V1}/recoveries/77"), 404, "not_found")
    assert "Recovery abc does not exist." in assert_problem(api.get(f"{V1}/recoveries/abc"), 404, "not_found")["detail"]
    assert_problem(api.post(f"{V1}/recoveries/77/cancel"), 404, "not_found")
    assert_problem(api.get(f"{V1}/webhooks/77/recoveries"), 404, "not_found")
    assert_problem(api.post(f"{V1}/webhooks/77/recoveries", json={"since": "2024-01-01"}), 404, "not_found")


# ---------------------------------------------------------------- the operational webhook


def test_the_operational_webhook_set_read_and_removed_by_the_local_admin(api, receiver):
    assert_problem(api.get(f"{V1}/operational-webhook"), 404, "not_found")
    saved = api.put(f"{V1}/operational-webhook", json={"url": receiver.url("/ops")})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["secret"].startswith("whsec_") and body["url"] == receiver.url("/ops")
    assert body["events"] == catalog.operational_type_names() and body["status"] == "live"
    shown = api.get(f"{V1}/operational-webhook").json()
    assert "secret" not in shown and shown == {k: v for k, v in body.items() if k != "secret"}
    assert api.get(f"{V1}/webhooks").json()["total"] == 0  # not one of the merchant's webhooks

    moved = api.put(f"{V1}/operational-webhook", json={"url": receiver.url("/ops2")}).json()
    assert moved["id"] == body["id"] and moved["url"] == receiver.url("/ops2")
    bad = assert_problem(
        api.put(f"{V1}/operational-webhook", json={"url": "ftp://ops.example.invalid"}), 422, "invalid_input"
    )
    assert [e["field"] for e in bad["errors"]] == ["url"]

    assert api.delete(f"{V1}/operational-webhook").status_code == 204
    assert_problem(api.get(f"{V1}/operational-webhook"), 404, "not_found")
    assert_problem(api.delete(f"{V1}/operational-webhook"), 404, "not_found")
    assert [a for a, _ in _audit_actions() if a.startswith("operational_webhook.")] == [
        "operational_webhook.set",
        "operational_webhook.set",
        "operational_webhook.removed",
    ]


def test_no_token_scope_reaches_the_operational_webhook(remote):
    every_scope = _bearer("read,write,publish")
    for method, body in (("GET", None), ("PUT", {"url": "https://127.0.0.1:9/ops"}), ("DELETE", None)):
        response = remote.request(method, f"{V1}/operational-webhook", json=body, headers=every_scope)
        problem = assert_problem(response, 403, "forbidden")
        assert "needs the admin scope" in problem["detail"]
    with session_scope() as session:
        from kwik_console.operations import notices

        assert notices.operational_webhook(session=session) is None


def test_the_write_scope_pauses_resends_and_recovers_and_read_does_not(remote, api):
    made = _webhook(api)
    _failed_deliveries(api, made["id"], 1)
    (delivery,) = api.get(f"{V1}/webhooks/{made['id']}/deliveries").json()["items"]
    read, write = _bearer("read"), _bearer("write")
    calls = {
        "pause": lambda h: remote.post(f"{V1}/webhooks/{made['id']}/pause", headers=h),
        "resume": lambda h: remote.post(f"{V1}/webhooks/{made['id']}/resume", headers=h),
        "recover": lambda h: remote.post(
            f"{V1}/webhooks/{made['id']}/recoveries", json={"since": "2024-01-01"}, headers=h
        ),
        "recoveries": lambda h: remote.get(f"{V1}/webhooks/{made['id']}/recoveries", headers=h),
    }
    for name, call in calls.items():
        if name != "recoveries":
            assert_problem(call(read), 403, "forbidden")
        assert call(write).status_code < 300, name
    assert remote.get(f"{V1}/webhooks/{made['id']}/recoveries", headers=read).status_code == 200
    (started,) = remote.get(f"{V1}/webhooks/{made['id']}/recoveries", headers=read).json()["items"]
    assert started["created_by"].startswith("token t-write")
    assert_problem(remote.post(f"{V1}/recoveries/{started['id']}/cancel", headers=read), 403, "forbidden")
    assert remote.post(f"{V1}/recoveries/{started['id']}/cancel", headers=write).json()["state"] == "cancelled"
    assert_problem(remote.post(f"{V1}/deliveries/{delivery['id']}/resend", headers=read), 403, "forbidden")


def test_openapi_describes_the_new_routes_and_fields(api):
    spec = api.get(f"{V1}/openapi.json").json()
    for path, method in [
        ("/webhooks/{webhook_id}/pause", "post"),
        ("/webhooks/{webhook_id}/resume", "post"),
        ("/deliveries/{delivery_id}/resend", "post"),
        ("/webhooks/{webhook_id}/recoveries", "post"),
        ("/webhooks/{webhook_id}/recoveries", "get"),
        ("/recoveries/{recovery_id}", "get"),
        ("/recoveries/{recovery_id}/cancel", "post"),
        ("/operational-webhook", "get"),
        ("/operational-webhook", "put"),
        ("/operational-webhook", "delete"),
    ]:
        operation = spec["paths"][V1 + path][method]
        assert operation["summary"] and "422" in operation["responses"], (path, method)
    schemas = spec["components"]["schemas"]
    assert {"max_per_second", "failing_since", "disabled_reason", "disabled_at"} <= set(
        schemas["WebhookOut"]["properties"]
    )
    assert "paused" in schemas["WebhookOut"]["properties"]["status"]["description"]
    assert "secret" not in schemas["OperationalWebhookOut"]["properties"]
    assert spec["paths"][V1 + "/webhooks/{webhook_id}/recoveries"]["post"]["responses"]["202"]
