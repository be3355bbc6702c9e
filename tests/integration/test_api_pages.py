"""The webhook list's cursor is a keyset: pages hold still while webhooks are created and deleted meanwhile."""

from __future__ import annotations

import base64
import warnings

import pytest

from kwik_console.store.db import session_scope
from kwik_console.team import audit
from kwik_console.webhooks import rules
from kwik_console.webhooks import service as webhooks

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from kwik_console.api import create_app  # noqa: E402


@pytest.fixture
def api(kwik):
    with TestClient(create_app(), client=("127.0.0.1", 50123)) as client:
        yield client


def _create(name: str) -> int:
    with session_scope() as s:  # Disabled, on loopback: nothing is sent anywhere
        return webhooks.create_webhook(
            session=s,
            data=rules.WebhookInput(
                name=name, url=f"https://127.0.0.1:9/{name}", events=["payment.created"], status="disabled"
            ),
            actor=audit.CLI,
        ).id


def _page(api, cursor=None, limit=2) -> dict:
    response = api.get("/api/v1/webhooks", params={"limit": limit} | ({"cursor": cursor} if cursor else {}))
    assert response.status_code == 200, response.text
    return response.json()


def test_pages_hold_still_while_webhooks_are_created_and_deleted(api):
    for n in range(1, 8):
        _create(f"w{n}")
    seen, page = [], _page(api)
    seen += [w["name"] for w in page["items"]]
    assert seen == ["w7", "w6"]
    # Newer webhooks, made while the caller pages: with page numbers, w6 would come again.
    _create("w8")
    _create("w9")
    page = _page(api, page["next_cursor"])
    seen += [w["name"] for w in page["items"]]
    # One already seen is deleted: with page numbers, w3 would be skipped.
    with session_scope() as s:
        webhooks.delete_webhook(
            session=s,
            webhook_id=next(w.id for w in webhooks.list_webhooks(session=s, per_page=100).items if w.name == "w7"),
            actor=audit.CLI,
        )
    while page["next_cursor"]:
        page = _page(api, page["next_cursor"])
        seen += [w["name"] for w in page["items"]]
    assert seen == ["w7", "w6", "w5", "w4", "w3", "w2", "w1"]
    assert page["total"] == 8


def test_webhooks_made_in_the_same_microsecond_still_page_in_order(api):
    ids = [_create(f"s{n}") for n in range(5)]
    with session_scope() as s:  # one created_at for all: the id breaks the tie
        first = webhooks.get_webhook(session=s, webhook_id=ids[0]).created_at
        for webhook_id in ids[1:]:
            webhooks.get_webhook(session=s, webhook_id=webhook_id).created_at = first
    names, cursor = [], None
    while True:
        page = _page(api, cursor)
        names += [w["name"] for w in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert names == ["s4", "s3", "s2", "s1", "s0"]


@pytest.mark.parametrize("text", ["w:1", "w:1.2.3", "w:-5.1", "p:2", "w:999999999999999999.1", "d:10"])
def test_a_cursor_not_given_out_is_refused_plainly(api, text):
    cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    response = api.get("/api/v1/webhooks", params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["cursor"], response.json()
