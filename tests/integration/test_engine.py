"""The delivery engine's rules, each against real endpoints on 127.0.0.1 and a real database.

Each test here fails if the rule it names is broken: a cap removed, the Live
check dropped, a retry job never set, a previous secret left out.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest
from sqlalchemy import event
from sqlmodel import Session, func, select, update
from standardwebhooks.webhooks import Webhook as Verifier

from kwik_console.core import doorbell, settings
from kwik_console.core.clock import utcnow
from kwik_console.delivery import client as http
from kwik_console.delivery import dispatcher, scheduler
from kwik_console.delivery.claims import TURNS_LEAD, Turns, claim_deliveries, release_claims
from kwik_console.delivery.dispatcher import RECHECK_AFTER_SECONDS
from kwik_console.events.publishing import publish
from kwik_console.store import db, db_clock
from kwik_console.store.tables import Attempt, Delivery, Webhook
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import configure
from tests.factories import make_hook


def delivery(delivery_id) -> Delivery:
    with Session(db.get_engine()) as s:
        return s.get(Delivery, delivery_id)


def attempt_count(delivery_ids=None) -> int:
    with Session(db.get_engine()) as s:
        query = select(func.count()).select_from(Attempt)
        if delivery_ids is not None:
            query = query.where(Attempt.delivery_id.in_(delivery_ids))
        return s.exec(query).one()


def all_finished(ids) -> bool:
    with Session(db.get_engine()) as s:
        return all(s.get(Delivery, i).next_attempt_at is None for i in ids)


async def until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(0.05)
    return False


def run_scheduler(body):
    """Run the real scheduler with these settings around `body(running)`, an async function."""

    async def main():
        async with scheduler.running() as running:
            return await body(running)

    return asyncio.run(main())


def test_a_backlog_drains_by_top_up_not_by_polling(kwik, receiver, monkeypatch):
    # The default caps (64 in all, 8 per webhook), and a poll too slow to matter:
    # only claiming more as attempts finish can drain this in time.
    configure(monkeypatch, KWIK_MAX_IN_FLIGHT="64", KWIK_MAX_IN_FLIGHT_PER_WEBHOOK="8", KWIK_POLL_SECONDS="60")
    make_hook(receiver.url("/ok"))
    ids = [i for n in range(300) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]

    async def body(running):
        running.wake()
        return await until(lambda: all_finished(ids), timeout=60)

    assert run_scheduler(body)
    assert len(receiver.hits("/ok")) == 300
    assert receiver.max_concurrent["/ok"] <= 8


def test_a_response_the_database_cannot_store_does_not_take_its_batch_with_it(kwik, receiver):
    make_hook(receiver.url("/nul"), name="NUL")
    make_hook(receiver.url("/ok"), name="Healthy")
    ids = [i for n in range(20) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]

    async def body(running):
        running.wake()
        return await until(lambda: all_finished(ids), timeout=30)

    assert run_scheduler(body)
    # Each sent exactly once, each attempt recorded: nothing re-sent after a failed record.
    sent = collections.Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert len(sent) == 20 and set(sent.values()) == {2}
    assert attempt_count(ids) == 40
    with Session(db.get_engine()) as s:
        bodies = set(s.exec(select(Attempt.response_body)).all())
        statuses = set(s.exec(select(Delivery.status)).all())
    assert statuses == {"success"}
    assert bodies == {'{"received":true}', "before\N{REPLACEMENT CHARACTER}after"}


def test_a_claim_whose_lease_is_nearly_over_is_handed_back_not_sent(kwik, receiver, monkeypatch):
    # The shortest lease allowed (3 s for 1 s attempts), one attempt at a time: a
    # claim that waited a whole attempt for its slot has too little lease left to
    # be sent safely, and is handed back instead.
    configure(monkeypatch, KWIK_ATTEMPT_TIMEOUT="1", KWIK_LEASE_SECONDS="3", KWIK_MAX_IN_FLIGHT_PER_WEBHOOK="1")
    make_hook(receiver.url("/slow"))
    ids = [i for n in range(3) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]

    async def body(running):
        running.wake()
        return await until(lambda: attempt_count(ids) >= 6, timeout=40)

    assert run_scheduler(body)
    # Every request that reached the endpoint is one recorded attempt: none was sent twice.
    sent = collections.Counter(r.headers["webhook-id"] for r in receiver.hits("/slow"))
    with Session(db.get_engine()) as s:
        recorded = collections.Counter(
            s.exec(select(Delivery.event_id).join(Attempt, Attempt.delivery_id == Delivery.id)).all()
        )
    assert sent == recorded


def test_a_locked_database_does_not_stall_an_attempt_in_flight(kwik, receiver, database_url, monkeypatch):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    configure(monkeypatch, KWIK_ATTEMPT_TIMEOUT="2", KWIK_LEASE_SECONDS="30")  # the lease outlasts the lock
    make_hook(receiver.url("/hang"))
    (delivery_id,) = publish("payment.created", {}, wake=False).delivery_ids
    path = database_url.removeprefix("sqlite:///")

    async def body(running):
        running.wake()
        assert await until(lambda: receiver.hits("/hang"), timeout=10)
        # Another writer takes the database while the attempt is on the wire, and keeps it until the attempt
        # has ended: its answer read, only its record left to write. Were any database step waiting on the
        # HTTP loop, the answer would sit unread for as long as SQLite's busy handler waits (10 s, past the
        # attempt timeout), and the attempt would be recorded as timed out.
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        try:
            receiver.release.set()
            ended = await until(lambda: running.dispatcher.in_flight == 0, timeout=30)
            unrecorded = attempt_count([delivery_id]) == 0  # a read: SQLite's writer does not hold it up
        finally:
            other.execute("COMMIT")
            other.close()
        assert ended and unrecorded
        return await until(lambda: delivery(delivery_id).next_attempt_at is None, timeout=20)

    assert run_scheduler(body)
    (attempt,) = _attempts(delivery_id)
    # The endpoint answered while the database was locked: that is what is recorded, not a timeout.
    assert (attempt.http_code, attempt.error) == (200, None)
    assert delivery(delivery_id).status == "success"


def _attempts(delivery_id):
    with Session(db.get_engine()) as s:
        return s.exec(select(Attempt).where(Attempt.delivery_id == delivery_id)).all()


def test_deliver_now_keeps_the_global_cap(kwik, receiver, monkeypatch):
    # 40 endpoints that take half a second, 4 at a time, 3 s attempts: the last wait 4.5 s for a slot.
    # (3 s, not the suite's 1 s: a loaded machine stretched a 0.5 s answer past 1 s.)
    configure(
        monkeypatch,
        KWIK_MAX_IN_FLIGHT="4",
        KWIK_MAX_IN_FLIGHT_PER_WEBHOOK="4",
        KWIK_ATTEMPT_TIMEOUT="3",
        KWIK_LEASE_SECONDS="30",
    )
    # An attempt on the wire for a second lends its slot to others (by design); here that would be a stall.
    monkeypatch.setattr(dispatcher, "SLOW_ATTEMPT_SECONDS", 30)
    for n in range(40):
        make_hook(receiver.url("/half"), name=f"Endpoint {n}")
    published = publish("payment.created", {}, wake=False)
    assert len(published.delivery_ids) == 40
    outcomes = asyncio.run(scheduler.deliver_now(published.delivery_ids))
    # Waiting for a slot is not part of an attempt: none timed out, and never more than 4 at once.
    assert [o.status for o in outcomes] == ["success"] * 40
    assert receiver.max_concurrent_all <= 4


def test_the_global_cap_holds_across_webhooks(kwik, receiver, monkeypatch):
    configure(monkeypatch, KWIK_MAX_IN_FLIGHT="4", KWIK_MAX_IN_FLIGHT_PER_WEBHOOK="2")
    for n in range(10):
        make_hook(receiver.url("/steady"), name=f"Endpoint {n}")
    ids = [i for n in range(5) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]

    async def body(running):
        running.wake()
        return await until(lambda: all_finished(ids), timeout=60)

    assert run_scheduler(body)
    assert len(receiver.hits("/steady")) == 50
    assert receiver.max_concurrent_all <= 4


def test_endpoints_that_hang_cannot_starve_a_healthy_one(kwik, receiver, monkeypatch):
    # The case: 4 hanging endpoints, a global cap of 4, one slot per webhook. The hanging
    # attempts last 19 s (the receiver holds them 20 s): a starved healthy one would wait that long.
    configure(
        monkeypatch,
        KWIK_MAX_IN_FLIGHT="4",
        KWIK_MAX_IN_FLIGHT_PER_WEBHOOK="1",
        KWIK_ATTEMPT_TIMEOUT="19",
        KWIK_LEASE_SECONDS="60",
    )
    for n in range(4):
        make_hook(receiver.url("/hang"), events=["payout.created"], name=f"Hanging {n}")
    make_hook(receiver.url("/ok"), events=["payment.created"], name="Healthy")
    for n in range(3):
        publish("payout.created", {"n": n}, wake=False)

    async def body(running):
        running.wake()
        assert await until(lambda: len(receiver.hits("/hang")) >= 3, timeout=10)
        healthy = await asyncio.to_thread(publish, "payment.created", {})
        # Delivered while every hanging attempt is still open.
        arrived = await until(lambda: receiver.hits("/ok"), timeout=12)
        still_hanging = not receiver.release.is_set() and receiver._open.get("/hang", 0) >= 3
        receiver.release.set()
        return arrived, still_hanging, healthy

    arrived, still_hanging, healthy = run_scheduler(body)
    assert arrived and still_hanging
    assert receiver.hits("/ok")[0].headers["webhook-id"] == healthy.event.id


def test_disabling_a_webhook_stops_its_claims_waiting_in_memory(kwik, receiver, monkeypatch):
    configure(monkeypatch, KWIK_MAX_IN_FLIGHT_PER_WEBHOOK="1", KWIK_ATTEMPT_TIMEOUT="10", KWIK_LEASE_SECONDS="30")
    webhook = make_hook(receiver.url("/hang"))
    ids = [i for n in range(5) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]

    async def body(running):
        running.wake()
        # One attempt hangs on the wire; the next are claimed and wait in memory for its slot,
        # longer than a claim is trusted without a second look.
        assert await until(lambda: receiver.hits("/hang"), timeout=10)
        assert await until(lambda: running.dispatcher.ready >= 1, timeout=10)
        await asyncio.sleep(RECHECK_AFTER_SECONDS)
        with db.session_scope() as s:
            webhooks.update_webhook(
                session=s, webhook_id=webhook.id, data=WebhookInput(status="disabled"), actor=audit.CLI
            )
        receiver.release.set()
        return await until(
            lambda: all_finished(ids) and running.dispatcher.ready == 0 and running.dispatcher.in_flight == 0,
            timeout=20,
        )

    assert run_scheduler(body)
    assert len(receiver.hits("/hang")) == 1


@pytest.mark.parametrize("claimed_again", [True, False], ids=["seen-live-since", "not-seen-since"])
def test_a_claim_that_waited_is_checked_again_unless_a_later_claim_saw_its_webhook_live(
    kwik, receiver, monkeypatch, claimed_again
):
    configure(
        monkeypatch,
        KWIK_MAX_IN_FLIGHT_PER_WEBHOOK="1",
        KWIK_ATTEMPT_TIMEOUT="10",
        KWIK_LEASE_SECONDS="30",
        KWIK_POLL_SECONDS="3600",
    )
    # Long enough that a later claim's word still holds when the slot frees, on a loaded machine.
    monkeypatch.setattr(dispatcher, "RECHECK_AFTER_SECONDS", 1.0)
    checked = []
    check = dispatcher.still_sendable

    def counted(engine, **kwargs):
        checked.extend(kwargs["ids"])
        return check(engine, **kwargs)

    monkeypatch.setattr(dispatcher, "still_sendable", counted)
    make_hook(receiver.url("/hang"))
    ids = [i for n in range(2) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]

    async def body(running):
        running.wake()
        # The first hangs on the wire; the second was claimed with it and waits for the slot.
        assert await until(lambda: receiver.hits("/hang"), timeout=10)
        assert await until(lambda: running.dispatcher.ready == 1, timeout=10)
        await asyncio.sleep(1.1)  # longer than a claim is trusted alone
        if claimed_again:  # a new delivery: the next claim reads the webhook's state to take it
            ids.extend(publish("payment.created", {"n": 2}, wake=False).delivery_ids)
            running.wake()
            assert await until(lambda: running.dispatcher.ready == 2, timeout=10)
        receiver.release.set()
        return await until(lambda: all_finished(ids), timeout=20)

    assert run_scheduler(body)
    assert [delivery(i).status for i in ids] == ["success"] * len(ids)
    assert checked == ([] if claimed_again else [ids[1]])


def test_an_attempt_that_ends_after_its_webhook_was_disabled_is_recorded_as_failure_at_once(
    kwik, receiver, monkeypatch
):
    # Its retry would be an hour away: only the record itself can end the delivery within the test (the
    # check at claim time would end it at that retry).
    configure(monkeypatch, KWIK_RETRY_SCHEDULE="3600", KWIK_ATTEMPT_TIMEOUT="10", KWIK_LEASE_SECONDS="30")
    receiver.hang_code = 500
    webhook = make_hook(receiver.url("/hang"))
    (delivery_id,) = publish("payment.created", {}, wake=False).delivery_ids

    async def body(running):
        running.wake()
        assert await until(lambda: receiver.hits("/hang"), timeout=10)
        # Disabled while the receiver holds the request; only then does it answer.
        with db.session_scope() as s:
            webhooks.update_webhook(
                session=s, webhook_id=webhook.id, data=WebhookInput(status="disabled"), actor=audit.CLI
            )
        on_the_wire = running.dispatcher.in_flight == 1 and attempt_count([delivery_id]) == 0
        receiver.release.set()
        recorded = await until(lambda: attempt_count([delivery_id]) == 1, timeout=20)
        return on_the_wire, recorded

    assert run_scheduler(body) == (True, True)
    d = delivery(delivery_id)
    assert (d.status, d.next_attempt_at, d.last_http_code, d.attempt_count) == ("failure", None, 500, 1)
    assert len(receiver.hits("/hang")) == 1


def test_the_live_check_at_claim_time(kwik, receiver):
    webhook = make_hook(receiver.url("/ok"))
    (delivery_id,) = publish("payment.created", {}, wake=False).delivery_ids
    # Disabled behind the service's back (as a race would leave it): the delivery is still due.
    with db.session_scope() as s:
        row = s.get(Webhook, webhook.id)
        row.status = "disabled"
        s.add(row)
    now = utcnow()
    taken = claim_deliveries(
        db.get_engine(), owner="a", now=now, lease_until=now.replace(year=now.year + 1), limit=10, per_webhook=8
    )
    assert taken.claims == []
    assert taken.live == set()  # nor does it vouch for the webhook's claims already waiting
    d = delivery(delivery_id)
    assert (d.status, d.next_attempt_at, d.leased_by) == ("failure", None, None)
    assert not receiver.requests


def test_a_claim_says_which_webhooks_it_saw_live(kwik, receiver):
    full = make_hook(receiver.url("/ok"), events=["payment.created"], name="Full")
    paused = make_hook(receiver.url("/ok"), events=["payout.created"], name="Paused")
    publish("payment.created", {}, wake=False)
    publish("payout.created", {}, wake=False)
    with db.session_scope() as s:
        webhooks.update_webhook(session=s, webhook_id=paused.id, data=WebhookInput(status="paused"), actor=audit.CLI)
    now = utcnow()
    taken = claim_deliveries(
        db.get_engine(),
        owner="a",
        now=now,
        lease_until=now.replace(year=now.year + 1),
        limit=10,
        room={full.id: 0},
        per_webhook=8,
    )
    # Nothing taken, but the claim read both webhooks' state: the one at its reach is Live, the other is not.
    assert (taken.claims, taken.live) == ([], {full.id})


def test_a_retry_runs_from_its_own_timed_job_not_the_poll(kwik, receiver, monkeypatch):
    configure(monkeypatch, KWIK_POLL_SECONDS="3600", KWIK_RETRY_SCHEDULE="0.5")
    make_hook(receiver.url("/flaky"))  # 500 once, then 200
    (delivery_id,) = publish("payment.created", {}, wake=False).delivery_ids

    async def body(running):
        # The first poll runs at start; the retry half a second later can only come from next-retry.
        return await until(lambda: delivery(delivery_id).status == "success", timeout=20)

    assert run_scheduler(body)
    assert len(receiver.hits("/flaky")) == 2


# ---------------------------------------------------------------- what wakes the scheduler on a publish
# Each way a publish wakes the scheduler, proven alone: the others are turned off, and the poll is an hour
# away. The receiver is waited for far less long than that.


async def _not_watching(self) -> None:
    """In place of the scheduler's watch on other processes' publishes (LISTEN, SQLite's data_version)."""


def _first_look_over(monkeypatch) -> threading.Event:
    """Set once the scheduler's look at its start is over, with the retry job that look arms: after it, with
    the poll an hour away, nothing but a wake-up looks for due deliveries."""
    over = threading.Event()
    dispatch = scheduler.DeliveryScheduler._dispatch

    async def looked(self) -> None:
        try:
            await dispatch(self)
        finally:
            over.set()

    monkeypatch.setattr(scheduler.DeliveryScheduler, "_dispatch", looked)
    return over


def test_a_publish_wakes_its_own_processs_scheduler_by_the_doorbell_alone(kwik, receiver, monkeypatch):
    configure(monkeypatch, KWIK_POLL_SECONDS="3600")
    monkeypatch.setattr(scheduler.DeliveryScheduler, "_watch_other_processes", _not_watching)
    first_look = _first_look_over(monkeypatch)
    make_hook(receiver.url("/ok"))

    async def body(running):
        assert await until(first_look.is_set, timeout=20)
        published = await asyncio.to_thread(publish, "payment.created", {})  # rings this process's doorbell
        assert await until(lambda: receiver.hits("/ok"), timeout=30)
        return published

    published = run_scheduler(body)
    assert [r.headers["webhook-id"] for r in receiver.hits("/ok")] == [published.event.id]


PUBLISH_ELSEWHERE = "from kwik_console.events.publishing import publish; print(publish('payment.created', {}).event.id)"


def test_a_publish_in_another_process_wakes_the_scheduler_by_the_database_alone(kwik, receiver, monkeypatch, cli_env):
    """SQLite: the watch on the database's data_version; PostgreSQL: LISTEN for the publish's NOTIFY."""
    configure(monkeypatch, KWIK_POLL_SECONDS="3600")
    monkeypatch.setattr(doorbell, "ring", lambda: None)  # this process's own bell never rings
    first_look = _first_look_over(monkeypatch)
    make_hook(receiver.url("/ok"))

    async def body(running):
        assert await until(first_look.is_set, timeout=20)
        elsewhere = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", PUBLISH_ELSEWHERE],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert elsewhere.returncode == 0, elsewhere.stderr
        assert await until(lambda: receiver.hits("/ok"), timeout=30)
        return elsewhere.stdout.strip()

    event_id = run_scheduler(body)
    assert [r.headers["webhook-id"] for r in receiver.hits("/ok")] == [event_id]


def test_retries_falling_due_together_each_run_from_the_timed_job(kwik, receiver, monkeypatch):
    # Each look re-arms the timed job for the next retry, which is often due by then. APScheduler
    # skipped such a run while the one re-arming it was still returning, and the retries waited for the poll.
    configure(monkeypatch, KWIK_POLL_SECONDS="3600")
    make_hook(receiver.url("/ok"))
    ids = [i for n in range(30) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]
    first = utcnow() + dt.timedelta(seconds=1)
    with Session(db.get_engine()) as s:
        for n, delivery_id in enumerate(ids):
            s.exec(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(status="retrying", attempt_count=1, next_attempt_at=first + dt.timedelta(milliseconds=2 * n))
            )
        s.commit()

    async def body(running):
        return await until(lambda: all_finished(ids), timeout=20)

    assert run_scheduler(body)
    assert len(receiver.hits("/ok")) == 30


def test_every_secret_whose_overlap_has_not_ended_signs(kwik, receiver):
    webhook = make_hook(receiver.url("/ok"))
    original = webhook.secret
    with db.session_scope() as s:
        webhooks.rotate_secret(session=s, webhook_id=webhook.id, actor=audit.CLI)
    with db.session_scope() as s:
        second = webhooks.rotate_secret(session=s, webhook_id=webhook.id, actor=audit.CLI).secret
    with db.session_scope() as s:
        current = webhooks.get_webhook(session=s, webhook_id=webhook.id).secret
    published = publish("payment.created", {}, wake=False)
    (outcome,) = asyncio.run(scheduler.deliver_now(published.delivery_ids))
    assert outcome.status == "success"
    (request,) = receiver.hits("/ok")
    # A receiver still on the original secret, one on the second, and one on the new all verify.
    for secret in (original, second, current):
        assert Verifier(secret).verify(request.body, request.headers)["id"] == published.event.id
    assert len(request.headers["webhook-signature"].split(" ")) == 3


def test_a_compressed_response_is_capped_on_the_wire_and_inflated(kwik, receiver):
    async def main():
        client = http.make_client(settings.get_settings())
        try:
            tracemalloc.start()
            result = await http.send(client, receiver.url("/gzip"), b"{}", {}, settings.get_settings())
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            return result, peak
        finally:
            await client.aclose()

    result, peak = asyncio.run(main())
    assert result.http_code == 200
    assert result.response_body == "\x00" * 20 * 1024  # 20 KB of the 100 MB it would inflate to
    assert peak < 8 * 1024 * 1024
    # We asked for it uncompressed.
    assert receiver.hits("/gzip")[0].headers["accept-encoding"] == "identity"


def test_a_full_webhooks_backlog_does_not_hide_other_webhooks_due_deliveries(kwik, receiver):
    busy = make_hook(receiver.url("/ok"), events=["payout.created"], name="Busy")
    quiet = make_hook(receiver.url("/ok"), events=["payment.created"], name="Quiet")
    for n in range(200):
        publish("payout.created", {"n": n}, wake=False)
    (quiet_delivery,) = publish("payment.created", {}, wake=False).delivery_ids
    now = utcnow()
    lease = now.replace(year=now.year + 1)
    taken = claim_deliveries(
        db.get_engine(), owner="a", now=now, lease_until=lease, limit=4, room={busy.id: 0}, per_webhook=8
    )
    assert [c.delivery_id for c in taken.claims] == [quiet_delivery]
    # Round-robin across webhooks: with room for both, the quiet one is not behind the busy one's 200.
    with db.session_scope() as s:
        s.exec(update(Delivery).values(lease_until=None, leased_by=None))
    taken = claim_deliveries(db.get_engine(), owner="a", now=now, lease_until=lease, limit=2, per_webhook=8)
    assert {c.webhook_id for c in taken.claims} == {busy.id, quiet.id}


def test_leases_are_measured_by_the_database_clock(kwik, receiver, monkeypatch, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite is on this machine: its clock is ours")
    make_hook(receiver.url("/ok"))
    (delivery_id,) = publish("payment.created", {}, wake=False).delivery_ids
    engine = db.get_engine()
    first = claim_deliveries(engine, owner="replica-a", lease_seconds=60, limit=10, per_webhook=8)
    assert [c.delivery_id for c in first.claims] == [delivery_id]
    # Another replica whose clock runs two minutes fast: by its own clock a's lease has expired.
    fast = utcnow() + dt.timedelta(minutes=2)
    monkeypatch.setattr(db_clock, "utcnow", lambda: fast)
    second = claim_deliveries(engine, owner="replica-b", lease_seconds=60, limit=10, per_webhook=8)
    assert second.claims == []
    assert delivery(delivery_id).leased_by == "replica-a"


def test_hanging_endpoints_with_backlogs_leave_room_to_claim_a_healthy_ones_deliveries(kwik, receiver, monkeypatch):
    # The default caps. Eight endpoints hang with a backlog each: their claims wait in memory
    # for slots they may not take, and must not use up what the dispatcher may claim for others.
    configure(
        monkeypatch,
        KWIK_MAX_IN_FLIGHT="64",
        KWIK_MAX_IN_FLIGHT_PER_WEBHOOK="8",
        KWIK_ATTEMPT_TIMEOUT="10",
        KWIK_LEASE_SECONDS="30",
    )
    for n in range(8):
        make_hook(receiver.url("/hang"), events=["payout.created"], name=f"Hanging {n}")
    make_hook(receiver.url("/ok"), events=["payment.created"], name="Healthy")
    for n in range(20):
        publish("payout.created", {"n": n}, wake=False)

    async def body(running):
        running.wake()
        # The hanging endpoints hold every slot they may have, with claims parked behind them.
        assert await until(lambda: len(receiver.hits("/hang")) >= 40, timeout=10)
        assert await until(lambda: running.dispatcher.ready >= 40, timeout=10)
        healthy = [await asyncio.to_thread(publish, "payment.created", {"n": n}) for n in range(5)]
        arrived = await until(lambda: len(receiver.hits("/ok")) == 5, timeout=5)
        still_hanging = not receiver.release.is_set()
        receiver.release.set()
        return arrived and still_hanging, healthy

    delivered, healthy = run_scheduler(body)
    assert delivered
    assert {r.headers["webhook-id"] for r in receiver.hits("/ok")} == {p.event.id for p in healthy}


def test_a_webhook_holding_claims_waits_for_the_others_first_turns(kwik, receiver):
    """A backlog in webhook order (bench/delivery.py (b)): the webhook that already holds claims, ready or in
    flight, gets no more until every other webhook has had as many, even when it was served longest ago."""
    holding, fresh = (make_hook(receiver.url("/ok"), name=name) for name in ("Holding", "Fresh"))
    for n in range(4):
        publish("payment.created", {"n": n}, webhook_id=holding.id, wake=False)
    for n in range(4):
        publish("payment.created", {"n": n}, webhook_id=fresh.id, wake=False)
    engine = db.get_engine()
    turns = Turns()
    turns.served([fresh.id])  # Fresh was given one already; Holding's turn would come first among equals
    taken = claim_deliveries(
        engine, owner="a", lease_seconds=60, limit=3, per_webhook=8, room={holding.id: 8 - 2}, turns=turns
    )
    # Holding has two already: Fresh's first two come before Holding's third, whoever was served last.
    assert [c.webhook_id for c in taken.claims].count(fresh.id) == 2, taken.claims
    assert len(taken.claims) == 3


def test_claims_go_round_robin_to_the_webhooks_served_longest_ago(kwik, receiver):
    hooks = [make_hook(receiver.url("/ok"), name=f"Endpoint {n}") for n in range(6)]
    publish("payment.created", {}, wake=False)  # one delivery each, all due at the same instant
    engine = db.get_engine()
    turns = Turns()
    seen = []
    for _ in range(3):
        taken = claim_deliveries(engine, owner="a", lease_seconds=60, limit=2, per_webhook=8, turns=turns)
        got = {c.webhook_id for c in taken.claims}
        seen.append(got)
        turns.served(c.webhook_id for c in taken.claims)
        release_claims(engine, owner="a", ids=[c.delivery_id for c in taken.claims])
    # A limit of two, three times: every webhook had its turn, none twice.
    assert set().union(*seen) == {h.id for h in hooks} and sum(map(len, seen)) == 6


def test_a_webhook_taking_one_at_a_time_does_not_hold_the_turns_back():
    """A rate-limited or trickling webhook takes one delivery a claim while a busy one takes ten. Were the clock
    held back by the slow one, a webhook new to the queue would start far behind the busy one and win every tie
    against it for thousands of deliveries (the busy one starved meanwhile)."""
    slow, busy, new = 1, 2, 3
    turns = Turns()
    for _ in range(1000):
        turns.served([slow] + [busy] * 10)
    assert 0 < turns.of(busy) - turns.of(new) <= TURNS_LEAD
    assert turns.of(slow) == turns.of(new)  # behind the clock: the same as new, first among equals


def test_a_backlog_in_webhook_order_is_shared_evenly_claim_after_claim(kwik, receiver):
    """bench/delivery.py (b) in small: each webhook's deliveries fall due after the one before's, and a claim
    reaches a little past everyone's first. Those it gives a second must wait for the others' second: before
    `Turns`, a claim's webhooks were all "served" at the same moment, and the first ones took two every time."""
    hooks = [make_hook(receiver.url("/ok"), name=f"Endpoint {n}") for n in range(10)]
    for hook in hooks:  # webhook order: every delivery of the first is due before any of the second
        for n in range(30):
            publish("payment.created", {"n": n}, webhook_id=hook.id, wake=False)
    engine = db.get_engine()
    turns = Turns()
    given = collections.Counter()
    for _ in range(10):
        taken = claim_deliveries(engine, owner="a", lease_seconds=60, limit=13, per_webhook=8, turns=turns)
        assert len(taken.claims) == 13
        turns.served(c.webhook_id for c in taken.claims)
        given.update(c.webhook_id for c in taken.claims)
        with Session(engine) as session:  # attempted at once, and delivered: nothing held, as in the benchmark
            session.exec(
                update(Delivery)
                .where(Delivery.id.in_([c.delivery_id for c in taken.claims]))
                .values(status="success", next_attempt_at=None, lease_until=None, leased_by=None)
            )
            session.commit()
    # 130 deliveries for 10 webhooks: 13 each, give or take the one a claim's edge falls on.
    assert sum(given.values()) == 130 and max(given.values()) - min(given.values()) <= 1, given


def test_a_stop_hands_back_nothing_that_a_record_under_way_is_storing(kwik, receiver, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite: one thread records and hands back, in turn: a hand-back cannot overtake a record")
    make_hook(receiver.url("/ok"))
    (delivery_id,) = publish("payment.created", {}, wake=False).delivery_ids
    recording = threading.Event()

    def slow_record(dbapi_connection, connection_record, connection_proxy):
        # A record that has taken its batch and not yet reached the database, as on a loaded machine.
        if threading.current_thread().name.startswith("kwik-records") and not recording.is_set():
            recording.set()
            time.sleep(1)

    engine = db.get_engine()
    event.listen(engine, "checkout", slow_record)
    try:

        async def body(running):
            running.wake()
            return await until(recording.is_set, timeout=30)

        assert run_scheduler(body)  # the scheduler stops with the record under way
    finally:
        event.remove(engine, "checkout", slow_record)
    # Handed back before its record, the delivery would stay pending: sent, and sent again by the next worker.
    stored = delivery(delivery_id)
    assert (stored.status, stored.leased_by, attempt_count([delivery_id])) == ("success", None, 1)
    assert len(receiver.hits("/ok")) == 1
