import datetime as dt

import pytest
from sqlmodel import func, select, update
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from kwik_console.core.clock import utcnow
from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.events.publishing import publish
from kwik_console.store.tables import Attempt, Delivery, PreviousSecret, Subscription, Webhook
from kwik_console.team import audit
from kwik_console.webhooks import rules
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from kwik_console.webhooks.signing import active_secrets, signature_headers

GOOD = dict(name="Orders service", url="https://127.0.0.1:9/kwik", events=["payment.created"])


def make(session, **overrides):
    return webhooks.create_webhook(session=session, data=WebhookInput(**(GOOD | overrides)), actor=audit.CLI)


def count(session, model):
    return session.exec(select(func.count()).select_from(model)).one()


def test_create_trims_and_stores_everything(session):
    webhook = make(session, name="  Orders  ", events=["payment.updated", "customer.created", "payment.updated"])
    assert webhook.id and webhook.name == "Orders" and webhook.status == "live"
    assert webhook.secret.startswith("whsec_")
    assert webhook.created_at.tzinfo is not None
    assert webhooks.webhook_events(session=session, webhook_id=webhook.id) == ["customer.created", "payment.updated"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "Name is required"),
        ("name", "   ", "Name is required"),
        ("name", "x" * 101, "at most 100 characters"),
        ("url", "", "Webhook URL is required"),
        ("url", "hooks.example.invalid/kwik", "absolute https:// URL"),
        ("url", "ftp://hooks.example.invalid/kwik", "absolute https:// URL"),
        ("url", "https://", "absolute https:// URL"),
        ("url", "http://hooks.example.invalid/kwik", "must use https://"),
        ("url", "http://10.0.0.5/kwik", "must use https://"),
        ("url", "https://user:pw@hooks.example.invalid/kwik", "user name or password"),
        ("url", "https://hooks.example.invalid/kwik#top", "#fragment"),
        ("url", "https://hooks.example.invalid:99999/kwik", "not a valid URL"),
        ("url", "https://hooks.example.invalid/a b", "spaces"),
        ("url", "https://hooks.example.invalid/" + "a" * 2030, "at most 2,048 characters"),
        ("events", [], "Select at least one event"),
        ("events", ["payment.created", "payment.deleted"], "Unknown event type: payment.deleted"),
        ("status", "sleeping", "Status must be Live, Paused or Disabled"),
    ],
)
def test_invalid_input_names_the_field_and_writes_nothing(session, field, value, message):
    with pytest.raises(InvalidInput) as raised:
        make(session, **{field: value})
    assert list(raised.value.errors) == [field]
    assert message in raised.value.errors[field]
    assert count(session, Webhook) == 0 and count(session, Subscription) == 0


def test_every_bad_field_is_reported_at_once(session):
    with pytest.raises(InvalidInput) as raised:
        webhooks.create_webhook(session=session, data=WebhookInput(name="", url="nope", events=[]), actor=audit.CLI)
    assert set(raised.value.errors) == {"name", "url", "events"}


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/hook",
        "http://127.0.0.1/hook",
        "http://127.9.9.9/h",
        "http://[::1]:9000/hook",
        "https://127.0.0.1:9/kwik?x=1",
    ],
)
def test_loopback_http_is_allowed_in_local_mode(session, url):
    assert make(session, url=url).url == url


def test_loopback_http_is_refused_when_hosted():
    with pytest.raises(InvalidInput, match="https"):
        rules.validate(WebhookInput(**(GOOD | {"url": "http://localhost/hook"})), local_mode=False)


def test_get_missing_webhook(session):
    with pytest.raises(NotFound, match="Webhook 99 does not exist"):
        webhooks.get_webhook(session=session, webhook_id=99)


def test_update_changes_only_what_is_given(session):
    webhook = make(session)
    secret = webhook.secret
    updated = webhooks.update_webhook(
        session=session,
        webhook_id=webhook.id,
        data=WebhookInput(events=["invoice.created", "invoice.updated"]),
        actor=audit.CLI,
    )
    assert updated.name == GOOD["name"] and updated.url == GOOD["url"] and updated.secret == secret
    assert webhooks.webhook_events(session=session, webhook_id=webhook.id) == ["invoice.created", "invoice.updated"]
    webhooks.update_webhook(session=session, webhook_id=webhook.id, data=WebhookInput(name="Renamed"), actor=audit.CLI)
    assert webhooks.get_webhook(session=session, webhook_id=webhook.id).name == "Renamed"


def test_invalid_update_changes_nothing(session):
    webhook = make(session)
    session.commit()
    with pytest.raises(InvalidInput):
        webhooks.update_webhook(
            session=session,
            webhook_id=webhook.id,
            data=WebhookInput(name="New name", url="http://example.invalid"),
            actor=audit.CLI,
        )
    session.rollback()
    again = webhooks.get_webhook(session=session, webhook_id=webhook.id)
    assert again.name == GOOD["name"] and again.url == GOOD["url"]


def test_update_missing_webhook(session):
    with pytest.raises(NotFound):
        webhooks.update_webhook(session=session, webhook_id=42, data=WebhookInput(name="x"), actor=audit.CLI)


def test_list_is_newest_first_paginated_and_searchable(session):
    for i in range(30):
        make(session, name=f"Hook {i:02d}", url=f"https://127.0.0.1:9/svc{i % 3}/kwik")
    page1 = webhooks.list_webhooks(session=session)
    assert page1.total == 30 and page1.pages == 2 and len(page1.items) == 25
    assert page1.items[0].name == "Hook 29"
    page2 = webhooks.list_webhooks(session=session, page=2)
    assert [w.name for w in page2.items] == [f"Hook {i:02d}" for i in range(4, -1, -1)]

    by_url = webhooks.list_webhooks(session=session, search="SVC1/KWIK")
    assert by_url.total == 10 and all("svc1" in w.url for w in by_url.items)
    by_name = webhooks.list_webhooks(session=session, search="hook 1")
    assert {w.name for w in by_name.items} == {f"Hook {i}" for i in range(10, 20)}
    assert webhooks.list_webhooks(session=session, search="100%").total == 0  # wildcards are text
    assert webhooks.list_webhooks(session=session, search="_").total == 0


def test_list_rejects_bad_paging(session):
    with pytest.raises(InvalidInput, match="Page must be 1 or more"):
        webhooks.list_webhooks(session=session, page=0)
    with pytest.raises(InvalidInput, match="Page size"):
        webhooks.list_webhooks(session=session, per_page=1000)


def test_rotate_secret_keeps_the_old_one_for_a_day(session):
    webhook = make(session)
    old = webhook.secret
    rotated = webhooks.rotate_secret(session=session, webhook_id=webhook.id, actor=audit.CLI)
    assert rotated.secret != old
    (previous,) = webhooks.previous_secrets(session=session, webhook_id=webhook.id)
    assert previous.secret == old
    assert (previous.expires_at - rotated.updated_at).total_seconds() / 3600 == 24
    with pytest.raises(NotFound):
        webhooks.rotate_secret(session=session, webhook_id=777, actor=audit.CLI)


def signed_by_every_active_secret(session, webhook_id: int, now: dt.datetime) -> dict[str, str]:
    """The headers a delivery gets now: built as the dispatcher builds them."""
    webhook = webhooks.get_webhook(session=session, webhook_id=webhook_id)
    previous = [(p.secret, p.expires_at) for p in webhooks.previous_secrets(session=session, webhook_id=webhook_id)]
    return signature_headers(active_secrets(webhook.secret, previous, now), "evt_1", int(now.timestamp()), BODY)


BODY = b'{"id":"evt_1","type":"payment.created"}'


def test_a_second_rotation_within_a_day_keeps_the_original_secret_signing(session):
    webhook = make(session)
    original = webhook.secret
    second = webhooks.rotate_secret(session=session, webhook_id=webhook.id, actor=audit.CLI).secret
    session.commit()
    current = webhooks.rotate_secret(session=session, webhook_id=webhook.id, actor=audit.CLI).secret
    session.commit()
    assert len({original, second, current}) == 3
    assert [p.secret for p in webhooks.previous_secrets(session=session, webhook_id=webhook.id)] == [second, original]

    headers = signed_by_every_active_secret(session, webhook.id, utcnow())
    assert len(headers["webhook-signature"].split(" ")) == 3
    for secret in (original, second, current):  # a receiver on any of them still verifies
        assert Verifier(secret).verify(BODY, headers)["id"] == "evt_1"


def test_a_secret_stops_signing_when_its_overlap_ends_and_is_then_cleared(session):
    webhook = make(session)
    original = webhook.secret
    second = webhooks.rotate_secret(session=session, webhook_id=webhook.id, actor=audit.CLI).secret
    session.commit()
    current = webhooks.rotate_secret(session=session, webhook_id=webhook.id, actor=audit.CLI).secret
    session.commit()
    # A day after the first rotation: the original's overlap has ended, the second's has not.
    first_row = session.exec(select(PreviousSecret).where(PreviousSecret.secret == original)).one()
    session.exec(
        update(PreviousSecret)
        .where(PreviousSecret.id == first_row.id)
        .values(expires_at=utcnow() - dt.timedelta(seconds=1))
    )
    session.commit()

    headers = signed_by_every_active_secret(session, webhook.id, utcnow())
    assert len(headers["webhook-signature"].split(" ")) == 2
    with pytest.raises(WebhookVerificationError):
        Verifier(original).verify(BODY, headers)
    assert Verifier(second).verify(BODY, headers) and Verifier(current).verify(BODY, headers)

    webhooks.rotate_secret(session=session, webhook_id=webhook.id, actor=audit.CLI)  # the next rotation clears it
    session.commit()
    stored = session.exec(select(PreviousSecret.secret).where(PreviousSecret.webhook_id == webhook.id)).all()
    assert sorted(stored) == sorted([second, current])


def test_delete_removes_the_previous_secrets_too(session):
    keep, gone = make(session, name="Keep"), make(session, name="Gone")
    for webhook in (keep, gone, gone):
        webhooks.rotate_secret(session=session, webhook_id=webhook.id, actor=audit.CLI)
    session.commit()
    webhooks.delete_webhook(session=session, webhook_id=gone.id, actor=audit.CLI)
    session.commit()
    assert session.exec(select(PreviousSecret.webhook_id)).all() == [keep.id]


def test_disable_cancels_scheduled_retries(session):
    webhook = make(session)
    session.commit()
    published = publish("payment.created", {"object": "payment"}, session=session, wake=False)
    webhooks.update_webhook(
        session=session, webhook_id=webhook.id, data=WebhookInput(status="disabled"), actor=audit.CLI
    )
    delivery = session.get(Delivery, published.delivery_ids[0])
    session.refresh(delivery)
    assert delivery.status == "failure" and delivery.next_attempt_at is None


def test_delete_removes_webhook_deliveries_and_attempts(session):
    keep, gone = make(session, name="Keep"), make(session, name="Gone")
    session.commit()
    publish("payment.created", {"object": "payment"}, session=session, wake=False)
    gone_delivery = session.exec(select(Delivery).where(Delivery.webhook_id == gone.id)).one()
    session.add(Attempt(delivery_id=gone_delivery.id, number=1, attempted_at=gone_delivery.created_at))
    session.commit()
    webhooks.delete_webhook(session=session, webhook_id=gone.id, actor=audit.CLI)
    session.commit()
    assert [w.id for w in session.exec(select(Webhook))] == [keep.id]
    assert [d.webhook_id for d in session.exec(select(Delivery))] == [keep.id]
    assert count(session, Attempt) == 0
    with pytest.raises(NotFound):
        webhooks.delete_webhook(session=session, webhook_id=gone.id, actor=audit.CLI)


@pytest.mark.parametrize(
    "field, value",
    [("name", 123), ("url", 5), ("status", 5), ("events", 5), ("events", "payment.created"), ("name", b"bytes")],
)
def test_a_python_caller_giving_the_wrong_type_gets_invalid_input(session, field, value):
    with pytest.raises(InvalidInput) as refused:
        make(session, **{field: value})
    assert set(refused.value.errors) == {field}
    assert count(session, Webhook) == 0


@pytest.mark.parametrize(
    "url, message",
    [
        ("https://ex\\ample.com/", "Webhook URL must not contain a backslash."),
        ("https://exa%00mple.com/", "Webhook URL must not contain percent-escapes or an IPv6 zone."),
        ("https://a..b.com/", "Webhook URL has an invalid host name."),
        ("https://-bad-.com/", "Webhook URL has an invalid host name."),
        ("https://under_score.example.com/", "Webhook URL has an invalid host name."),
        ("https://[fe80::1%25eth0]/", "Webhook URL must not contain percent-escapes or an IPv6 zone."),
        ("https://" + "a" * 64 + ".example.com/", "Webhook URL has an invalid host name."),
    ],
)
def test_malformed_hosts_are_refused_through_the_service(session, url, message):
    with pytest.raises(InvalidInput) as refused:
        make(session, url=url)
    assert refused.value.errors == {"url": message}
    assert count(session, Webhook) == 0
