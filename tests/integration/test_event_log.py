"""The event log's reading: keyset pages, each filter, and payload search, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from kwik_console.core.errors import InvalidInput
from kwik_console.events import deliveries, search
from kwik_console.events.publishing import publish
from kwik_console.store import db
from tests import factories


def make_hook(name="Orders service", events=("payment.created", "invoice.created")):
    return factories.make_hook("https://127.0.0.1:9/orders/kwik", events=events, name=name, status="live")


def ids(page) -> list[int]:
    return [d.id for d in page.items]


def read(**kwargs):
    with db.session_scope() as s:
        return deliveries.list_deliveries(session=s, **kwargs)


def test_paging_visits_every_delivery_once_newest_first(kwik):
    hook = make_hook()
    made = []
    for n in range(7):
        made += publish("payment.created", {"object": "payment", "id": f"pay_{n}"}, wake=False).delivery_ids
    seen, before = [], None
    for _ in range(4):
        page = read(webhook_id=hook.id, limit=3, before_id=before)
        assert len(page.items) <= 3
        seen += ids(page)
        before = page.next_before_id
        if before is None:
            break
    # `<` and not `<=`: no delivery twice; and the keyset really moves: every one, once, in order.
    assert seen == sorted(made, reverse=True)
    assert read(webhook_id=hook.id, limit=3, before_id=made[3]).items[0].id == made[2]
    assert ids(read(webhook_id=hook.id, limit=50, before_id=made[0])) == []


def test_event_type_and_test_filters(kwik):
    hook = make_hook()
    payment = publish("payment.created", {"object": "payment", "id": "pay_1"}, wake=False).delivery_ids
    invoice = publish("invoice.created", {"object": "invoice", "id": "inv_1"}, wake=False).delivery_ids
    test = publish(
        "invoice.created", {"object": "invoice", "id": "inv_2"}, test=True, webhook_id=hook.id, wake=False
    ).delivery_ids
    assert ids(read(webhook_id=hook.id, event_type="payment.created")) == payment
    assert ids(read(webhook_id=hook.id, event_type="invoice.created")) == test + invoice
    assert ids(read(webhook_id=hook.id, test=True)) == test
    assert ids(read(webhook_id=hook.id, test=False)) == invoice + payment
    assert ids(read(webhook_id=hook.id, test=False, event_type="invoice.created")) == invoice


def test_search_by_event_id_or_a_payload_value(kwik):
    hook = make_hook()
    other = make_hook("CRM", events=("payment.created",))
    wanted = publish(
        "payment.created",
        {
            "object": "payment",
            "id": "pay_01JDXQ4ZK7",
            "customer": {"email": "jane.doe@hartandco.example"},
            "amount": 4200,
        },
        wake=False,
    )
    publish(
        "payment.created",
        {"object": "payment", "id": "pay_01JDXZZZZZ", "customer": {"email": "sam@hartandco.example"}, "amount": 100},
        wake=False,
    )
    on_hook = [d for d in wanted.delivery_ids if d != _delivery_of(other.id, wanted.event.id)]

    for typed in ("pay_01JDXQ4ZK7", "PAY_01jdxq4", "jane.doe@hartandco.example", "Jane.Doe", wanted.event.id):
        assert ids(read(webhook_id=hook.id, search=typed)) == on_hook, typed
    assert len(read(webhook_id=hook.id, search="hartandco").items) == 2
    assert ids(read(webhook_id=hook.id, search="nobody@nowhere.example")) == []
    assert ids(read(webhook_id=hook.id, search="   ")) == ids(read(webhook_id=hook.id))
    with pytest.raises(InvalidInput):
        read(webhook_id=hook.id, search="x" * (search.MAX_QUERY + 1))


def test_a_common_word_finds_the_same_pages_as_a_rare_value(kwik, monkeypatch):
    """SQLite walks the log for a word most events hold; the pages must be those of the other way."""
    hook = make_hook()
    make_hook("CRM", events=("payment.created",))
    for n in range(12):
        publish(
            "payment.created" if n % 3 else "invoice.created",
            {"object": "payment", "id": f"pay_{n}", "note": "refund" if n % 2 else "sale"},
            wake=False,
        )

    def pages(typed: str) -> list[list[int]]:
        found, before = [], None
        while True:
            page = read(webhook_id=hook.id, search=typed, limit=2, before_id=before)
            found.append(ids(page))
            if (before := page.next_before_id) is None:
                return found

    rare = {typed: pages(typed) for typed in ("refund", "sale", "pay", "nothing")}
    assert sum(len(p) for p in rare["refund"]) == 6 and sum(len(p) for p in rare["pay"]) == 12
    monkeypatch.setattr(search, "COMMON_MATCHES", 1)  # every word is common now
    assert {typed: pages(typed) for typed in rare} == rare


def _delivery_of(webhook_id: int, event_id: str) -> int | None:
    page = read(webhook_id=webhook_id, search=event_id)
    return page.items[0].id if page.items else None


def test_fts_query_is_a_phrase_with_a_prefix():
    assert search.fts_query("pay_01JDX…") == '"pay 01jdx" *'
    assert search.fts_query('a "quoted" OR b') == '"a quoted or b" *'
    assert search.fts_query("@@@") is None
