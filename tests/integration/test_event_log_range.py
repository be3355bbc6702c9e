"""The event log's date range, one rule read by the service, the API and the export, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import warnings

import pytest
from sqlmodel import update

from kwik_console.core.errors import InvalidInput
from kwik_console.events import deliveries
from kwik_console.events.publishing import publish
from kwik_console.store import db
from kwik_console.store.tables import Delivery
from kwik_console.web import export
from tests import factories

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.testclient import TestClient as PlainClient  # noqa: E402

from kwik_console.api import create_app  # noqa: E402

DAY = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)


def _three_days(kwik) -> tuple[int, dict[str, int]]:
    """One delivery on each of 2, 3 and 4 November (noon UTC): their ids by day."""
    hook = factories.make_hook("https://127.0.0.1:9/range", events=("payment.created",), name="Range", status="live")
    made = {}
    for day in (2, 3, 4):
        (delivery_id,) = publish("payment.created", {"object": "payment", "id": f"pay_{day}"}, wake=False).delivery_ids
        with db.session_scope() as s:
            when = dt.datetime(2026, 11, day, 12, tzinfo=dt.UTC)
            s.exec(update(Delivery).where(Delivery.id == delivery_id).values(created_at=when))
        made[f"nov{day}"] = delivery_id
    return hook.id, made


def _ids(**kwargs) -> list[int]:
    with db.session_scope() as s:
        return [d.id for d in deliveries.list_deliveries(session=s, **kwargs).items]


def test_the_service_keeps_deliveries_inside_the_range_both_ends_included(kwik):
    hook, made = _three_days(kwik)
    assert _ids(webhook_id=hook, since=DAY) == [made["nov4"], made["nov3"]]
    assert _ids(webhook_id=hook, until=DAY) == [made["nov2"]]
    noon = DAY.replace(hour=12)
    assert _ids(webhook_id=hook, since=noon, until=noon) == [made["nov3"]]
    # Another zone names the same instants: 13:00 in Paris (UTC+1 in November) is noon UTC.
    paris = noon.astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert _ids(webhook_id=hook, since=paris, until=paris) == [made["nov3"]]
    # A time without an offset is UTC.
    assert _ids(webhook_id=hook, since=noon.replace(tzinfo=None)) == [made["nov4"], made["nov3"]]
    # The range pages like any filter.
    with db.session_scope() as s:
        first = deliveries.list_deliveries(session=s, webhook_id=hook, since=dt.datetime(2026, 11, 1), limit=1)
    assert [d.id for d in first.items] == [made["nov4"]]
    assert _ids(webhook_id=hook, since=dt.datetime(2026, 11, 1), before_id=first.next_before_id) == [
        made["nov3"],
        made["nov2"],
    ]


def test_the_service_refuses_an_end_before_the_start(kwik):
    hook, _ = _three_days(kwik)
    with pytest.raises(InvalidInput) as refused:
        _ids(webhook_id=hook, since=DAY, until=DAY - dt.timedelta(seconds=1))
    assert set(refused.value.errors) == {"until"}


def test_the_api_reads_since_and_until(kwik):
    hook, made = _three_days(kwik)
    with TestClient(create_app(), client=("127.0.0.1", 50123)) as api:
        url = f"/api/v1/webhooks/{hook}/deliveries"
        got = api.get(url, params={"since": "2026-11-03T00:00:00Z", "until": "2026-11-03T23:59:59+00:00"})
        assert got.status_code == 200, got.text
        assert [d["id"] for d in got.json()["items"]] == [made["nov3"]]
        assert [d["id"] for d in api.get(url, params={"since": "2026-11-04T00:00:00Z"}).json()["items"]] == [
            made["nov4"]
        ]
        backwards = api.get(url, params={"since": "2026-11-04T00:00:00Z", "until": "2026-11-03T00:00:00Z"})
        assert backwards.status_code == 422
        assert backwards.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in backwards.json()["errors"]] == ["until"]
        for value in ("last tuesday", "0.5", "1764428645"):  # a number is not read as seconds since 1970
            bad = api.get(url, params={"since": value})
            assert bad.status_code == 422, value
            assert bad.headers["content-type"] == "application/problem+json"
        schema = api.get("/api/v1/openapi.json").json()
        params = {p["name"] for p in schema["paths"]["/api/v1/webhooks/{webhook_id}/deliveries"]["get"]["parameters"]}
        assert {"since", "until"} <= params


def test_the_export_reads_since_and_until(kwik):
    hook, made = _three_days(kwik)
    client = PlainClient(export.app())
    got = client.get(
        f"/export/webhooks/{hook}/events.csv",
        params={"since": "2026-11-02T13:00:00+00:00", "until": "2026-11-04T11:00:00+00:00"},
    )
    assert got.status_code == 200, got.text
    assert [int(r["delivery_id"]) for r in csv.DictReader(io.StringIO(got.text))] == [made["nov3"]]
    lines = client.get(f"/export/webhooks/{hook}/events.jsonl", params={"until": "2026-11-02T23:00:00Z"}).text
    assert [int(line.split('"delivery_id": ')[1].split(",")[0]) for line in lines.splitlines()] == [made["nov2"]]
    backwards = client.get(
        f"/export/webhooks/{hook}/events.csv", params={"since": "2026-11-04T00:00:00Z", "until": "2026-11-03T00:00Z"}
    )
    assert backwards.status_code == 400
    assert client.get(f"/export/webhooks/{hook}/events.csv", params={"since": "soon"}).status_code == 400
