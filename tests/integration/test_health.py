"""/healthz, /readyz, /metrics and JSON logs, against real databases, a real scheduler and real processes."""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime as dt
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
import sqlmodel
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, func, select, update

from kwik_console.core import logs, metrics
from kwik_console.core.clock import utcnow
from kwik_console.delivery import scheduler
from kwik_console.events.publishing import publish
from kwik_console.store import db, schema
from kwik_console.store.tables import Attempt, Delivery
from kwik_console.team import audit
from kwik_console.web import metrics as scrape_metrics
from kwik_console.web import probes as health
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import KWIK_CONSOLE, ROOT, configure

LOOPBACK = ("127.0.0.1", 50123)
ELSEWHERE = ("10.1.2.3", 50123)


async def get(path: str, *, client=LOOPBACK, host: str = "127.0.0.1:3000", headers=None) -> httpx.Response:
    """One request to the health app, as if from `client` (a real ASGI call, no server in between)."""
    transport = httpx.ASGITransport(app=health.app(), client=client)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as http:
        return await http.get(path, headers=headers)


def fetch(path: str, **kwargs) -> httpx.Response:
    return asyncio.run(get(path, **kwargs))


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape() -> dict[tuple[str, tuple], float]:
    response = fetch("/metrics")
    assert response.status_code == 200, response.text
    return samples(response.text)


def with_scheduler(body):
    async def main():
        async with scheduler.running() as running:
            return await body(running)

    return asyncio.run(main())


@pytest.fixture
def metrics_dir(kwik, monkeypatch, tmp_path):
    """A metrics directory of this test's own, so counts start from zero."""
    configure(monkeypatch, KWIK_METRICS_DIR=str(tmp_path / "metrics"))
    return tmp_path / "metrics"


def hosted(monkeypatch, **env):
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return configure(
        monkeypatch, KWIK_MODE="hosted", KWIK_SECRET_KEY=key, KWIK_PUBLIC_URL="https://kwik.example.com", **env
    )


# ---------------------------------------------------------------- health and readiness


def test_ready_when_database_schema_and_scheduler_are(kwik):
    async def body(_):
        return await get("/readyz"), await get("/healthz", client=ELSEWHERE)

    ready, alive = with_scheduler(body)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "schema": "ok", "scheduler": "ok"}
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}  # public, from anywhere


def test_not_ready_without_a_scheduler_in_this_process(kwik):
    db.get_engine()
    response = fetch("/readyz", client=ELSEWHERE)  # public too
    assert response.status_code == 503
    assert response.json()["failed"] == ["scheduler"]
    assert response.json()["checks"]["database"] == "ok"


def test_not_ready_when_the_database_cannot_be_reached(kwik, monkeypatch, tmp_path):
    if kwik.database_url.startswith("postgresql"):
        gone = "postgresql://postgres:s3cret@127.0.0.1:1/kwik"  # nothing listens on port 1
    else:
        (tmp_path / "a-file").write_text("")
        gone = f"sqlite:///{tmp_path / 'a-file' / 'kwik.db'}"  # its folder is a file: cannot be opened

    async def body(_):
        configure(monkeypatch, KWIK_DATABASE_URL=gone)  # the scheduler keeps the engine it started with
        return await get("/readyz"), await get("/healthz")

    ready, alive = with_scheduler(body)
    assert ready.status_code == 503
    assert ready.json()["failed"] == ["database", "schema"]
    assert ready.json()["checks"]["scheduler"] == "ok"
    assert "127.0.0.1:1" not in ready.text and "a-file" not in ready.text and "s3cret" not in ready.text
    assert alive.status_code == 200  # liveness never depends on the database


def test_not_ready_when_the_schema_is_behind(kwik):
    engine = db.get_engine()
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM alembic_version")
        conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES ('0001')")
    if schema.head_revision() == "0001":
        pytest.skip("only one migration: no older revision to be behind")

    response = with_scheduler(lambda _: get("/readyz"))
    assert response.status_code == 503
    assert response.json()["failed"] == ["schema"]


def test_ready_reports_redis_when_the_console_keeps_state_in_it(kwik, monkeypatch):
    configure(monkeypatch, KWIK_REDIS_URL="redis://127.0.0.1:6379/0")  # the Redis this machine runs
    ready = with_scheduler(lambda _: get("/readyz"))
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["redis"] == "ok"

    configure(monkeypatch, KWIK_REDIS_URL="redis://:s3cret@127.0.0.1:1/0")  # nothing listens on port 1
    gone = with_scheduler(lambda _: get("/readyz"))
    assert gone.status_code == 503
    assert gone.json()["failed"] == ["redis"]
    assert "s3cret" not in gone.text and "127.0.0.1:1" not in gone.text


# A database no step of the scheduler can open: a folder that does not exist, a port nothing listens on.
UNREACHABLE = {
    "sqlite": "sqlite:////nonexistent-kwik-folder/kwik.db",
    "postgresql": "postgresql+psycopg://127.0.0.1:1/x",
}


async def readyz_until(predicate, timeout: float = 30) -> httpx.Response:
    """/readyz, read until its answer meets `predicate` (the last answer if it never does)."""
    end = time.monotonic() + timeout
    while not predicate(answer := await get("/readyz")) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    return answer


def test_not_ready_while_the_schedulers_own_database_steps_fail(kwik):
    """The console's own probe of the database still answers; the scheduler's steps, on their own engine, fail."""

    async def body(running):
        dispatcher, engine = running.dispatcher, running.dispatcher.engine
        dispatcher.engine = sqlmodel.create_engine(UNREACHABLE[engine.dialect.name])
        try:
            failing = await readyz_until(lambda answer: answer.status_code == 503)
        finally:
            dispatcher.engine = engine
        return failing, await readyz_until(lambda answer: answer.status_code == 200)  # its next step clears it

    failing, ready = with_scheduler(body)
    assert failing.status_code == 503 and failing.json()["checks"]["scheduler"] == "cannot reach the database"
    assert failing.json()["checks"]["database"] == "ok", failing.text
    assert "nonexistent" not in failing.text and "127.0.0.1:1" not in failing.text
    assert ready.status_code == 200, ready.text


# ---------------------------------------------------------------- who may read /metrics


def test_metrics_in_local_mode_only_from_this_host_directly(metrics_dir):
    assert fetch("/metrics").status_code == 200
    assert fetch("/metrics", host="localhost:3000").status_code == 200
    assert fetch("/metrics", client=("::1", 4000), host="[::1]:3000").status_code == 200
    refused = [
        fetch("/metrics", client=ELSEWHERE),
        fetch("/metrics", headers={"x-forwarded-for": "203.0.113.9"}),  # a proxy on this host
        fetch("/metrics", headers={"forwarded": "for=203.0.113.9"}),
        fetch("/metrics", headers={"origin": "https://evil.example"}),  # a web page
        fetch("/metrics", host="rebound.evil.example:3000"),  # DNS rebinding
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert all("kwik_" not in r.text for r in refused)


def test_metrics_in_hosted_mode_want_the_token_when_one_is_set(metrics_dir, monkeypatch):
    hosted(monkeypatch, KWIK_METRICS_TOKEN="t0ken-for-prometheus")
    assert fetch("/metrics").status_code == 401  # loopback is not enough once a token is set
    assert fetch("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
    ok = fetch("/metrics", client=ELSEWHERE, headers={"authorization": "Bearer t0ken-for-prometheus"})
    assert ok.status_code == 200 and "kwik_database_up 1.0" in ok.text
    assert fetch("/healthz", client=ELSEWHERE).status_code == 200


def test_metrics_in_hosted_mode_without_a_token_are_loopback_only(metrics_dir, monkeypatch):
    hosted(monkeypatch)
    assert fetch("/metrics").status_code == 200
    assert fetch("/metrics", client=ELSEWHERE).status_code == 403
    assert fetch("/metrics", headers={"x-real-ip": "203.0.113.9"}).status_code == 403


# ---------------------------------------------------------------- what /metrics says


def test_database_gauges_match_the_rows(metrics_dir, receiver):
    with db.session_scope() as s:
        webhooks.create_webhook(
            session=s,
            data=WebhookInput(name="Shop", url=receiver.url("/ok"), events=["payment.created"]),
            actor=audit.CLI,
        )
    ids = [i for n in range(10) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]
    now = utcnow()
    engine = db.get_engine()
    with Session(engine) as s:
        s.exec(update(Delivery).where(Delivery.id.in_(ids[:3])).values(status="success", next_attempt_at=None))
        s.exec(update(Delivery).where(Delivery.id == ids[3]).values(status="failure", next_attempt_at=None))
        s.exec(
            update(Delivery)
            .where(Delivery.id.in_(ids[4:6]))
            .values(status="retrying", next_attempt_at=now + dt.timedelta(hours=1))
        )  # not due yet
        s.exec(
            update(Delivery).where(Delivery.id == ids[6]).values(next_attempt_at=now - dt.timedelta(seconds=120))
        )  # due for two minutes
        s.commit()
        by_status = dict(s.exec(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    assert by_status == {"success": 3, "failure": 1, "retrying": 2, "pending": 4}

    got = scrape()
    # The queue, from the database; finished rows are not read (they are counted as they end).
    assert {k[1][0][1]: v for k, v in got.items() if k[0] == "kwik_deliveries"} == {"retrying": 2, "pending": 4}
    assert got[("kwik_deliveries_due", ())] == 4
    assert 120 <= got[("kwik_oldest_due_delivery_age_seconds", ())] < 3600
    assert got[("kwik_database_up", ())] == 1


def test_the_queue_gauge_reads_only_unfinished_rows(metrics_dir):
    """A scrape must cost the size of the queue, not of the history (millions of finished rows)."""
    engine = db.get_engine()
    compiled = scrape_metrics.unfinished_by_status().compile(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " ".join(
                str(r[-1])
                for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), tuple(compiled.params.values()))
            )
            assert "SEARCH delivery USING INDEX ix_delivery_due" in plan and "SCAN delivery" not in plan, plan
        else:  # a small table is scanned whatever the indexes: ask the planner as it would plan a big one
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = " ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + str(compiled)))
            assert "ix_delivery_due" in plan or "ix_delivery_pending" in plan, plan


def test_the_reporting_functions_add_up_across_processes(metrics_dir):
    metrics.observe_attempt("success", 0.04)
    metrics.observe_attempt("success", 0.3)
    metrics.observe_attempt("failure", 0.2)
    metrics.observe_attempt("error", 1.5)
    metrics.observe_claim(0.002, 5)
    metrics.observe_claim(0.001, 0)
    metrics.observe_record(0.003)
    metrics.set_in_flight(7)
    metrics.observe_attempt("failure", 0.1, ended="failure")
    with pytest.raises(ValueError):
        metrics.observe_attempt("timeout", 1.0)
    with pytest.raises(ValueError):
        metrics.observe_attempt("failure", 1.0, ended="retrying")
    # Another process, as a `kwik-console worker` would be, sharing the directory; then it exits.
    other = (
        "from kwik_console.core import metrics\n"
        "for _ in range(2): metrics.observe_attempt('success', 0.01)\n"
        "metrics.observe_claim(0.004, 2)\n"
        "metrics.set_in_flight(3)\n"
    )
    subprocess.run([sys.executable, "-c", other], env={**os.environ}, cwd=ROOT, check=True)

    got = scrape()
    assert got[("kwik_attempts_total", (("outcome", "success"),))] == 4
    assert got[("kwik_attempts_total", (("outcome", "failure"),))] == 2
    assert got[("kwik_deliveries_ended_total", (("status", "failure"),))] == 1
    assert got[("kwik_deliveries_ended_total", (("status", "success"),))] == 0
    assert got[("kwik_attempts_total", (("outcome", "error"),))] == 1
    assert got[("kwik_attempt_duration_seconds_count", (("outcome", "success"),))] == 4
    assert got[("kwik_attempt_duration_seconds_bucket", (("le", "0.05"), ("outcome", "success")))] == 3
    assert got[("kwik_claim_duration_seconds_count", ())] == 3
    assert got[("kwik_deliveries_claimed_total", ())] == 7
    assert got[("kwik_record_duration_seconds_count", ())] == 1
    assert got[("kwik_attempts_in_flight", ())] == 7  # the exited process's 3 are no longer in flight


def test_after_a_burst_the_counters_match_the_database(metrics_dir, receiver):
    for path in ("/ok", "/fail", "/reset"):  # success; failure (500); error (no response)
        with db.session_scope() as s:
            webhooks.create_webhook(
                session=s,
                data=WebhookInput(name=path, url=receiver.url(path), events=["payment.created"]),
                actor=audit.CLI,
            )
    ids = [i for n in range(40) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]

    def finished() -> bool:
        with Session(db.get_engine()) as s:
            return (
                s.exec(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.id.in_(ids), Delivery.next_attempt_at.is_not(None))
                ).one()
                == 0
            )

    async def body(running):
        running.wake()
        deadline = time.monotonic() + 120
        while not await asyncio.to_thread(finished) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(finished), "the burst did not finish"
        return await get("/metrics")

    response = with_scheduler(body)
    got = samples(response.text)
    with Session(db.get_engine()) as s:
        codes = s.exec(select(Attempt.http_code)).all()
        by_status = dict(s.exec(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    by_class = collections.Counter("error" if c is None else "success" if 200 <= c < 300 else "failure" for c in codes)
    # 40 successes; every /fail and /reset delivery tried until its retries ran out (3 tries each, at most).
    assert by_class["success"] == 40 and 80 <= by_class["failure"] <= 120 and 80 <= by_class["error"] <= 120
    for outcome in metrics.OUTCOMES:
        assert got[("kwik_attempts_total", (("outcome", outcome),))] == by_class[outcome], outcome
        assert got[("kwik_attempt_duration_seconds_count", (("outcome", outcome),))] == by_class[outcome]
    assert by_status == {"success": 40, "failure": 80}
    assert {k[1][0][1]: v for k, v in got.items() if k[0] == "kwik_deliveries_ended_total"} == by_status
    assert {k[1][0][1]: v for k, v in got.items() if k[0] == "kwik_deliveries"} == {"pending": 0, "retrying": 0}
    assert got[("kwik_deliveries_claimed_total", ())] >= len(codes)
    assert got[("kwik_record_duration_seconds_count", ())] >= 1
    assert got[("kwik_attempts_in_flight", ())] == 0
    assert got[("kwik_deliveries_due", ())] == 0


# ---------------------------------------------------------------- JSON logs


def test_json_lines_carry_extras_and_exceptions():
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure("json", stream=out)
        log = logging.getLogger("kwik_console.delivery.dispatcher")
        log.warning("delivery %s: claim lost", 42, extra={"delivery_id": 42, "webhook_id": 7, "when": utcnow()})
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            log.exception("recording failed")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first["message"] == "delivery 42: claim lost" and first["level"] == "WARNING"
    assert first["logger"] == "kwik_console.delivery.dispatcher"
    assert first["delivery_id"] == 42 and first["webhook_id"] == 7 and "T" in first["when"]
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exception"]


def test_the_worker_logs_json_lines_on_stderr(cli_env):
    env = {**cli_env, "KWIK_LOG_FORMAT": "json"}
    worker = subprocess.Popen(
        [*KWIK_CONSOLE, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stdout, stderr, running = [], [], threading.Event()

    def read(stream, lines, marker=None):
        for line in stream:
            lines.append(line)
            if marker and marker in line:
                running.set()

    readers = [
        threading.Thread(target=read, args=(worker.stdout, stdout, "Kwik worker running"), daemon=True),
        threading.Thread(target=read, args=(worker.stderr, stderr), daemon=True),
    ]
    for r in readers:
        r.start()
    try:
        assert running.wait(30), "".join(stdout + stderr)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        for r in readers:
            r.join(timeout=10)
    assert worker.returncode == 0, "".join(stderr)
    records = [json.loads(line) for line in stderr]  # every line is one JSON object
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    messages = {(r["logger"], r["message"].split(" (")[0]) for r in records}
    assert ("kwik_console.delivery.scheduler", "delivery scheduler started") in messages
    assert ("kwik_console.delivery.scheduler", "delivery scheduler stopped") in messages
    assert not any(line.lstrip().startswith("{") for line in stdout)  # stdout stays for people and --json output
