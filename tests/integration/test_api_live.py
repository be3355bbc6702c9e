"""The API as real processes serve it: idempotency under concurrent repeats, rate limits across two
replicas, Schemathesis over every operation, and publishing while another process holds SQLite's writer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from kwik_console.api import ratelimit
from kwik_console.store import db, writes
from kwik_console.store.db import get_engine, session_scope
from kwik_console.store.tables import Delivery, Event
from kwik_console.store.team_tables import AuditEntry
from kwik_console.team import audit, tokens
from kwik_console.webhooks import rules
from kwik_console.webhooks import service as webhooks
from tests.api_server import ApiServer
from tests.conftest import configure

PUBLISH = {"type": "payment.created", "data": {"id": "pay_01JDX5C7G2M4P9X1Q8W3V6NRTE", "amount": 12500}}


def _token(scopes: str) -> str:
    with session_scope() as session:
        return tokens.create_token(session=session, name="live", scopes=scopes, actor=audit.CLI).token


def test_twenty_concurrent_repeats_of_one_key_publish_one_event(kwik, tmp_path):
    with session_scope() as session:
        webhooks.create_webhook(
            session=session,
            data=rules.WebhookInput(name="Orders", url="https://127.0.0.1:9/hooks", events=["payment.created"]),
            actor=audit.CLI,
        )
    headers = {"Authorization": f"Bearer {_token('publish')}", "Idempotency-Key": "order-1042-created"}
    with ApiServer(tmp_path / "a.log") as a, ApiServer(tmp_path / "b.log") as b:

        def send(i: int) -> httpx.Response:
            return httpx.post((a, b)[i % 2].url + "/api/v1/events", json=PUBLISH, headers=headers, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(send, range(20)))
    assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses if r.status_code != 202]
    bodies = {json.dumps(r.json(), sort_keys=True) for r in responses}
    assert len(bodies) == 1
    assert sorted(r.headers["idempotent-replayed"] for r in responses) == ["false"] + ["true"] * 19
    with get_engine().connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Event)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar() == 1


def _a_fresh_window(monkeypatch) -> None:
    """The limit counts per fixed minute: in this process, one begins now (half a second ago), so the test's
    requests all fall in one. The limit's clock runs behind by how far into its minute the real one is."""
    behind = dt.timedelta(seconds=time.time() % ratelimit.WINDOW_SECONDS - 0.5)
    hit = getattr(ratelimit.hit, "unshifted", ratelimit.hit)
    used_up = getattr(ratelimit.used_up, "unshifted", ratelimit.used_up)

    def shifted_hit(connection, subject, now, *args, **kwargs):
        return hit(connection, subject, now - behind, *args, **kwargs)

    def shifted_used_up(connection, subject, now, limit):
        return used_up(connection, subject, now - behind, limit)

    shifted_hit.unshifted, shifted_used_up.unshifted = hit, used_up
    monkeypatch.setattr(ratelimit, "hit", shifted_hit)
    monkeypatch.setattr(ratelimit, "used_up", shifted_used_up)


def test_the_rate_limit_holds_across_two_processes(kwik, monkeypatch, tmp_path):
    configure(monkeypatch, KWIK_API_RATE_LIMIT="6")
    headers = {"Authorization": f"Bearer {_token('read')}"}
    with ApiServer(tmp_path / "a.log") as a, ApiServer(tmp_path / "b.log") as b:
        # The servers count in real minutes. Should one begin among the requests, they go again with a new
        # token, at its start.
        for _ in range(2):
            window = time.time() // ratelimit.WINDOW_SECONDS
            answers = [
                httpx.get((a, b)[i % 2].url + "/api/v1/webhooks", headers=headers, timeout=30) for i in range(10)
            ]
            if time.time() // ratelimit.WINDOW_SECONDS == window:
                break
            headers = {"Authorization": f"Bearer {_token('read')}"}
        # Another token has its own limit.
        other = {"Authorization": f"Bearer {_token('read')}"}
        assert httpx.get(a.url + "/api/v1/webhooks", headers=other, timeout=30).status_code == 200
    assert [r.status_code for r in answers] == [200] * 6 + [429] * 4
    assert [r.headers["ratelimit-remaining"] for r in answers[:6]] == ["5", "4", "3", "2", "1", "0"]
    refused = answers[6]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-limit"] == "6"


@pytest.fixture
def sqlite_kwik(monkeypatch, tmp_path):
    from kwik_console.core import settings

    yield configure(
        monkeypatch,
        KWIK_DATABASE_URL=f"sqlite:///{tmp_path / 'kwik.db'}",
        KWIK_MODE="local",
        KWIK_CONNECT_TIMEOUT="1",
        KWIK_ATTEMPT_TIMEOUT="1",
        KWIK_LEASE_SECONDS="3",
    )
    settings.get_settings.cache_clear()


# ---------------------------------------------------------------- SQLite's writer and the event loop
# On SQLite a publish runs on the event loop's own thread when the writer is free (writes.run_short_write).
# The loop must never wait for the writer: taken by this process or by another, the work goes to a thread.


def _insert_a_row(ran_on: list[int]):
    def work() -> int:
        ran_on.append(threading.get_ident())
        with writes.short_write(get_engine()) as connection:
            audit.append(connection, actor=audit.CLI, action="token.used")
            return len(ran_on)

    return work


def _rows() -> int:
    with get_engine().connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.action == "token.used")
        ).scalar()


class _Holder:
    """Holds a writer from its own thread until told to let go, or for at most `watchdog` s: had the loop
    waited for the writer, nothing could tell it to let go, and `outlasted` says so."""

    def __init__(self, take, let_go, watchdog: float):
        self.held, self.go, self.outlasted = threading.Event(), threading.Event(), False

        def hold() -> None:
            take()
            self.held.set()
            self.outlasted = not self.go.wait(watchdog)
            let_go()

        self.thread = threading.Thread(target=hold, daemon=True)
        self.thread.start()
        assert self.held.wait(10)

    def let_go(self) -> None:
        self.go.set()
        self.thread.join(30)


async def _until(condition, deadline: float = 20) -> None:
    end = time.monotonic() + deadline
    while not condition() and time.monotonic() < end:
        await asyncio.sleep(0.01)


def test_a_short_write_runs_on_the_loop_when_sqlites_writer_is_free_and_on_a_thread_when_not(sqlite_kwik, tmp_path):
    get_engine()
    loop_thread = threading.get_ident()

    async def scenario() -> None:
        # Free: on the loop's own thread.
        ran_on: list[int] = []
        assert await writes.run_short_write(_insert_a_row(ran_on)) == 1
        assert ran_on == [loop_thread] and _rows() == 1

        # Held by another thread of this process: tried on the loop, refused before any statement, and
        # waited for on a thread.
        ran_on = []
        holder = _Holder(writes._sqlite_writer.acquire, writes._sqlite_writer.release, watchdog=5)
        task = asyncio.ensure_future(writes.run_short_write(_insert_a_row(ran_on)))
        await _until(lambda: len(ran_on) == 2)
        done_early = task.done()
        holder.let_go()
        await task
        assert not holder.outlasted and not done_early
        assert ran_on[0] == loop_thread and ran_on[1] != loop_thread and _rows() == 2

        # Held by another connection (as another process would): SQLite refuses the loop at once, its try
        # rolls back, and the work waits on a thread in SQLite's busy handler until the lock is let go. The
        # watchdog (5 s) is shorter than the busy handler's wait (10 s): a loop waiting there outlasts it.
        ran_on = []
        other = sqlite3.connect(tmp_path / "kwik.db", isolation_level=None, check_same_thread=False)
        holder = _Holder(lambda: other.execute("BEGIN IMMEDIATE"), lambda: other.execute("COMMIT"), watchdog=5)
        task = asyncio.ensure_future(writes.run_short_write(_insert_a_row(ran_on)))
        await _until(lambda: len(ran_on) == 2)
        done_early = task.done()
        holder.let_go()
        other.close()
        assert await task == 2
        assert not holder.outlasted and not done_early
        assert ran_on[0] == loop_thread and ran_on[1] != loop_thread
        assert _rows() == 3  # the loop's try was rolled back: one row, not two

        # A process's first write, before it has opened the database: on a thread (opening it may migrate).
        # The next one, the database open, is on the loop again.
        ran_on = []
        db._engine_for.cache_clear()
        db._opened.clear()
        await writes.run_short_write(_insert_a_row(ran_on))
        await writes.run_short_write(_insert_a_row(ran_on))
        assert len(ran_on) == 2 and ran_on[0] != loop_thread and ran_on[1] == loop_thread and _rows() == 5

    asyncio.run(scenario())


def _read_by_the_server(server_port: int, client: socket.socket) -> bool:
    """Whether the server has read all that `client` sent it: its end's receive queue (Linux) is empty."""
    client_port = client.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, _state, queues = line.split()[1:5]
        if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
            return int(queues.split(":")[1], 16) == 0
    return False


def _wait(condition, timeout: float = 20) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_the_api_answers_while_another_process_holds_sqlites_writer_and_publishes_once_it_lets_go(
    sqlite_kwik, tmp_path
):
    with session_scope() as session:
        webhooks.create_webhook(
            session=session,
            data=rules.WebhookInput(name="Orders", url="https://127.0.0.1:9/hooks", events=["payment.created"]),
            actor=audit.CLI,
        )
    token = _token("publish")
    body = json.dumps(PUBLISH).encode()
    request = (
        f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with ApiServer(tmp_path / "api.log") as api:
        first = httpx.post(api.url + "/api/v1/events", json=PUBLISH, headers={"Authorization": f"Bearer {token}"})
        assert first.status_code == 202, first.text
        other = sqlite3.connect(tmp_path / "kwik.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        publishing = socket.create_connection(("127.0.0.1", api.port), timeout=30)
        try:
            publishing.sendall(request)
            # The server has the whole publish, which must wait for the writer; only then another request.
            assert _wait(lambda: _read_by_the_server(api.port, publishing))
            # The publish waits for the writer on a thread; the API's event loop answers meanwhile. Had the
            # loop waited in SQLite's busy handler (10 s), this would time out.
            assert httpx.get(api.url + "/api/v1/openapi.json", timeout=5).status_code == 200
            publishing.setblocking(False)
            with pytest.raises(BlockingIOError):  # no answer to the publish yet
                publishing.recv(1)
            publishing.setblocking(True)
        finally:
            other.execute("COMMIT")
            other.close()
        answer = publishing.makefile("rb").read()
        publishing.close()
    assert answer.startswith(b"HTTP/1.1 202"), answer[:500]
    with get_engine().connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Event)).scalar() == 2
        assert conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar() == 2
        uses = conn.execute(
            sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.action == "token.used")
        ).scalar()
    assert uses == 2  # each request audited once: the loop's refused try left nothing behind
