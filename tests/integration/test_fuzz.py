"""Property-based tests over every service input: names, URLs, event lists, publish data and ids.

The property: whatever comes in, only a clean InvalidInput or NotFound may come
out, and input that is refused writes nothing. One database per test function
(the `session` fixture), shared by its examples: fewer examples on PostgreSQL,
where each costs a round trip.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import func, select

from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.core.text import CONTROL_CHARACTERS
from kwik_console.events import catalog, deliveries
from kwik_console.events.publishing import publish
from kwik_console.store.tables import Delivery, Event, PreviousSecret, Subscription, Webhook
from kwik_console.team import audit
from kwik_console.webhooks import rules
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput

CLEAN_ERRORS = (InvalidInput, NotFound)
TABLES = (Webhook, Subscription, Event, Delivery, PreviousSecret)


def fuzz(kwik, **kwargs):
    """Hypothesis settings for this test's database: one file or database for all its examples."""
    postgres = kwik.database_url.startswith("postgresql")
    return settings(
        max_examples=50 if postgres else 100,
        deadline=None,
        database=None,  # nothing written into the working tree
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        **kwargs,
    )


def counts(session) -> tuple[int, ...]:
    return tuple(session.exec(select(func.count()).select_from(t)).one() for t in TABLES)


# ---------------------------------------------------------------- strategies

# Text as people and programs send it: any code point, including lone surrogates,
# controls, ANSI escapes, bidi overrides and NUL, which databases refuse.
odd = st.sampled_from(
    [
        "\x00",
        "\x1b[31m",
        "\n",
        "\t",
        "\r",
        "\x7f",
        "\x9b",
        "\u202e",
        "\u2028",
        "\ufeff",
        "\ud800",
        "\udfff",
        "\U0001f600",
        "é",
        "ß",
        "İ",
        "ﬁ",
        " ",
        "%",
        "_",
        "\\",
        "'",
        '"',
    ]
)
chars = st.one_of(st.characters(), st.characters(categories=["Cs"]))
text = st.one_of(st.text(chars, max_size=120), st.lists(st.one_of(odd, st.text(max_size=5)), max_size=12).map("".join))

hosts = st.one_of(
    st.sampled_from(
        [
            "hooks.example.com",
            "localhost",
            "127.0.0.1",
            "[::1]",
            "[::1",
            "bücher.example",
            "BÜCHER.example",
            "xn--bcher-kva.example",
            "xn--a.example",
            "☃.example",
            "ドメイン.テスト",
            "a..b",
            "",
            "é" * 64,
            "exa mple.com",
            "exa\x00mple.com",
            "user:pw@hooks.example.com",
            "10.0.0.5",
        ]
    ),
    st.text(chars, max_size=30),
)
ports = st.one_of(st.just(""), st.integers(-1, 70_000).map(lambda p: f":{p}"), st.sampled_from([":", ":x", ":0"]))


def urls_to(host_names):
    return st.builds(
        lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
        st.sampled_from(["https", "http", "HTTPS", "ftp", ""]),
        host_names,
        ports,
        st.one_of(st.just("/kwik"), text.map(lambda t: "/" + t)),
    )


urls = st.one_of(urls_to(hosts), text)
# No test makes a Live webhook to a host off this machine: any URL comes with a
# status other than Live, and Live (given, or by default) only with a loopback host.
urls_with_status = st.one_of(
    st.tuples(st.one_of(st.none(), urls), st.sampled_from(["Disabled", "paused", ""])),
    st.tuples(
        st.one_of(st.none(), urls_to(st.sampled_from(["localhost", "LOCALHOST", "127.0.0.1", "127.9.9.9", "[::1]"]))),
        st.sampled_from([None, "live"]),
    ),
)
event_lists = st.one_of(
    st.none(),
    st.lists(st.one_of(st.sampled_from(catalog.event_type_names()), text), max_size=5),
)
ids = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([-1, 0, 1, 2, 3, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 99999999999999999999]),
)


def nest(value, depth: int):
    for _ in range(depth):
        value = {"a": value}
    return value


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**5000), 10**5000),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=20,
)
publish_data = st.one_of(
    st.dictionaries(text, json_values, max_size=5),
    st.builds(nest, json_values, st.integers(0, 40)),  # around the depth limit
    st.sampled_from([nest({}, 10_000), {"blob": "x" * 300_000}, {"n": float("nan")}, {"s": "\ud800"}]),
    json_values,  # not an object at all, often
)


# ---------------------------------------------------------------- properties


def test_creating_webhooks_from_any_input(kwik, session):
    @fuzz(kwik)
    @given(name=st.one_of(st.none(), text), url_and_status=urls_with_status, events=event_lists)
    def check(name, url_and_status, events):
        url, status = url_and_status
        before = counts(session)
        try:
            webhook = webhooks.create_webhook(
                session=session, data=WebhookInput(name, url, events, status), actor=audit.CLI
            )
            session.commit()
        except CLEAN_ERRORS:
            session.rollback()
            assert counts(session) == before
            return
        # Accepted: it reads back exactly, and is what a receiver and a terminal can take.
        stored = webhooks.get_webhook(session=session, webhook_id=webhook.id)
        assert stored.name == webhook.name and 1 <= len(stored.name) <= rules.NAME_MAX
        assert not CONTROL_CHARACTERS.search(stored.name + stored.url)
        assert stored.url.split("//", 1)[1].split("/", 1)[0].isascii()  # the host in its A-label form
        assert webhooks.webhook_events(session=session, webhook_id=webhook.id)

    check()


def test_updating_any_webhook_id_with_any_input(kwik, session):
    # Disabled, as the updates below may point it anywhere: no test makes a Live webhook off this machine.
    existing = webhooks.create_webhook(
        session=session,
        data=WebhookInput(name="Orders", url="https://127.0.0.1:9/kwik", events=["payment.created"], status="disabled"),
        actor=audit.CLI,
    )
    session.commit()

    @fuzz(kwik)
    @given(
        webhook_id=st.one_of(ids, st.just(existing.id)),
        name=st.one_of(st.none(), text),
        url=st.one_of(st.none(), urls),
        events=event_lists,
    )
    def check(webhook_id, name, url, events):
        before = counts(session)
        was = session.exec(select(Webhook.name, Webhook.url).where(Webhook.id == existing.id)).one()
        try:
            webhooks.update_webhook(
                session=session, webhook_id=webhook_id, data=WebhookInput(name, url, events), actor=audit.CLI
            )
            session.commit()
        except CLEAN_ERRORS:
            session.rollback()
            assert counts(session) == before
            assert session.exec(select(Webhook.name, Webhook.url).where(Webhook.id == existing.id)).one() == was

    check()


def test_every_id_taking_service_with_any_id(kwik, session):
    webhook = webhooks.create_webhook(
        session=session,
        data=WebhookInput(name="Orders", url="https://127.0.0.1:9/kwik", events=["payment.created"]),
        actor=audit.CLI,
    )
    session.commit()
    publish("payment.created", {"object": "payment"}, session=session, wake=False)
    services = {
        "get": lambda i: webhooks.get_webhook(session=session, webhook_id=i),
        "events": lambda i: webhooks.webhook_events(session=session, webhook_id=i),
        "previous secrets": lambda i: webhooks.previous_secrets(session=session, webhook_id=i),
        "rotate": lambda i: webhooks.rotate_secret(session=session, webhook_id=i, actor=audit.CLI),
        "delete": lambda i: webhooks.delete_webhook(session=session, webhook_id=i, actor=audit.CLI),
        "delivery": lambda i: deliveries.get_delivery(session=session, delivery_id=i),
        "log": lambda i: deliveries.list_deliveries(session=session, webhook_id=i),
        "log page": lambda i: deliveries.list_deliveries(session=session, before_id=i),
        "test event": lambda i: publish("payment.created", {}, test=True, webhook_id=i, session=session, wake=False),
    }

    @fuzz(kwik)
    @given(service=st.sampled_from(sorted(services)), any_id=ids)
    def check(service, any_id):
        # Every id but the webhook's and its delivery's names nothing; those two are
        # left in place so the services also run against rows that exist.
        if service in ("rotate", "delete") and any_id == webhook.id:
            any_id += 1
        before = counts(session)
        try:
            services[service](any_id)
            session.commit()
        except CLEAN_ERRORS:
            session.rollback()
            assert counts(session) == before

    check()


def test_publishing_any_data(kwik, session):
    live = webhooks.create_webhook(
        session=session,
        data=WebhookInput(name="Orders", url="https://127.0.0.1:9/kwik", events=catalog.event_type_names()),
        actor=audit.CLI,
    )
    session.commit()

    @fuzz(kwik)
    @given(
        event_type=st.one_of(st.sampled_from(catalog.event_type_names()), text),
        data=publish_data,
        test=st.booleans(),
        webhook_id=st.one_of(st.none(), st.just(live.id), ids),
    )
    def check(event_type, data, test, webhook_id):
        before = counts(session)
        try:
            published = publish(event_type, data, test=test, webhook_id=webhook_id, session=session, wake=False)
        except CLEAN_ERRORS:
            session.rollback()
            assert counts(session) == before
            return
        # Accepted: the body is strict JSON (no NaN, no lone surrogates) carrying the data unchanged.
        body = published.event.body.encode("utf-8")
        assert len(body) <= 256 * 1024
        sent = json.loads(body, parse_constant=lambda name: pytest.fail(f"{name} in the body"))
        assert sent["data"] == data
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in _leaves(sent["data"]))

    check()


def test_searching_with_any_text(kwik, session):
    webhooks.create_webhook(
        session=session,
        data=WebhookInput(name="Orders", url="https://127.0.0.1:9/kwik", events=["payment.created"]),
        actor=audit.CLI,
    )
    session.commit()

    @fuzz(kwik)
    @given(search=st.one_of(st.none(), text), page=st.integers(-3, 5))
    def check(search, page):
        try:
            webhooks.list_webhooks(session=session, search=search, page=page)
        except InvalidInput:
            session.rollback()

    check()


def _leaves(value):
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            yield item
