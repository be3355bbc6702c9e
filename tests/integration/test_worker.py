"""`kwik-console worker` processes: crash safety and two workers sharing one database."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import threading
import time

import pytest
from sqlmodel import Session, func, select

from kwik_console.events.publishing import publish
from kwik_console.store import db
from kwik_console.store.tables import Attempt, Delivery
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import KWIK_CONSOLE


def start_worker(env) -> subprocess.Popen:
    """Start `kwik-console worker` and return once it says it is running."""
    worker = subprocess.Popen(
        [*KWIK_CONSOLE, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    worker.lines = []
    running = threading.Event()

    def read():  # drain the pipe so the worker never blocks on its own logging
        for line in worker.stdout:
            worker.lines.append(line)
            if "Kwik worker running" in line:
                running.set()

    worker.reader = threading.Thread(target=read, daemon=True)
    worker.reader.start()
    assert running.wait(20), "".join(worker.lines)
    return worker


def burst(receiver, count: int, path: str = "/steady") -> list[int]:
    with db.session_scope() as s:
        webhooks.create_webhook(
            session=s,
            data=WebhookInput(name="Steady", url=receiver.url(path), events=["payment.created"]),
            actor=audit.CLI,
        )
    return [i for n in range(count) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]


def statuses() -> collections.Counter:
    with Session(db.get_engine()) as s:
        return collections.Counter(s.exec(select(Delivery.status)).all())


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def stop(worker: subprocess.Popen, sig=signal.SIGTERM) -> str:
    if worker.poll() is None:
        worker.send_signal(sig)
    worker.wait(timeout=20)
    worker.reader.join(timeout=10)  # the pipe is closed: the reader has taken the last lines
    return "".join(worker.lines)


@pytest.fixture
def worker_env(cli_env):
    cli_env["KWIK_MAX_IN_FLIGHT"] = "16"
    cli_env["KWIK_MAX_IN_FLIGHT_PER_WEBHOOK"] = "16"
    # These tests count sends exactly: a 50 ms answer stretched past the suite's 1 s timeout
    # on a loaded machine would be retried, and counted as sent twice.
    cli_env["KWIK_ATTEMPT_TIMEOUT"] = "5"
    cli_env["KWIK_LEASE_SECONDS"] = "11"
    return cli_env


def test_worker_stops_cleanly_on_sigterm_and_sigint(kwik, receiver, worker_env):
    for sig in (signal.SIGTERM, signal.SIGINT):
        worker = start_worker(worker_env)
        out = stop(worker, sig)
        assert worker.returncode == 0 and "Kwik worker stopped after 0 attempts." in out


def test_sigterm_mid_burst_finishes_in_flight_and_hands_back_the_rest(kwik, receiver, worker_env):
    ids = burst(receiver, 600)  # about 2 s of sending left after the first 60: room for a slow stop
    worker = start_worker(worker_env)
    assert receiver.wait_for(lambda reqs: len(reqs) >= 60, timeout=30)
    stop(worker)
    assert worker.returncode == 0
    with Session(db.get_engine()) as s:
        leased = s.exec(select(func.count()).select_from(Delivery).where(Delivery.leased_by.is_not(None))).one()
    assert leased == 0  # nothing waits for a lease to expire
    assert statuses()["pending"] > 0, "the stop should land mid-burst"

    worker = start_worker(worker_env)
    try:
        assert wait_until(lambda: statuses() == {"success": len(ids)}, timeout=60), statuses()
    finally:
        stop(worker)
    sent = collections.Counter(r.headers["webhook-id"] for r in receiver.hits("/steady"))
    assert len(sent) == len(ids) and set(sent.values()) == {1}  # a graceful stop sends nothing twice


def test_sigkill_mid_burst_loses_nothing(kwik, receiver, worker_env):
    ids = burst(receiver, 300)
    worker = start_worker(worker_env)
    assert receiver.wait_for(lambda reqs: len(reqs) >= 60, timeout=30)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    at_kill = statuses()
    assert at_kill["pending"] > 0, "the kill should land mid-burst"

    worker = start_worker(worker_env)
    try:
        # Claims the dead worker held are taken over once their lease (11 s here) expires.
        assert wait_until(lambda: statuses() == {"success": len(ids)}, timeout=60), statuses()
    finally:
        stop(worker)

    delivered = {r.headers["webhook-id"] for r in receiver.hits("/steady")}
    with Session(db.get_engine()) as s:
        event_ids = set(s.exec(select(Delivery.event_id)).all())
        stuck = s.exec(select(func.count()).select_from(Delivery).where(Delivery.leased_by.is_not(None))).one()
    assert delivered == event_ids  # every delivery reached the receiver at least once
    assert stuck == 0


def both_at_work(receiver, per_worker: int) -> bool:
    """Holds the first requests until twice what one worker may hold on one webhook are open at once, which
    only both workers together can hold; then lets every request through."""
    try:
        return receiver.wait_for(lambda _: receiver.max_concurrent.get("/hang", 0) >= 2 * per_worker, timeout=30)
    finally:
        receiver.release.set()


def test_two_workers_never_send_the_same_attempt_twice(kwik, receiver, worker_env):
    # 8 on the wire per webhook and worker; an attempt outlasts the receiver's longest hold (20 s).
    worker_env.update(KWIK_MAX_IN_FLIGHT_PER_WEBHOOK="8", KWIK_ATTEMPT_TIMEOUT="25", KWIK_LEASE_SECONDS="60")
    # Both running before the burst, so both take part whichever starts faster.
    workers = [start_worker(worker_env), start_worker(worker_env)]
    ids = burst(receiver, 400, "/hang")
    try:
        shared = both_at_work(receiver, per_worker=8)
        assert wait_until(lambda: statuses() == {"success": len(ids)}, timeout=60), statuses()
    finally:
        outputs = [stop(w) for w in workers]
    assert shared, receiver.max_concurrent
    sent = collections.Counter(r.headers["webhook-id"] for r in receiver.hits("/hang"))
    assert len(sent) == 400 and set(sent.values()) == {1}
    with Session(db.get_engine()) as s:
        per_delivery = s.exec(select(Attempt.delivery_id, func.count()).group_by(Attempt.delivery_id)).all()
        owners = s.exec(select(func.count()).select_from(Delivery).where(Delivery.leased_by.is_not(None))).one()
    assert len(per_delivery) == 400 and {n for _, n in per_delivery} == {1}
    assert owners == 0
    # Both shared the work: each held its 8 at once.
    made = [int(re.search(r"Kwik worker stopped after (\d+) attempts", out).group(1)) for out in outputs]
    assert sum(made) == 400 and min(made) >= 8, made


def test_a_publish_in_another_process_wakes_the_worker_at_once(kwik, receiver, cli_env):
    # No polling to speak of: only NOTIFY (PostgreSQL) or data_version (SQLite) can wake it in time.
    cli_env["KWIK_POLL_SECONDS"] = "3600"
    worker = start_worker(cli_env)
    try:
        with db.session_scope() as s:
            webhooks.create_webhook(
                session=s,
                data=WebhookInput(name="Ok", url=receiver.url("/ok"), events=["payment.created"]),
                actor=audit.CLI,
            )
        published = [publish("payment.created", {"n": n}) for n in range(3)]
        assert receiver.wait_for(lambda reqs: len(reqs) == 3, timeout=10)
    finally:
        stop(worker)
    assert {r.headers["webhook-id"] for r in receiver.hits("/ok")} == {p.event.id for p in published}


def test_worker_processes_share_a_burst_and_stop_together(kwik, receiver, cli_env):
    # 8 on the wire per webhook and process; an attempt outlasts the receiver's longest hold (20 s). It counts
    # sends exactly, as worker_env's tests do: no attempt may time out and be sent again.
    cli_env.update(KWIK_MAX_IN_FLIGHT_PER_WEBHOOK="8", KWIK_ATTEMPT_TIMEOUT="25", KWIK_LEASE_SECONDS="60")
    worker = subprocess.Popen(
        [*KWIK_CONSOLE, "worker", "--processes", "2"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker.lines = []
    running = threading.Event()

    def read():
        for line in worker.stdout:
            worker.lines.append(line)
            if sum("Kwik worker running" in x for x in worker.lines) == 2:
                running.set()

    worker.reader = threading.Thread(target=read, daemon=True)
    worker.reader.start()
    assert running.wait(30), "".join(worker.lines)  # both processes say they run
    ids = burst(receiver, 300, "/hang")
    try:
        shared = both_at_work(receiver, per_worker=8)
        assert wait_until(lambda: statuses() == {"success": len(ids)}, timeout=60), statuses()
    finally:
        out = stop(worker)
    assert shared, receiver.max_concurrent
    made = [int(n) for n in re.findall(r"Kwik worker stopped after (\d+) attempts", out)]
    assert sum(made) == 300 and len(made) == 2 and min(made) >= 8, made  # each held its 8 at once
    sent = collections.Counter(r.headers["webhook-id"] for r in receiver.hits("/hang"))
    assert len(sent) == 300 and set(sent.values()) == {1}
