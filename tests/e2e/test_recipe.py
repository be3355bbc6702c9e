"""The team recipe of docs/hosting.md ("The recipe"), end to end on this machine.

PostgreSQL and Redis; `kwik-console run --workers 2` (two console processes
on one port) and one `kwik-console worker`, all started at once on an empty
database; 5,000 events published through the console's API, then 1,000 at a
steady 50/s; every delivery attempted exactly once. The endpoint is an internal one (127.0.0.1), allowed
with KWIK_ALLOWED_NETWORKS as a team with internal endpoints would.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import os
import statistics
import subprocess
import threading
import time

import aiohttp
import httpx
import pytest
import redis
from sqlmodel import Session, func, select

from kwik_console.store import db
from kwik_console.store.tables import Attempt, Delivery
from kwik_console.team import audit, tokens
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import KWIK_CONSOLE, TEST_SECRET_KEY, _drop_postgres_database, _postgres_database, configure
from tests.e2e.server import ConsoleServer, free_port
from tests.receiver import Receiver

pytestmark = pytest.mark.e2e

EVENTS = 5000
STEADY_EVENTS, STEADY_RATE = 1000, 50  # then a platform's steady flow, for the wake-up latency
REDIS_DB = 7  # a database of its own on the machine's Redis, emptied first


def start_worker(env) -> tuple[subprocess.Popen, threading.Event]:
    worker = subprocess.Popen(
        [*KWIK_CONSOLE, "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    running = threading.Event()

    def read():
        for line in worker.stdout:
            if "Kwik worker running" in line:
                running.set()

    threading.Thread(target=read, daemon=True).start()
    return worker, running


def test_the_team_recipe(tmp_path, monkeypatch):
    name = f"kwik_recipe_{os.getpid()}"
    database = _postgres_database(name)
    if database is None:
        pytest.fail("PostgreSQL is not reachable; .ci/run starts it")
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    receiver = Receiver().start()
    port = free_port()
    env = {
        "KWIK_MODE": "hosted",
        "KWIK_SECRET_KEY": TEST_SECRET_KEY,
        "KWIK_DATABASE_URL": database,
        "KWIK_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "KWIK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "KWIK_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    console = ConsoleServer(database, tmp_path / "console.log", args=("--workers", "2"), **env)
    console.port, console.url = port, f"http://127.0.0.1:{port}"
    worker = None
    try:
        # Every process starts at once, on an empty database: one migrates, the others wait for it.
        worker, worker_running = start_worker({**os.environ, **env})
        console.start()
        assert worker_running.wait(60)

        # The receiver speaks plain HTTP, which only local mode accepts in a URL: the webhook is made
        # that way; the hosted processes then reach it because KWIK_ALLOWED_NETWORKS allows 127.0.0.0/8.
        configure(monkeypatch, **{**env, "KWIK_MODE": "local"})
        with db.session_scope() as s:
            webhooks.create_webhook(
                session=s,
                data=WebhookInput(name="Orders (internal)", url=receiver.url("/ok"), events=["payment.created"]),
                actor=audit.CLI,
            )
            token = tokens.create_token(session=s, name="Platform", scopes=["publish"], actor=audit.CLI).token

        api = httpx.Client(base_url=console.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        published_at: dict[str, float] = {}
        answered_at: dict[str, float] = {}  # when the API's 202 came back: the publish has committed

        def publish(n: int) -> None:
            sent_at = time.monotonic()
            answer = api.post(
                "/events", json={"type": "payment.created", "data": {"object": "payment", "id": f"pay_{n}"}}
            )
            assert answer.status_code == 202, answer.text
            published_at[answer.json()["id"]] = sent_at
            answered_at[answer.json()["id"]] = time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(publish, range(EVENTS)))
        assert len(published_at) == EVENTS

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with Session(db.get_engine()) as s:
                done = s.exec(select(func.count()).select_from(Delivery).where(Delivery.status == "success")).one()
            if done == EVENTS:
                break
            time.sleep(0.1)
        assert done == EVENTS

        # Each delivery attempted exactly once: no crashes, so no duplicates.
        sent = collections.Counter(r.headers["webhook-id"] for r in receiver.hits("/ok"))
        assert len(sent) == EVENTS and set(sent.values()) == {1}
        with Session(db.get_engine()) as s:
            per_delivery = s.exec(select(Attempt.delivery_id, func.count()).group_by(Attempt.delivery_id)).all()
        assert len(per_delivery) == EVENTS and {n for _, n in per_delivery} == {1}

        # Publish -> first attempt, from another process: printed, not asserted (tests assert no timings).
        # The burst measures the backlog it makes as much as the wake-up; a steady rate measures the wake-up.
        burst = dict(published_at)

        async def steady() -> None:
            # One asyncio client: Python threads here would hold the GIL the receiver's clock needs.
            async with aiohttp.ClientSession(console.url, headers={"Authorization": f"Bearer {token}"}) as client:
                start = time.monotonic() + 0.5

                async def one(n: int) -> None:
                    await asyncio.sleep(max(0.0, start + n / STEADY_RATE - time.monotonic()))  # an open loop
                    sent_at = time.monotonic()
                    async with client.post(
                        "/api/v1/events",
                        json={"type": "payment.created", "data": {"object": "payment", "id": f"pay_s{n}"}},
                    ) as answer:
                        assert answer.status == 202, await answer.text()
                        event_id = (await answer.json())["id"]
                    published_at[event_id], answered_at[event_id] = sent_at, time.monotonic()

                await asyncio.gather(*(one(n) for n in range(STEADY_EVENTS)))

        asyncio.run(steady())
        steady_ids = set(published_at) - set(burst)
        deadline = time.monotonic() + 120
        while len({r.headers["webhook-id"] for r in receiver.hits("/ok")} & steady_ids) < STEADY_EVENTS:
            assert time.monotonic() < deadline, "the steady events did not all arrive"
            time.sleep(0.2)
        hits = receiver.hits("/ok")
        assert len(hits) == EVENTS + STEADY_EVENTS  # still each once
        for label, ids in (
            (f"{EVENTS} as fast as 4 publishers go", burst),
            (f"{STEADY_EVENTS} at {STEADY_RATE}/s", steady_ids),
        ):
            mine = [r for r in hits if r.headers["webhook-id"] in ids]
            figures = []
            for since in (published_at, answered_at):
                lags = sorted(r.at - since[r.headers["webhook-id"]] for r in mine)
                figures.append(
                    f"p50 {statistics.median(lags) * 1000:.0f} ms, p99 {lags[int(len(lags) * 0.99)] * 1000:.0f} ms"
                )
            print(
                f"\nrecipe: {label} through the API; publish sent -> request received: {figures[0]}; "
                f"API answered -> request received: {figures[1]}"
            )
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=60)
        console.stop()
        receiver.stop()
        db._engine_for.cache_clear()
        _drop_postgres_database(name)
