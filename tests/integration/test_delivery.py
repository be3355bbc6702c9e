"""The dispatcher against real HTTP endpoints on 127.0.0.1 and a real SQLite file."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import socket
import time

import aiohttp
import pytest
from sqlmodel import Session, func, select
from standardwebhooks.webhooks import Webhook as Verifier

from kwik_console import __version__
from kwik_console.core.clock import utcnow
from kwik_console.delivery import scheduler
from kwik_console.delivery.claims import claim_deliveries
from kwik_console.events.publishing import publish
from kwik_console.store import db
from kwik_console.store.tables import Attempt, Delivery
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import configure
from tests.factories import make_hook, send_test


def load(model, ident):
    with Session(db.get_engine()) as s:
        return s.get(model, ident)


def attempt_count_of(delivery_ids):
    with Session(db.get_engine()) as s:
        return s.exec(select(func.count()).select_from(Attempt).where(Attempt.delivery_id.in_(delivery_ids))).one()


def attempts_of(delivery_id):
    with Session(db.get_engine()) as s:
        return s.exec(select(Attempt).where(Attempt.delivery_id == delivery_id).order_by(Attempt.number)).all()


def test_success_is_signed_and_recorded(kwik, receiver):
    webhook = make_hook(receiver.url("/ok"))
    published, outcome = send_test(webhook.id)
    assert (outcome.status, outcome.http_code, outcome.error) == ("success", 200, None)
    assert outcome.response_body == '{"received":true}'

    (request,) = receiver.hits("/ok")
    assert request.body == published.event.body.encode()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"Kwik-Webhooks/{__version__}"
    assert request.headers["webhook-id"] == published.event.id
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 30
    assert Verifier(webhook.secret).verify(request.body, request.headers)["test"] is True

    delivery = load(Delivery, outcome.delivery_id)
    assert (delivery.status, delivery.attempt_count, delivery.last_http_code) == ("success", 1, 200)
    assert delivery.next_attempt_at is None and delivery.lease_until is None
    (attempt,) = attempts_of(delivery.id)
    assert attempt.request_headers["webhook-id"] == published.event.id
    assert attempt.response_headers["content-type"] == "text/plain"


@pytest.mark.parametrize(
    ("path", "status", "code", "error"),
    [
        ("/fail", "retrying", 500, None),
        ("/gone", "failure", 410, None),
        ("/moved", "retrying", 301, None),
        ("/slow", "retrying", None, "timeout"),
        ("/reset", "retrying", None, "connection"),
    ],
)
def test_failed_attempts(kwik, receiver, path, status, code, error):
    webhook = make_hook(receiver.url(path))
    before = utcnow()
    _, outcome = send_test(webhook.id)
    after = utcnow()
    assert (outcome.status, outcome.http_code) == (status, code)
    if error:
        assert error in outcome.error
    else:
        assert outcome.error is None
    delivery = load(Delivery, outcome.delivery_id)
    assert delivery.status == status
    if status == "retrying":
        # First retry 0.3 s +-20 % (the test schedule) after the attempt was recorded,
        # which happened between `before` and `after`.
        assert before + dt.timedelta(seconds=0.24) <= delivery.next_attempt_at <= after + dt.timedelta(seconds=0.36)
    else:
        assert delivery.next_attempt_at is None
    assert len(attempts_of(delivery.id)) == 1


def test_a_2xx_whose_body_breaks_off_is_a_success_and_says_so_in_the_body(kwik, receiver):
    webhook = make_hook(receiver.url("/cut"))
    _, outcome = send_test(webhook.id)
    assert (outcome.status, outcome.http_code, outcome.error) == ("success", 200, None)
    (attempt,) = attempts_of(outcome.delivery_id)
    assert attempt.error is None
    assert attempt.response_body.startswith("(the response body broke off: connection")


def test_redirect_is_not_followed(kwik, receiver):
    webhook = make_hook(receiver.url("/moved"))
    _, outcome = send_test(webhook.id)
    assert outcome.http_code == 301
    assert receiver.hits("/moved") and not receiver.hits("/ok")


def test_an_endpoints_cookies_are_never_sent_back(kwik, receiver):
    # By host name: cookie jars keep no cookies for an IP address, so 127.0.0.1 would prove nothing.
    make_hook(receiver.url("/cookie").replace("127.0.0.1", "localhost"))

    async def main():
        async with scheduler.running():  # one client for both deliveries, as in a running console
            for n in (1, 2):
                await asyncio.to_thread(publish, "payment.created", {"object": "payment", "id": f"pay_{n}"})
                assert await asyncio.to_thread(receiver.wait_for, lambda reqs: len(reqs) == n, 10.0)

    asyncio.run(main())
    first, second = receiver.hits("/cookie")
    assert "cookie" not in first.headers and "cookie" not in second.headers


def test_retry_after_is_honoured_but_clamped(kwik, receiver):
    webhook = make_hook(receiver.url("/busy"))  # asks for 120 s
    before = utcnow()
    _, outcome = send_test(webhook.id)
    after = utcnow()
    assert (outcome.status, outcome.http_code) == ("retrying", 503)
    # Clamped to 2x the 0.3 s scheduled delay, then jittered upwards by at most 20 %.
    assert before + dt.timedelta(seconds=0.6) <= outcome.next_attempt_at <= after + dt.timedelta(seconds=0.72)


def test_connection_refused(kwik):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once we leave: nothing listens there
    webhook = make_hook(f"http://127.0.0.1:{port}/hook")
    _, outcome = send_test(webhook.id)
    assert outcome.status == "retrying" and outcome.error == "connection refused"


def test_big_response_is_cut_at_20_kb_and_not_downloaded(kwik, receiver):
    webhook = make_hook(receiver.url("/big"))
    _, outcome = send_test(webhook.id)
    assert (outcome.status, outcome.http_code) == ("success", 200)
    assert len(outcome.response_body) == 20 * 1024
    assert len(attempts_of(outcome.delivery_id)[0].response_body) == 20 * 1024
    assert receiver.big_finished.wait(5)
    # The receiver stopped being able to write long before the 1 MB was out.
    assert receiver.big_bytes_sent < 512 * 1024


def run_scheduler(until, timeout=15.0):
    """Run the real scheduler (APScheduler jobs) until `until()` holds; return whether it did.

    `until` may take the running scheduler as its one argument.
    """

    async def main():
        async with scheduler.running() as running:
            check = until if until.__code__.co_argcount == 0 else functools.partial(until, running)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if await asyncio.to_thread(check):
                    return True
                await asyncio.sleep(0.05)
            return False

    return asyncio.run(main())


def looked_after(moment):
    """A condition: the dispatcher has looked for due deliveries after `moment`."""
    return lambda running: (running.dispatcher.last_claim_at or moment) > moment


def test_retries_run_from_the_scheduler_until_success(kwik, receiver):
    webhook = make_hook(receiver.url("/flaky"))  # 500 once, then 200
    published = publish("payment.created", {"object": "payment"}, wake=False)
    (delivery_id,) = published.delivery_ids
    assert run_scheduler(lambda: load(Delivery, delivery_id).status == "success")
    first, second = receiver.hits("/flaky")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == published.event.id
    assert second.at - first.at >= 0.3 * 0.8
    codes = [a.http_code for a in attempts_of(delivery_id)]
    assert codes == [500, 200]
    assert Verifier(webhook.secret).verify(second.body, second.headers)


def test_retries_exhaust_into_failure(kwik, receiver):
    make_hook(receiver.url("/fail"))
    (delivery_id,) = publish("payment.created", {"object": "payment"}, wake=False).delivery_ids
    assert run_scheduler(lambda: load(Delivery, delivery_id).status == "failure")
    delivery = load(Delivery, delivery_id)
    # Schedule "0.3,0.3": 3 attempts in all, so the Retry Counter ends at 2.
    assert (delivery.attempt_count, delivery.retry_counter, delivery.next_attempt_at) == (3, 2, None)
    assert len(receiver.hits("/fail")) == 3


def test_publish_wakes_the_running_dispatcher(kwik, receiver):
    make_hook(receiver.url("/ok"))

    async def main():
        async with scheduler.running() as running:
            # Push the polling tick far away: only the wake-up can deliver it in time.
            running._aps.modify_job(scheduler.POLL_JOB, next_run_time=utcnow() + dt.timedelta(hours=1))
            published = await asyncio.to_thread(publish, "payment.created", {"object": "payment"})
            return await asyncio.to_thread(receiver.wait_for, lambda reqs: len(reqs) == 1, 10.0), published

    delivered, published = asyncio.run(main())
    assert delivered
    assert receiver.hits("/ok")[0].headers["webhook-id"] == published.event.id


def test_disabling_cancels_scheduled_retries(kwik, receiver, monkeypatch):
    configure(monkeypatch, KWIK_RETRY_SCHEDULE="0.5,0.5")
    webhook = make_hook(receiver.url("/fail"))
    _, outcome = send_test(webhook.id)
    assert outcome.status == "retrying"
    with db.session_scope() as s:
        webhooks.update_webhook(session=s, webhook_id=webhook.id, data=WebhookInput(status="disabled"), actor=audit.CLI)
    # Until the dispatcher has looked for due deliveries after the retry time: nothing more is sent.
    assert run_scheduler(looked_after(outcome.next_attempt_at + dt.timedelta(seconds=0.1)))
    assert len(receiver.hits("/fail")) == 1
    delivery = load(Delivery, outcome.delivery_id)
    assert (delivery.status, delivery.next_attempt_at) == ("failure", None)


def test_deleting_cancels_scheduled_retries(kwik, receiver):
    webhook = make_hook(receiver.url("/fail"))
    _, outcome = send_test(webhook.id)
    with db.session_scope() as s:
        webhooks.delete_webhook(session=s, webhook_id=webhook.id, actor=audit.CLI)
    assert run_scheduler(looked_after(outcome.next_attempt_at + dt.timedelta(seconds=0.1)))
    assert len(receiver.hits("/fail")) == 1
    assert load(Delivery, outcome.delivery_id) is None


def test_slow_endpoint_does_not_starve_the_others(kwik, receiver, monkeypatch):
    # The held attempts last 19 s (the receiver holds them 20 s), longer than the fast ones may take.
    configure(
        monkeypatch,
        KWIK_MAX_IN_FLIGHT="6",
        KWIK_MAX_IN_FLIGHT_PER_WEBHOOK="2",
        KWIK_ATTEMPT_TIMEOUT="19",
        KWIK_LEASE_SECONDS="60",
    )
    make_hook(receiver.url("/hang"), events=["payout.created"], name="Slow")
    make_hook(receiver.url("/ok"), events=["payment.created"], name="Fast")
    slow_ids = [i for _ in range(10) for i in publish("payout.created", {}, wake=False).delivery_ids]
    fast_ids = [i for _ in range(20) for i in publish("payment.created", {}, wake=False).delivery_ids]

    slow_seen = []

    def fast_done():
        with Session(db.get_engine()) as s:
            done = all(s.get(Delivery, i).status == "success" for i in fast_ids)
        if done:  # note what the slow endpoint had then, and let it answer so the stop is quick
            slow_seen.append(len(receiver.hits("/hang")))
            receiver.release.set()
        return done

    try:
        assert run_scheduler(fast_done, timeout=15)
    finally:
        receiver.release.set()
    # All 20 fast deliveries got through while the slow endpoint held its
    # 2 slots the whole time, and it never had more.
    assert len(receiver.hits("/ok")) == 20
    assert slow_seen == [2] and receiver.max_concurrent["/hang"] == 2
    assert attempt_count_of(slow_ids) >= 2  # the two held attempts were recorded once answered


def test_a_delivery_in_flight_is_never_claimed_twice_and_expired_leases_are_taken_over(kwik, receiver):
    make_hook(receiver.url("/ok"))
    ids = [i for _ in range(5) for i in publish("payment.created", {}, wake=False).delivery_ids]
    engine = db.get_engine()
    now = utcnow()
    lease = now + dt.timedelta(seconds=60)
    first = claim_deliveries(engine, owner="a", now=now, lease_until=lease, limit=3).claims
    assert [c.delivery_id for c in first] == ids[:3]
    second = claim_deliveries(engine, owner="b", now=now, lease_until=lease, limit=10).claims
    assert [c.delivery_id for c in second] == ids[3:]
    assert claim_deliveries(engine, owner="c", now=now, lease_until=lease, limit=10).claims == []
    # "a" crashed: once its lease expires, its claims are taken over.
    later = now + dt.timedelta(seconds=61)
    taken_over = claim_deliveries(
        engine, owner="c", now=later, lease_until=later + dt.timedelta(seconds=60), limit=10
    ).claims
    assert sorted(c.delivery_id for c in taken_over) == ids


def test_a_claim_takes_no_more_than_each_webhooks_room(kwik, receiver):
    make_hook(receiver.url("/ok"))
    ids = [i for _ in range(6) for i in publish("payment.created", {}, wake=False).delivery_ids]
    now = utcnow()
    taken = claim_deliveries(
        db.get_engine(), owner="a", now=now, lease_until=now + dt.timedelta(seconds=60), limit=6, per_webhook=2
    )
    assert [c.delivery_id for c in taken.claims] == ids[:2]
    assert taken.saturated == {taken.claims[0].webhook_id}  # it has more due: the dispatcher comes back for them
    with Session(db.get_engine()) as s:
        leased = s.exec(select(Delivery.id).where(Delivery.leased_by.is_not(None))).all()
    assert sorted(leased) == ids[:2]


def test_test_event_envelope_is_what_was_sent(kwik, receiver):
    webhook = make_hook(receiver.url("/ok"))
    published, _ = send_test(webhook.id, "invoice.created")
    body = json.loads(receiver.hits("/ok")[0].body)
    assert body["type"] == "invoice.created" and body["test"] is True and body["id"] == published.event.id


def test_dns_error(kwik, monkeypatch):
    # The system's answer for a name that does not exist, given here so no DNS query leaves the machine.
    real = aiohttp.ThreadedResolver.resolve

    async def resolve(self, host, port=0, family=socket.AF_INET):
        if host == "no-such-host.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return await real(self, host, port, family)

    monkeypatch.setattr(aiohttp.ThreadedResolver, "resolve", resolve)
    webhook = make_hook("https://no-such-host.invalid/kwik")
    _, outcome = send_test(webhook.id)
    assert outcome.status == "retrying" and outcome.error.startswith("DNS error")


def test_tls_error(kwik, receiver):
    # https:// to an endpoint that only speaks plain HTTP: the handshake fails.
    webhook = make_hook(receiver.url("/ok").replace("http://", "https://"))
    _, outcome = send_test(webhook.id)
    assert outcome.status == "retrying" and outcome.error.startswith("TLS error")
    assert not receiver.hits("/ok")
