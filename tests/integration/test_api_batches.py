"""POST /events requests in flight together share one transaction (api/batches.py), each with its own answer.

The API runs in this process (httpx's ASGI transport) so that its requests are truly in flight at once,
on one event loop, against a real database file and a real PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import warnings

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from kwik_console.core.errors import InvalidInput
from kwik_console.events import publishing as events
from kwik_console.store.db import get_engine, session_scope
from kwik_console.store.tables import Delivery, Event
from kwik_console.store.team_tables import AuditEntry
from kwik_console.store.token_tables import AccessToken, RateLimitCounter
from kwik_console.team import audit, tokens
from kwik_console.webhooks import rules
from kwik_console.webhooks import service as webhooks
from tests.conftest import configure
from tests.integration.test_api_live import _a_fresh_window

warnings.filterwarnings("ignore", message=".*httpx2.*")
from kwik_console.api import create_app  # noqa: E402

PUBLISH = {"type": "payment.created", "data": {"id": "pay_1", "amount": 1200}}


def _webhook(name: str, events_: list[str], status: str = "live") -> int:
    with session_scope() as session:
        return webhooks.create_webhook(
            session=session,
            data=rules.WebhookInput(
                name=name, url=f"https://{name.lower()}.kwik-test.invalid/hooks", events=events_, status=status
            ),
            actor=audit.CLI,
        ).id


def _token(scopes: str, name: str = "platform") -> str:
    with session_scope() as session:
        return tokens.create_token(session=session, name=name, scopes=scopes, actor=audit.CLI).token


def _post_together(
    requests: list[tuple[dict, str | None]], *, address: str = "203.0.113.9", warm: str | None = None
) -> tuple[list[httpx.Response], int]:
    """Every request (body, token or None) in flight at once, from `address`, after a warm-up request with
    the token `warm`, if any; the answers, and how many transactions committed while they ran."""
    commits = []

    def committed(connection) -> None:
        commits.append(connection)

    def bearer(token: str | None) -> dict:
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def run():
        transport = httpx.ASGITransport(app=create_app(), client=(address, 50321))
        async with httpx.AsyncClient(transport=transport, base_url="http://kwik.test") as client:
            if warm:
                answer = await client.post("/api/v1/events", json=PUBLISH, headers=bearer(warm))
                assert answer.status_code == 202, answer.text
            sa.event.listen(get_engine(), "commit", committed)
            try:
                return await asyncio.gather(
                    *(client.post("/api/v1/events", json=body, headers=bearer(token)) for body, token in requests)
                )
            finally:
                sa.event.remove(get_engine(), "commit", committed)

    answers = asyncio.run(run())
    return answers, len(commits)


def _count(model, *where) -> int:
    with get_engine().connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(model).where(*where)).scalar_one()


def _uses() -> list[tuple[str, bool]]:
    with get_engine().connect() as conn:
        rows = conn.execute(
            sa.select(AuditEntry.actor_email, AuditEntry.detail)
            .where(AuditEntry.action == "token.used")
            .order_by(AuditEntry.id)
        )
        return [(email.split(" (")[0], bool(detail.get("rate_limited"))) for email, detail in rows]


def test_requests_in_flight_share_a_transaction_and_each_keeps_its_own_answer(kwik, monkeypatch):
    _a_fresh_window(monkeypatch)
    configure(monkeypatch, KWIK_API_RATE_LIMIT="100")
    live = _webhook("Live", ["payment.created"])
    paused = _webhook("Paused", ["payment.created"], status="paused")
    _webhook("Disabled", ["payment.created"], status="disabled")
    _webhook("Other", ["customer.created"])
    token = _token("publish")
    deep = nested = {}
    for _ in range(40):  # deeper than events.DATA_MAX_DEPTH
        nested["x"] = nested = {}
    bodies = (
        [PUBLISH] * 5
        + [{"type": "payment.nope", "data": {}}]
        + [PUBLISH] * 5
        + [{"type": "payment.created", "data": deep}]
    )

    answers, commits = _post_together([(body, token) for body in bodies], warm=token)

    assert [a.status_code for a in answers] == [202] * 5 + [422] + [202] * 5 + [422], [a.text for a in answers]
    assert commits < len(bodies), f"{commits} transactions for {len(bodies)} requests: none were shared"
    published = [a.json() for a in answers if a.status_code == 202]
    assert len({p["id"] for p in published}) == 10 and all(p["deliveries"] == 2 for p in published)
    assert answers[5].json()["errors"][0]["field"] == "type" and "Unknown event type" in answers[5].json()["detail"]
    assert answers[11].json()["errors"][0]["field"] == "data" and "nested at most" in answers[11].json()["detail"]
    # Each request its own count, as if alone: the warm-up was the first of the window.
    assert sorted(int(a.headers["ratelimit-remaining"]) for a in answers) == list(range(100 - 13, 100 - 1))

    assert _count(Event) == 11
    for p in published:  # the Live and the Paused webhook; not the Disabled one, nor the one on another type
        with get_engine().connect() as conn:
            made = conn.execute(sa.select(Delivery.webhook_id).where(Delivery.event_id == p["id"])).scalars()
            assert sorted(made) == sorted([live, paused])
    assert _uses() == [("token platform", False)] * 13  # every use audited, the refused events' too
    with get_engine().connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(RateLimitCounter.count))).scalar_one() == 13


def test_a_batch_that_would_pass_the_limit_answers_each_request_as_it_would_alone(kwik, monkeypatch):
    _a_fresh_window(monkeypatch)
    configure(monkeypatch, KWIK_API_RATE_LIMIT="5")
    _webhook("Live", ["payment.created"])
    token = _token("publish")

    answers, _ = _post_together([(PUBLISH, token)] * 8, warm=token)

    assert sorted(a.status_code for a in answers) == [202] * 4 + [429] * 4, [a.text for a in answers]
    assert all(a.json()["code"] == "rate_limited" and a.headers["retry-after"] for a in answers if a.status_code == 429)
    assert _count(Event) == 5  # the warm-up and four: nothing over the limit
    assert sorted(_uses()) == [("token platform", False)] * 5 + [("token platform", True)] * 4

    # Now known to be over its limit: refused together, each counted and audited, nothing published.
    again, commits = _post_together([(PUBLISH, token)] * 3)
    assert [a.status_code for a in again] == [429] * 3 and commits < 3
    assert {a.headers["ratelimit-remaining"] for a in again} == {"0"}
    assert _count(Event) == 5 and sorted(_uses()) == [("token platform", False)] * 5 + [("token platform", True)] * 7
    with get_engine().connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(RateLimitCounter.count))).scalar_one() == 12


def test_a_refused_token_among_others_is_refused_and_the_rest_are_published_together(kwik, monkeypatch):
    _a_fresh_window(monkeypatch)
    configure(monkeypatch, KWIK_API_RATE_LIMIT="100")
    _webhook("Live", ["payment.created"])
    publisher, reader, revoked = _token("publish"), _token("read", "reader"), _token("publish", "gone")
    with session_scope() as session:
        gone = session.exec(select(AccessToken).where(AccessToken.name == "gone")).one()
        tokens.revoke_token(session=session, token_id=gone.id, actor=audit.CLI)

    answers, commits = _post_together(
        [
            (PUBLISH, publisher),
            (PUBLISH, revoked),
            (PUBLISH, reader),
            (PUBLISH, publisher),
            (PUBLISH, reader),
            (PUBLISH, publisher),
        ],
        warm=publisher,
    )

    assert [a.status_code for a in answers] == [202, 401, 403, 202, 403, 202], [a.text for a in answers]
    assert commits < len(answers)
    assert answers[2].json()["code"] == "forbidden" and "publish scope" in answers[2].json()["detail"]
    assert _count(Event) == 4
    assert _count(AuditEntry, AuditEntry.action == "access.refused") == 2  # each of the reader's requests
    assert _uses() == [("token platform", False)] * 4


def test_local_callers_and_token_callers_share_a_transaction(kwik, monkeypatch):
    """Local mode, from this machine: a request without a token is the local admin's, counted nowhere."""
    _a_fresh_window(monkeypatch)
    configure(monkeypatch, KWIK_API_RATE_LIMIT="100")
    _webhook("Live", ["payment.created"])
    token = _token("publish")

    answers, commits = _post_together([(PUBLISH, None), (PUBLISH, token)] * 3, address="127.0.0.1", warm=token)

    assert [a.status_code for a in answers] == [202] * 6 and commits < 6
    assert [a.headers.get("ratelimit-remaining") for a in answers] == [None, "98", None, "97", None, "96"]
    assert _count(Event) == 7 and _uses() == [("token platform", False)] * 4


@pytest.mark.parametrize("subscribed", [["payment.created"], ["payment.created", "customer.created"]])
def test_publish_together_makes_the_deliveries_publish_makes(kwik, subscribed):
    ids = [
        _webhook("Live", subscribed),
        _webhook("Paused", subscribed, status="paused"),
        _webhook("Disabled", subscribed, status="disabled"),
        _webhook("Other", ["mandate.created"]),
    ]
    items = [
        ("payment.created", {"n": 1}),
        ("customer.created", {"n": 2}),
        ("payment.nope", {}),
        ("mandate.created", {"n": 3}),
        ("payment.created", {"n": float("nan")}),
    ]

    with session_scope() as session:
        together = events.publish_together(session, items)
    alone = []
    for event_type, data in items:
        try:
            alone.append(events.publish(event_type, data, wake=False))
        except InvalidInput as refused:
            alone.append(refused)

    def webhooks_of(published):
        with get_engine().connect() as conn:
            return sorted(
                conn.execute(sa.select(Delivery.webhook_id).where(Delivery.id.in_(published.delivery_ids))).scalars()
            )

    for one, other in zip(together, alone, strict=True):
        if isinstance(other, InvalidInput):
            assert isinstance(one, InvalidInput) and one.errors == other.errors
            continue
        assert webhooks_of(one) == webhooks_of(other) and one.event.type == other.event.type
        assert len(one.delivery_ids) == len(other.delivery_ids)
    assert webhooks_of(together[0]) == ids[:2]  # Live and Paused, never Disabled
    with get_engine().connect() as conn:
        body = conn.execute(sa.select(Event.body).where(Event.id == together[0].event.id)).scalar_one()
    assert body == together[0].event.body and '"data":{"n":1}' in body
