"""A database that fails under the delivery engine. Above all one that goes silent under a worker:
connections stay open and nothing answers (a firewall or NAT that dropped the flow, a hung server). A real
`kwik-console worker` reaches PostgreSQL through a proxy that can go silent; the test's own process reaches
it directly."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from kwik_console.delivery import scheduler
from kwik_console.events.publishing import publish
from kwik_console.store import db, deadline
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.integration.test_worker import start_worker, stop
from tests.silent_proxy import SilentProxy


@pytest.fixture
def silent_path(kwik, cli_env):
    """(proxy, worker env): the worker's database URL goes through the proxy."""
    if not kwik.database_url.startswith("postgresql"):
        pytest.skip("SQLite is a file on this machine: no path to go silent")
    url = make_url(kwik.database_url)
    proxy = SilentProxy((url.host, url.port or 5432)).start()
    cli_env["KWIK_DATABASE_URL"] = proxy.url_for(kwik.database_url)
    cli_env["KWIK_ATTEMPT_TIMEOUT"] = "5"
    cli_env["KWIK_LEASE_SECONDS"] = "11"
    yield proxy, cli_env
    proxy.close()


def _hook(receiver) -> None:
    with db.session_scope() as s:
        webhooks.create_webhook(
            session=s,
            data=WebhookInput(name="Orders", url=receiver.url("/ok"), events=["payment.created"]),
            actor=audit.CLI,
        )


def _sent(requests) -> int:
    return sum(r.path == "/ok" for r in requests)


def _wait_until(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def _go_silent_under(worker, proxy: SilentProxy) -> None:
    """Silence the path, and return once the worker has written into it (it is waiting for an answer)."""
    proxy.go_silent()
    publish("payment.created", {"n": "while silent"}, wake=False)  # direct: the worker's poll looks for it
    assert proxy.swallowing.wait(30), "the worker never wrote to the silent database"
    assert worker.poll() is None


def test_deliveries_resume_after_the_database_path_comes_back(silent_path, receiver):
    proxy, env = silent_path
    _hook(receiver)
    worker = start_worker(env)
    try:
        publish("payment.created", {"n": "before"}, wake=False)
        assert receiver.wait_for(lambda requests: _sent(requests) == 1, timeout=30)

        _go_silent_under(worker, proxy)
        time.sleep(2)  # the silence lasts a while, with the worker's step waiting in it
        proxy.restore()
        publish("payment.created", {"n": "after"}, wake=False)
        # Within 30 s of the path coming back: the event published during the silence, and the one after.
        assert receiver.wait_for(lambda requests: _sent(requests) >= 3, timeout=30), "".join(worker.lines)
    finally:
        out = stop(worker)
    assert "the database did not answer within" in out or "the database cannot be reached" in out, out


def test_sigterm_stops_a_worker_while_the_database_is_silent(silent_path, receiver):
    proxy, env = silent_path
    _hook(receiver)
    worker = start_worker(env)
    publish("payment.created", {"n": "before"}, wake=False)
    assert receiver.wait_for(lambda requests: _sent(requests) == 1, timeout=30)
    _go_silent_under(worker, proxy)

    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=20)  # the attempt timeout (5 s) and a few seconds, whatever the database does
    except Exception:
        worker.kill()
        raise
    worker.reader.join(timeout=10)
    assert worker.returncode == 0, "".join(worker.lines)


def test_a_wake_up_whose_claim_fails_is_logged_and_the_poll_still_delivers(kwik, receiver, caplog):
    """A wake-up's claim that fails (a database restarting) is the wake-up path's to handle: one warning, no
    task exception left for asyncio to report, and the next look delivers."""
    _hook(receiver)
    failures = []

    async def work():
        async with scheduler.running() as running:
            real = running.dispatcher.dispatch_due

            async def fails_once():
                # The first claim a wake-up makes fails; the poll's claims go through.
                if not failures and sys._getframe(1).f_code.co_name == "_claim_logged":
                    failures.append(1)
                    raise OperationalError("SELECT 1", {}, ConnectionError("the database is restarting"))
                return await real()

            running.dispatcher.dispatch_due = fails_once
            publish("payment.created", {"n": 1}, wake=False)
            running.wake()
            assert await asyncio.to_thread(_wait_until, lambda: failures, 30)
            return await asyncio.to_thread(receiver.wait_for, lambda requests: _sent(requests) == 1, 30)

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(work())
    assert failures == [1]
    assert "claiming after a wake-up failed" in caplog.text
    assert "Task exception was never retrieved" not in caplog.text


def test_wake_ups_whose_claims_fail_while_the_database_is_down_add_no_warning_each(kwik, receiver, caplog):
    """Once the dispatcher has said the database cannot be reached, a failed wake-up says nothing more (the
    scheduler's own looks reach the real database here, so the dispatcher may say it answers again between)."""
    _hook(receiver)
    failures = []

    async def work():
        async with scheduler.running() as running:

            async def unreachable():
                failures.append(1)
                running.dispatcher._database_failed(OperationalError("SELECT 1", {}, ConnectionError("refused")))
                raise OperationalError("SELECT 1", {}, ConnectionError("refused"))

            running.dispatcher.dispatch_due = unreachable
            for _ in range(3):
                running.wake()
                await asyncio.sleep(0.2)

    with caplog.at_level(logging.WARNING):
        asyncio.run(work())
    assert len(failures) >= 3
    assert "the database cannot be reached: refused" in caplog.text
    assert "claiming after a wake-up failed" not in caplog.text


def test_a_connection_cut_as_its_step_ends_is_never_handed_out_again(kwik):
    """The cut and the step's end race: the watchdog (or a stop's cut_all) reads which connections a late step
    holds, the step ends meanwhile and gives its connection back, and only then is the socket shut. The next
    step must get another connection, not that one ("server closed the connection unexpectedly")."""
    engine = db.get_engine()
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite is a file on this machine: nothing to cut")
    with deadline.within(60), engine.connect() as held:
        held.execute(sa.text("SELECT 1"))
        driver_connection = held.connection.dbapi_connection
    deadline._shut(driver_connection)  # as the watchdog does, a moment too late: it is back in the pool
    for _ in range(3):
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
