"""The delivery watch: one per process, woken by the same wake-ups as the dispatcher, it tells the pages that
show deliveries live which webhooks changed, so no open tab polls the database."""

from __future__ import annotations

import asyncio
import sys

import pytest
import sqlalchemy as sa

from kwik_console.core import doorbell
from kwik_console.delivery import scheduler
from kwik_console.events import watch
from kwik_console.events.publishing import publish
from kwik_console.store import db
from kwik_console.store.tables import Delivery
from tests.factories import make_hook, send_test

WAIT = 15.0  # a bound on a wait that should end at once, never a figure


def _status(delivery_id: int) -> str:
    with db.get_engine().connect() as conn:
        return conn.execute(sa.select(Delivery.status).where(Delivery.id == delivery_id)).scalar_one()


async def _until_moved(webhook_id: int, seen: int) -> int:
    moved = await watch.changed_after(webhook_id, seen, timeout=WAIT)
    assert moved is not None, "the watch did not move the webhook's version"
    return moved


def test_a_publish_and_its_attempt_move_only_that_webhooks_version(kwik, receiver):
    followed = make_hook(receiver.url("/ok"), events=["payment.created"])
    quiet = make_hook(receiver.url("/ok"), events=["checkout.expired"])

    async def main():
        async with scheduler.running():
            seen = watch.version(followed.id)
            seen = await _until_moved(followed.id, seen)  # the first look takes its marks: every page looks once
            quiet_seen = watch.version(quiet.id)

            (delivery_id,) = (await asyncio.to_thread(publish, "payment.created", {"id": "pay_1"})).delivery_ids
            changes = 0
            while (status := await asyncio.to_thread(_status, delivery_id)) != "success":
                seen = await _until_moved(followed.id, seen)
                changes += 1
            return status, changes, watch.version(quiet.id) == quiet_seen

    status, changes, quiet_unmoved = asyncio.run(main())
    assert status == "success" and changes >= 1
    assert quiet_unmoved, "a webhook with no new delivery nor attempt moved too"
    assert len(receiver.hits("/ok")) == 1


# What another process's recording commits: an attempt, and the change bell rung in its transaction.
_OTHER_PROCESS_RECORDS = """
import sys
import sqlalchemy as sa
from kwik_console.core import doorbell
from kwik_console.core.clock import utcnow
from kwik_console.store import db
from kwik_console.store.tables import Attempt
with db.get_engine().begin() as conn:
    conn.execute(
        sa.insert(Attempt).values(
            delivery_id=int(sys.argv[1]), number=2, attempted_at=utcnow(), http_code=200, duration_ms=3,
            request_headers={}, response_headers={}, response_body="",
        )
    )
    doorbell.changed_on_commit(conn)
"""


def test_an_attempt_recorded_by_another_process_moves_the_version(kwik, receiver, cli_env):
    """This process hears of it through the dispatcher's own watch of other processes: PostgreSQL's LISTEN
    (the NOTIFY sent as the attempt commits) or SQLite's data_version."""
    webhook = make_hook(receiver.url("/ok"))

    async def main():
        async with scheduler.running():
            seen = await _until_moved(webhook.id, watch.version(webhook.id))
            (delivery_id,) = (await asyncio.to_thread(publish, "payment.created", {"id": "pay_2"})).delivery_ids
            while await asyncio.to_thread(_status, delivery_id) != "success":
                seen = await _until_moved(webhook.id, seen)
            while (moved := await watch.changed_after(webhook.id, seen, timeout=0.5)) is not None:
                seen = moved  # the last wake-ups of this process's own attempt

            other = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _OTHER_PROCESS_RECORDS, str(delivery_id), env=cli_env
            )
            assert await other.wait() == 0
            return await watch.changed_after(webhook.id, seen, timeout=WAIT)

    assert asyncio.run(main()) is not None, "another process's attempt did not reach this process's watch"


def test_recording_an_attempt_rings_the_change_bell_for_other_processes(kwik, receiver):
    if db.get_engine().dialect.name != "postgresql":
        pytest.skip("on SQLite, other processes see any commit through data_version: no bell to ring")
    import psycopg

    webhook = make_hook(receiver.url("/ok"))
    url = db.get_engine().url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listening:
        listening.execute(f"LISTEN {doorbell.CHANGED_CHANNEL}")
        _, outcome = send_test(webhook.id)  # recorded by this process's dispatcher, in its own transaction
        assert outcome.status == "success"
        heard = [n.channel for n in listening.notifies(timeout=WAIT, stop_after=1)]
    assert heard == [doorbell.CHANGED_CHANNEL]
