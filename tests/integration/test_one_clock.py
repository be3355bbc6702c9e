"""One clock for due times: a process whose own clock is off by an hour still retries on schedule and sends
new events at once, because due times are written by the database's clock, which the claims read."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys

import pytest
from apscheduler.schedulers import base as apscheduler_base
from sqlalchemy import text

from kwik_console.core import clock
from kwik_console.delivery import scheduler
from kwik_console.events.publishing import publish
from kwik_console.operations import health, retention
from kwik_console.store import db
from kwik_console.store.db_clock import database_now
from tests.conftest import configure
from tests.factories import PAYMENT, make_hook

HOUR = dt.timedelta(hours=1)
FIRST_RETRY = 30.0  # long enough that the retry is still ahead when the test reads it
JITTER = 0.2


@pytest.fixture
def postgres(kwik, monkeypatch):
    if not kwik.database_url.startswith("postgresql"):
        pytest.skip("SQLite lives on this machine: its clock is the process's")
    return configure(monkeypatch, KWIK_RETRY_SCHEDULE=f"{FIRST_RETRY:g},{FIRST_RETRY:g}")


def skew_this_process(monkeypatch, by: dt.timedelta) -> None:
    """Every reading of the clock in the code (core/clock.utcnow, wherever it was imported) off by `by`."""
    real = clock.utcnow

    def skewed() -> dt.datetime:
        return real() + by

    for module in list(sys.modules.values()):
        if (module.__name__ or "").startswith("kwik_console") and getattr(module, "utcnow", None) is real:
            monkeypatch.setattr(module, "utcnow", skewed)

    class SkewedDatetime(dt.datetime):  # APScheduler reads the machine's clock itself: skewed alike
        @classmethod
        def now(cls, tz=None):
            return dt.datetime.now(tz) + by

    monkeypatch.setattr(apscheduler_base, "datetime", SkewedDatetime)


def seconds_until_due(delivery_id: int) -> float:
    """By the database's clock."""
    with db.get_engine().connect() as conn:
        return conn.execute(
            text("SELECT EXTRACT(EPOCH FROM next_attempt_at - now()) FROM delivery WHERE id = :id"), {"id": delivery_id}
        ).scalar_one()


@pytest.mark.parametrize("skew", [-HOUR, HOUR], ids=["an hour behind", "an hour ahead"])
def test_a_skewed_worker_waits_the_scheduled_retry(postgres, receiver, monkeypatch, skew):
    hook = make_hook(receiver.url("/fail"))
    skew_this_process(monkeypatch, skew)
    published = publish("payment.created", PAYMENT, test=True, webhook_id=hook.id, wake=False)
    (outcome,) = asyncio.run(scheduler.deliver_now(published.delivery_ids))
    assert outcome.status == "retrying"
    wait = float(seconds_until_due(outcome.delivery_id))
    # The first retry's wait, jittered, from the record by the database's clock (a moment ago).
    assert FIRST_RETRY * (1 - JITTER) - 5 <= wait <= FIRST_RETRY * (1 + JITTER), wait


@pytest.mark.parametrize("skew", [-HOUR, HOUR], ids=["an hour behind", "an hour ahead"])
def test_a_skewed_publisher_makes_deliveries_due_at_once(postgres, receiver, monkeypatch, skew):
    hook = make_hook(receiver.url("/ok"))
    skew_this_process(monkeypatch, skew)
    (delivery_id,) = publish("payment.created", PAYMENT, webhook_id=hook.id, wake=False).delivery_ids
    assert -5 <= float(seconds_until_due(delivery_id)) <= 0

    # And a worker on the same skewed clock sends it.
    async def work():
        async with scheduler.running():
            return await asyncio.to_thread(
                receiver.wait_for, lambda requests: any(r.path == "/ok" for r in requests), 30
            )

    assert asyncio.run(work())


def test_failing_since_is_by_the_databases_clock_whoever_records_it(postgres, receiver):
    """A worker an hour behind records the first failure; a process with a right clock runs auto-disable, with a
    30-minute threshold: the webhook has failed for a moment, not for an hour and a half."""
    hook = make_hook(receiver.url("/fail"))
    with pytest.MonkeyPatch.context() as skewed:
        skew_this_process(skewed, -HOUR)
        published = publish("payment.created", PAYMENT, test=True, webhook_id=hook.id, wake=False)
        (outcome,) = asyncio.run(scheduler.deliver_now(published.delivery_ids))
    assert outcome.status == "retrying"
    with db.get_engine().connect() as conn:
        failing_for = conn.execute(
            text("SELECT EXTRACT(EPOCH FROM now() - failing_since) FROM webhook WHERE id = :id"), {"id": hook.id}
        ).scalar_one()
    assert 0 <= float(failing_for) <= 60
    assert health.disable_failing(db.get_engine(), after_seconds=1800) == []


def test_retention_cuts_off_by_the_databases_clock(postgres):
    """A worker two days ahead runs a one-day retention: yesterday by its clock is tomorrow by the database's,
    and an event published a moment ago would go; by the database's clock it stays."""
    published = publish("payment.created", PAYMENT, wake=False)  # no webhook: an event with no deliveries
    with pytest.MonkeyPatch.context() as skewed:
        skew_this_process(skewed, 2 * 24 * HOUR)
        purged = retention.purge(db.get_engine(), days=1)
    assert purged.events == 0
    # The cutoff it reports (the CLI prints it) is the one it used: a day before the database's now.
    with db.get_engine().connect() as conn:
        day_ago = database_now(conn) - dt.timedelta(days=1)
    assert abs(purged.cutoff - day_ago) < dt.timedelta(minutes=5)  # not two days off, as the worker's clock is
    with db.get_engine().connect() as conn:
        kept = conn.execute(text("SELECT count(*) FROM event WHERE id = :id"), {"id": published.event.id}).scalar_one()
    assert kept == 1
