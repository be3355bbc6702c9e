"""Operating deliveries benchmark at the default settings: a script, not a test.

    .venv/bin/python bench/operations.py [--database sqlite|postgresql|URL] [--scenario recovery,purge]
                                         [--quick] [--json]

--database: "sqlite" (the default: a file in a temporary directory), "postgresql"
(the local server, postgresql+psycopg://postgres@127.0.0.1:5432), or a URL:
sqlite:///path (that file and its -wal/-shm are replaced) or a PostgreSQL URL,
whose server gets a scratch database `kwik_bench_ops`, dropped at the end (the
database the URL names is never touched). Nothing is tuned: every KWIK_* in the
environment is dropped but KWIK_DATABASE_URL, which the bench sets itself.

Scenarios (default: both):
  recovery  one webhook pointing at a receiver on 127.0.0.1 (bench/receiver.py)
            that answers 200 at once, the delivery scheduler running in this
            process (DeliveryScheduler, as `kwik-console run` runs it), bodies
            of about 600 bytes. Side by side in one run:
            (a) normal delivery: N events published (kwik_console.events.publishing.publish)
                while the scheduler runs; deliveries/s = N / (last success
                recorded - first publish).
            (b) recovery: N deliveries stored as Failure (attempt_count 8,
                next_attempt_at NULL, with their events), then start_recovery
                (since one day back); the job runs in the scheduler's jobs.
                deliveries/s = N / (recovery finished_at - created_at): what a
                member waits for the progress bar to say Finished. Also given:
                N / (last success recorded - created_at), the sending alone
                without the last look that marks the job finished.
            ratio = recovery / normal. For information, (a0): the same N
            published before the scheduler starts, drained as a backlog:
            the dispatcher's own rate, since in (a) publishing from this one
            process (about 500/s on SQLite, 200/s on PostgreSQL here) is slower
            than delivering, so (a) measures the publisher. Checked: every delivery Success, the
            recovery's total == sent == succeeded == N, and the receiver got N
            requests in each phase.
  purge     about 1,000,000 rows older than 30 days (events, one delivery each,
            three attempts each; 1 delivery in 200 still Retrying, which must
            survive with its event and attempts) plus recent rows (1 in 20 of
            the old count), seeded in bulk (not timed), then
            kwik_console.operations.retention.purge(engine, days=30) as the
            retention job calls it. Figures: rows purged/s, batches, the
            longest write lock held by one batch (from purge's report), and,
            side by side, a writer thread doing what the dispatcher does all
            the time, a one-row UPDATE (of the webhook) every 10 ms: its worst
            and p99 wait during the purge against the same writer's baseline
            just before it. That worst wait is what the longest lock means for
            a dispatcher recording attempts. Checked: exactly the old
            finished rows are gone; the Retrying ones and the recent ones survive.

--quick: N = 2,000 and about 100,000 rows to purge: a smoke run, not figures
to quote. Nothing is asserted in the exit status; a failed check is printed
as CHECK FAILED in the table (and "checks_ok": false in the JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.receiver import BenchReceiver  # noqa: E402

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "kwik_bench_ops"
EVENT_TYPE = "payment.created"
BODY_SIZE = 600
SCENARIOS = ("recovery", "purge")
WRITE_EVERY = 0.010  # the writer thread's pace during the purge


@dataclasses.dataclass(frozen=True)
class Sizes:
    deliveries: int  # N for recovery (a) and (b)
    old_events: int  # purge: old events = old deliveries; attempts = 3 per delivery
    cap: float  # seconds a phase may take before it is reported incomplete
    baseline_seconds: float  # the writer's run before the purge


FULL = Sizes(deliveries=10_000, old_events=200_000, cap=600, baseline_seconds=3)
QUICK = Sizes(deliveries=2_000, old_events=20_000, cap=120, baseline_seconds=1)
RETRYING_EVERY = 200  # 1 old delivery in 200 is still Retrying
RECENT_SHARE = 20  # recent rows: 1 in 20 of the old count


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def wait_for(condition, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def event_id_at(when: dt.datetime, n: int) -> str:
    """An event id as events.new_event_id makes it, for an event published at `when` (ids sort by time)."""
    value = int(when.timestamp() * 1000) << 80 | (n * 2654435761 + 12345) % (1 << 80)
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_ALPHABET[index])
    return "evt_" + "".join(reversed(chars))


def event_data(padding: str = "") -> dict:
    from kwik_console.events import catalog

    data = catalog.sample_data(EVENT_TYPE)
    data["metadata"] = {"note": padding}
    return data


def padding() -> str:
    from kwik_console.core.clock import utcnow
    from kwik_console.events.publishing import envelope, new_event_id

    size = len(
        envelope(
            event_id=new_event_id(), event_type=EVENT_TYPE, created_at=utcnow(), test=False, data=event_data()
        ).encode()
    )
    return "x" * max(0, BODY_SIZE - size)


@dataclasses.dataclass
class Row:
    scenario: str
    measure: str
    figure: str


class Bench:
    def __init__(self, args, tmp: Path, receiver: BenchReceiver):
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.tmp = tmp
        self.receiver = receiver
        self.engine = None
        self.rows: list[Row] = []
        self.checks: list[tuple[str, bool, str]] = []
        self.figures: dict = {"quick": args.quick, "cores": os.cpu_count()}
        self._sqlite_path: Path | None = None
        value = args.database
        if value == "sqlite" or value.startswith("sqlite:"):
            self.kind = "sqlite"
            self.sqlite_base = Path(value.removeprefix("sqlite:///")) if value != "sqlite" else None
            self.pg_server = None
        elif value == "postgresql" or value.startswith("postgresql"):
            from sqlalchemy.engine import make_url

            self.kind = "postgresql"
            self.sqlite_base = None
            url = make_url(PG_SERVER if value == "postgresql" else value)
            if url.drivername == "postgresql":
                url = url.set(drivername="postgresql+psycopg")
            self.pg_server = url  # only its server is used: see _admin and fresh_database
        else:
            raise SystemExit(f"--database: sqlite, postgresql or a sqlite:/// or postgresql URL, not {value!r}")
        self.figures["database"] = self.kind

    # ------------------------------------------------ databases

    def _admin(self):
        from sqlalchemy import create_engine

        return create_engine(self.pg_server.set(database="postgres"), isolation_level="AUTOCOMMIT")

    def _release(self) -> None:
        from kwik_console.store import db

        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        db._engine_for.cache_clear()  # the product keeps one engine per URL; the next one is a new database
        if self._sqlite_path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self._sqlite_path}{suffix}").unlink(missing_ok=True)
            self._sqlite_path = None

    def fresh_database(self, name: str):
        """A new, empty database with the schema, as KWIK_DATABASE_URL of this process."""
        from sqlalchemy import text

        from kwik_console.core import settings
        from kwik_console.store import db

        self._release()
        if self.kind == "sqlite":
            path = (
                self.sqlite_base.with_name(f"{self.sqlite_base.name}-{name}")
                if self.sqlite_base
                else self.tmp / f"{name}.db"
            )
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            self._sqlite_path = path
            url = f"sqlite:///{path}"
        else:
            admin = self._admin()
            try:
                with admin.connect() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
                    conn.execute(text(f"CREATE DATABASE {PG_DATABASE}"))
            finally:
                admin.dispose()
            url = self.pg_server.set(database=PG_DATABASE).render_as_string(hide_password=False)
        os.environ["KWIK_DATABASE_URL"] = url
        settings.get_settings.cache_clear()
        self.engine = db.get_engine()
        return self.engine

    def drop_database(self) -> None:
        from sqlalchemy import text

        self._release()
        if self.kind == "postgresql":
            admin = self._admin()
            try:
                with admin.connect() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
            finally:
                admin.dispose()

    def make_webhook(self, path: str) -> int:
        from kwik_console.events import catalog
        from kwik_console.store import db
        from kwik_console.team import audit
        from kwik_console.webhooks import rules
        from kwik_console.webhooks import service as webhooks

        with db.session_scope() as session:
            return webhooks.create_webhook(
                session=session,
                data=rules.WebhookInput(
                    name=f"Bench {path}", url=self.receiver.url(path), events=catalog.event_type_names()
                ),
                actor=audit.CLI,
            ).id

    def scalar(self, statement, params=None):
        with self.engine.connect() as conn:
            return conn.execute(statement, params or {}).scalar_one()

    def add(self, scenario: str, measure: str, figure: str) -> None:
        self.rows.append(Row(scenario, measure, figure))

    def check(self, scenario: str, what: str, ok: bool, detail: str = "") -> None:
        self.checks.append((scenario, ok, what))
        if not ok:
            say(f"  CHECK FAILED ({scenario}): {what} {detail}")
            self.add(scenario, f"CHECK FAILED: {what}", detail)

    # ------------------------------------------------ recovery vs normal delivery

    def scenario_recovery(self) -> None:
        from sqlalchemy import func, insert, select

        from kwik_console.core.clock import utcnow
        from kwik_console.delivery.scheduler import DeliveryScheduler
        from kwik_console.events.publishing import envelope, publish
        from kwik_console.operations import recovery
        from kwik_console.runtime import wiring
        from kwik_console.store import db
        from kwik_console.store.tables import Delivery, Event
        from kwik_console.team import audit

        wiring.install()  # the engine's hooks, as the console installs them
        n, s = self.sizes.deliveries, self.sizes
        self.fresh_database("recovery")
        webhook_id = self.make_webhook("/w/ops")
        pad = padding()
        D = Delivery.__table__.c
        out = self.figures["recovery"] = {"deliveries": n}

        def successes(*where) -> int:
            return self.scalar(select(func.count()).select_from(Delivery).where(D.status == "success", *where))

        # (a0) for information: the same N as a backlog, published before the scheduler starts, so that the
        # dispatcher's own rate shows (in (a), publishing in this process is slower than delivering).
        self.receiver.reset()
        for _ in range(n):
            publish(EVENT_TYPE, event_data(pad))
        began = time.time()
        scheduler = DeliveryScheduler()
        scheduler.start()
        try:
            complete = wait_for(lambda: successes() >= n, s.cap)
            last = self.scalar(select(func.max(D.updated_at)).where(D.status == "success")).timestamp()
            backlog_seconds = last - began
            backlog_rate = n / backlog_seconds
            received = self.receiver.count()
            self.check(
                "recovery",
                "(a0) every backlog delivery is Success",
                complete and successes() == n,
                f"{successes():,} of {n:,}",
            )
            self.check("recovery", "(a0) the receiver got N requests", received == n, f"{received:,}")
            out["backlog"] = {
                "seconds": round(backlog_seconds, 2),
                "per_second": round(backlog_rate, 1),
                "received": received,
            }
            say(f"  (a0) backlog of {n:,} drained in {backlog_seconds:.2f} s: {backlog_rate:,.0f}/s")

            # (a) normal delivery: publish while the scheduler runs
            self.receiver.reset()
            floor = self.scalar(select(func.max(D.id)))
            first_publish = time.time()
            for _ in range(n):
                publish(EVENT_TYPE, event_data(pad))
            published = time.time()
            say(f"  (a) published {n:,} events in {published - first_publish:.1f} s")
            complete = wait_for(lambda: successes(D.id > floor) >= n, s.cap)
            last = self.scalar(select(func.max(D.updated_at)).where(D.status == "success")).timestamp()
            normal_seconds = last - first_publish
            normal_rate = n / normal_seconds
            received_a = self.receiver.count()
            self.check(
                "recovery",
                "(a) every published delivery is Success",
                complete and successes(D.id > floor) == n,
                f"{successes(D.id > floor):,} of {n:,}",
            )
            self.check("recovery", "(a) the receiver got N requests", received_a == n, f"{received_a:,}")
            out["normal"] = {
                "publish_seconds": round(published - first_publish, 2),
                "seconds": round(normal_seconds, 2),
                "per_second": round(normal_rate, 1),
                "received": received_a,
            }
            say(f"  (a) {n:,} delivered in {normal_seconds:.2f} s: {normal_rate:,.0f}/s")

            # (b) N Failure deliveries, as retries exhausted leave them, then a recovery
            now = utcnow()
            started_at = now - dt.timedelta(hours=2)
            events, deliveries = [], []
            for i in range(n):
                when = started_at + dt.timedelta(seconds=3600 * i / n)
                event_id = event_id_at(when, i)
                events.append(
                    {
                        "id": event_id,
                        "type": EVENT_TYPE,
                        "test": False,
                        "created_at": when,
                        "body": envelope(
                            event_id=event_id, event_type=EVENT_TYPE, created_at=when, test=False, data=event_data(pad)
                        ),
                    }
                )
                deliveries.append(
                    {
                        "event_id": event_id,
                        "webhook_id": webhook_id,
                        "event_type": EVENT_TYPE,
                        "test": False,
                        "status": "failure",
                        "attempt_count": 8,
                        "last_http_code": 500,
                        "next_attempt_at": None,
                        "created_at": when,
                        "updated_at": when + dt.timedelta(hours=1),
                    }
                )
            with self.engine.begin() as conn:
                conn.execute(insert(Event), events)
                conn.execute(insert(Delivery), deliveries)
            first_failed = self.scalar(select(func.min(D.id)).where(D.status == "failure"))
            self.receiver.reset()
            with db.session_scope() as session:
                progress = recovery.start_recovery(
                    session=session, webhook_id=webhook_id, since=now - dt.timedelta(days=1), actor=audit.CLI
                )
            started = time.time()

            def state():
                with db.session_scope() as session:
                    return recovery.get_recovery(session=session, recovery_id=progress.id)

            finished = wait_for(lambda: not state().running, s.cap)
            done = state()
            last = self.scalar(select(func.max(D.updated_at)).where(D.id >= first_failed)).timestamp()
            created = done.created_at.timestamp()
            until_finished = (done.finished_at.timestamp() if done.finished_at else time.time()) - created
            until_sent = last - created
            rate = n / until_finished
            received_b = self.receiver.count()
            recovered = successes(D.id >= first_failed)
            self.check("recovery", "(b) the recovery finished", finished and done.state == "finished", done.state)
            self.check(
                "recovery",
                "(b) total == sent == succeeded == N",
                done.total == done.sent == done.succeeded == n and done.failed == 0,
                f"total {done.total}, sent {done.sent}, succeeded {done.succeeded}, failed {done.failed}",
            )
            self.check("recovery", "(b) every recovered delivery is Success", recovered == n, f"{recovered:,}")
            self.check("recovery", "(b) the receiver got N requests", received_b == n, f"{received_b:,}")
            out["recovery"] = {
                "seconds_until_finished": round(until_finished, 2),
                "seconds_until_last_sent": round(until_sent, 2),
                "per_second": round(rate, 1),
                "per_second_sending": round(n / until_sent, 1),
                "received": received_b,
                "progress": {
                    "total": done.total,
                    "queued": done.queued,
                    "sent": done.sent,
                    "succeeded": done.succeeded,
                    "failed": done.failed,
                },
                "poll_seen_seconds": round(time.time() - started, 2),
            }
            out["ratio"] = round(rate / normal_rate, 3)
            out["ratio_sending"] = round((n / until_sent) / normal_rate, 3)
            say(f"  (b) {n:,} recovered in {until_finished:.2f} s: {rate:,.0f}/s")
        finally:
            scheduler.stop()
            time.sleep(1)  # its PostgreSQL LISTEN thread outlives stop() by up to 0.5 s; let it close before a DROP
        self.add(
            "recovery",
            f"(a0) for information: a backlog of {n:,} published before the scheduler starts",
            f"{backlog_rate:,.0f}/s",
        )
        self.add("recovery", f"(a) normal delivery, {n:,} events published while delivering", f"{normal_rate:,.0f}/s")
        self.add(
            "recovery",
            f"    publishing took {out['normal']['publish_seconds']:.2f} s, last success after {normal_seconds:.2f} s",
            "",
        )
        self.add("recovery", f"(b) recovery of {n:,} Failure deliveries, start -> Finished", f"{rate:,.0f}/s")
        self.add(
            "recovery",
            f"    start -> last success recorded ({until_sent:.2f} s of {until_finished:.2f} s)",
            f"{n / until_sent:,.0f}/s",
        )
        self.add("recovery", "ratio recovery / normal (start -> Finished)", f"{rate / normal_rate:.2f}")
        self.add("recovery", "ratio recovery / normal (start -> last success)", f"{(n / until_sent) / normal_rate:.2f}")
        self.add("recovery", "ratio recovery / backlog (a0), start -> Finished", f"{rate / backlog_rate:.2f}")
        out["ratio_to_backlog"] = round(rate / backlog_rate, 3)

    # ------------------------------------------------ purge

    def seed_purge(self, webhook_id: int, now: dt.datetime) -> dict:
        """Old and recent events, a delivery each, three attempts each; returns what was put in."""
        from sqlalchemy import JSON, bindparam, insert, text

        from kwik_console.events.publishing import envelope
        from kwik_console.store.tables import Event, UTCDateTime

        old, recent = self.sizes.old_events, self.sizes.old_events // RECENT_SHARE
        pad = padding()
        template = envelope(
            event_id="evt_" + "0" * 26, event_type=EVENT_TYPE, created_at=now, test=False, data=event_data(pad)
        )
        oldest, newest_old = now - dt.timedelta(days=90), now - dt.timedelta(days=31)
        recent_from = now - dt.timedelta(days=1)
        chunk = 20_000
        began = time.perf_counter()

        def events(count: int, start: dt.datetime, end: dt.datetime, first: int):
            step = (end - start) / count
            for at in range(0, count, chunk):
                rows = []
                for i in range(at, min(at + chunk, count)):
                    when = start + step * i
                    event_id = event_id_at(when, first + i)
                    rows.append(
                        {
                            "id": event_id,
                            "type": EVENT_TYPE,
                            "test": False,
                            "created_at": when,
                            "body": template.replace("evt_" + "0" * 26, event_id, 1),
                        }
                    )
                with self.engine.begin() as conn:
                    conn.execute(insert(Event), rows)

        events(old, oldest, newest_old, 0)
        events(recent, recent_from, now - dt.timedelta(minutes=1), old)
        pg = self.kind == "postgresql"
        # One delivery per event, in time order (ids follow time, as they do in use); 1 old in 200 still Retrying.
        deliveries = text(
            "INSERT INTO delivery (webhook_id, event_id, event_type, test, status, attempt_count, last_http_code, "
            "next_attempt_at, created_at, updated_at) "
            "SELECT :webhook, e.id, e.type, e.test, "
            "CASE WHEN e.created_at < :split AND e.n % :every = 0 THEN 'retrying' "
            "WHEN e.n % 10 = 1 THEN 'failure' ELSE 'success' END, 3, "
            "CASE WHEN e.n % 10 = 1 OR (e.created_at < :split AND e.n % :every = 0) THEN 500 ELSE 200 END, "
            "CASE WHEN e.created_at < :split AND e.n % :every = 0 THEN :due END, e.created_at, e.created_at "
            "FROM (SELECT id, type, test, created_at, row_number() OVER (ORDER BY id) AS n FROM event) e ORDER BY e.id"
        ).bindparams(bindparam("split", type_=UTCDateTime()), bindparam("due", type_=UTCDateTime()))
        cast = (lambda p: f"CAST(:{p} AS json)") if pg else (lambda p: f":{p}")
        attempts = text(
            "INSERT INTO attempt (delivery_id, number, attempted_at, http_code, duration_ms, request_headers, "
            f"response_headers, response_body, error) SELECT d.id, k.n, d.created_at, "
            "CASE WHEN d.status = 'success' AND k.n = 3 THEN 200 ELSE 500 END, 42 + k.n, "
            f"{cast('request')}, {cast('response')}, "
            "CASE WHEN d.status = 'success' AND k.n = 3 THEN '{}' ELSE :failed END, NULL "
            "FROM delivery d CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) k ORDER BY d.id, k.n"
        ).bindparams(bindparam("request", type_=JSON()), bindparam("response", type_=JSON()))
        request = {
            "content-type": "application/json",
            "user-agent": "Kwik-Webhooks/1.0",
            "webhook-id": "evt_01jz8m1cp724r9vbk9aa9anrsw",
            "webhook-timestamp": "1767225600",
            "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
        }
        response = {"content-type": "application/json", "content-length": "2", "date": "Thu, 01 Jan 2026 00:00:00 GMT"}
        with self.engine.begin() as conn:
            conn.execute(
                deliveries,
                {
                    "webhook": webhook_id,
                    "split": recent_from,
                    "every": RETRYING_EVERY,
                    "due": now + dt.timedelta(hours=6),
                },
            )
            conn.execute(
                attempts,
                {"request": request, "response": response, "failed": '{"error":"internal error, try again later"}'},
            )
        if pg:
            with self.engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
        else:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
        retrying = old // RETRYING_EVERY
        seeded = {
            "old_events": old,
            "old_deliveries": old,
            "old_attempts": 3 * old,
            "old_retrying": retrying,
            "recent_events": recent,
            "recent_deliveries": recent,
            "recent_attempts": 3 * recent,
            "seed_seconds": round(time.perf_counter() - began, 1),
        }
        seeded["rows"] = 5 * (old + recent)
        say(f"  seeded {seeded['rows']:,} rows ({5 * old:,} old) in {seeded['seed_seconds']:.0f} s")
        return seeded

    def scenario_purge(self) -> None:
        from sqlalchemy import bindparam, func, select, text, update

        from kwik_console.core.clock import utcnow
        from kwik_console.operations import retention
        from kwik_console.store.tables import Attempt, Delivery, Event, UTCDateTime, Webhook

        self.fresh_database("purge")
        webhook_id = self.make_webhook("/w/never")  # nothing delivers in this scenario
        now = utcnow()
        seeded = self.seed_purge(webhook_id, now)
        old, recent, retrying = seeded["old_events"], seeded["recent_events"], seeded["old_retrying"]
        D = Delivery.__table__.c
        out = self.figures["purge"] = {"seeded": seeded}

        # The writer: a one-row UPDATE every 10 ms, as the dispatcher writes all the time.
        touch = (
            update(Webhook)
            .where(Webhook.__table__.c.id == webhook_id)
            .values(updated_at=bindparam("now", type_=UTCDateTime()))
        )
        waits: dict[str, list[float]] = {"baseline": [], "purge": []}
        errors: dict[str, int] = {"baseline": 0, "purge": 0}
        phase = ["baseline"]
        stop = threading.Event()

        def writer():
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    with self.engine.begin() as conn:
                        conn.execute(touch, {"now": utcnow()})
                    waits[phase[0]].append((time.perf_counter() - t) * 1000)
                except Exception:  # noqa: BLE001  counted: a write the dispatcher would have lost
                    errors[phase[0]] += 1
                stop.wait(WRITE_EVERY)

        thread = threading.Thread(target=writer, name="bench-writer", daemon=True)
        thread.start()
        try:
            time.sleep(self.sizes.baseline_seconds)
            phase[0] = "purge"
            report = retention.purge(self.engine, days=30)
        finally:
            stop.set()
            thread.join()
        rate = report.rows / report.seconds if report.seconds else float("inf")

        expected_gone = old - retrying
        self.check(
            "purge",
            "purged exactly the old finished deliveries",
            report.deliveries == expected_gone,
            f"{report.deliveries:,} of {expected_gone:,}",
        )
        self.check(
            "purge",
            "purged their attempts",
            report.attempts == 3 * expected_gone,
            f"{report.attempts:,} of {3 * expected_gone:,}",
        )
        self.check(
            "purge", "purged their events", report.events == expected_gone, f"{report.events:,} of {expected_gone:,}"
        )
        with self.engine.connect() as conn:
            left_deliveries = conn.execute(select(func.count()).select_from(Delivery)).scalar_one()
            left_retrying = conn.execute(
                select(func.count()).select_from(Delivery).where(D.status == "retrying")
            ).scalar_one()
            left_events = conn.execute(select(func.count()).select_from(Event)).scalar_one()
            left_attempts = conn.execute(select(func.count()).select_from(Attempt)).scalar_one()
            orphans = conn.execute(
                text("SELECT count(*) FROM delivery d LEFT JOIN event e ON e.id = d.event_id WHERE e.id IS NULL")
            ).scalar_one()
            recent_left = conn.execute(
                select(func.count()).select_from(Delivery).where(D.created_at >= bindparam("cut", type_=UTCDateTime())),
                {"cut": retention.cutoff_for(30, now)},
            ).scalar_one()
        self.check(
            "purge",
            "the old Retrying deliveries survive",
            left_retrying == retrying,
            f"{left_retrying:,} of {retrying:,}",
        )
        self.check("purge", "the recent deliveries survive", recent_left == recent, f"{recent_left:,} of {recent:,}")
        self.check(
            "purge", "deliveries left = recent + Retrying", left_deliveries == recent + retrying, f"{left_deliveries:,}"
        )
        self.check(
            "purge", "events left = recent + Retrying ones'", left_events == recent + retrying, f"{left_events:,}"
        )
        self.check(
            "purge",
            "attempts left = 3 x deliveries left",
            left_attempts == 3 * (recent + retrying),
            f"{left_attempts:,}",
        )
        self.check("purge", "no delivery lost its event", orphans == 0, f"{orphans:,}")

        def stats(values: list[float]) -> dict:
            if not values:
                return {"writes": 0}
            return {
                "writes": len(values),
                "p50_ms": round(statistics.median(values), 2),
                "p99_ms": round(percentile(values, 0.99), 2),
                "max_ms": round(max(values), 2),
            }

        base, during = stats(waits["baseline"]), stats(waits["purge"])
        out.update(
            {
                "rows": report.rows,
                "events": report.events,
                "deliveries": report.deliveries,
                "attempts": report.attempts,
                "batches": report.batches,
                "seconds": round(report.seconds, 2),
                "rows_per_second": round(rate, 1),
                "longest_lock_ms": round(report.longest_lock_ms, 2),
                "writer_baseline": base | {"errors": errors["baseline"]},
                "writer_during_purge": during | {"errors": errors["purge"]},
            }
        )
        say(
            f"  purged {report.rows:,} rows in {report.seconds:.1f} s ({rate:,.0f}/s), {report.batches} batches, "
            f"longest lock {report.longest_lock_ms:.1f} ms; writer worst {during.get('max_ms')} ms"
        )
        self.add(
            "purge",
            f"purge(days=30): {report.rows:,} rows ({report.events:,} events, "
            f"{report.deliveries:,} deliveries, {report.attempts:,} attempts)",
            f"{rate:,.0f} rows/s",
        )
        self.add("purge", f"  in {report.seconds:.1f} s, batches", f"{report.batches:,}")
        self.add("purge", "  longest write lock of one batch (purge's report)", f"{report.longest_lock_ms:.1f} ms")
        self.add(
            "purge",
            f"writer (1-row UPDATE every 10 ms) during the purge: worst "
            f"({during.get('writes', 0):,} writes, {errors['purge']} failed)",
            f"{during.get('max_ms', float('nan')):.1f} ms",
        )
        self.add(
            "purge",
            "  p99 / p50 during the purge",
            f"{during.get('p99_ms', float('nan')):.1f} / {during.get('p50_ms', float('nan')):.2f} ms",
        )
        self.add(
            "purge",
            f"writer before the purge (baseline, {base.get('writes', 0):,} writes): worst",
            f"{base.get('max_ms', float('nan')):.1f} ms",
        )
        self.add(
            "purge",
            "  p99 / p50 before the purge",
            f"{base.get('p99_ms', float('nan')):.1f} / {base.get('p50_ms', float('nan')):.2f} ms",
        )
        self.add(
            "purge",
            f"kept: {retrying:,} old Retrying, {recent:,} recent deliveries (+ events, attempts)",
            "checked" if all(ok for sc, ok, _ in self.checks if sc == "purge") else "NOT KEPT",
        )

    # ------------------------------------------------ output

    def table(self) -> str:
        width = max(len(r.measure) for r in self.rows) + 2
        fig = max(len(r.figure) for r in self.rows) + 2
        lines = [
            f"Operating deliveries benchmark at the default settings: {self.kind}, {os.cpu_count()} cores"
            f"{', QUICK (smoke sizes)' if self.figures['quick'] else ''}",
            "",
        ]
        previous = None
        for r in self.rows:
            if previous is not None and r.scenario != previous:
                lines.append("")
            previous = r.scenario
            lines.append(f"{r.scenario:<10}{r.measure.ljust(width)}{r.figure.rjust(fig)}")
        failed = [f"{sc}: {what}" for sc, ok, what in self.checks if not ok]
        lines.append("")
        lines.append(
            f"checks: {len(self.checks) - len(failed)} of {len(self.checks)} passed"
            + ("" if not failed else "; FAILED: " + "; ".join(failed))
        )
        load = self.figures.get("load_average")
        if load:
            lines.append(f"load average (1, 5, 15 min) at start {load['start']}, at end {load['end']}")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite", help="sqlite (default), postgresql, or a URL")
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="LIST",
        help=f"comma-separated, from {','.join(SCENARIOS)} (default: both)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    args = parser.parse_args()
    chosen = {p.strip() for v in (args.scenario or []) for p in v.split(",") if p.strip()} or set(SCENARIOS)
    if chosen - set(SCENARIOS):
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(chosen - set(SCENARIOS)))}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    dropped = sorted(k for k in os.environ if k.startswith("KWIK_"))
    for key in dropped:
        del os.environ[key]
    if dropped:
        say(f"ignoring {', '.join(dropped)}: the benchmark runs at the default settings")

    began = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    tmp = Path(tempfile.mkdtemp(prefix="kwik-bench-ops-"))
    # The receiver forks: start it before this process opens threads or database connections.
    with BenchReceiver() as receiver:
        bench = Bench(args, tmp, receiver)
        try:
            for name in [s for s in SCENARIOS if s in chosen]:
                say(f"[{time.perf_counter() - began:5.0f} s] {name}")
                try:
                    getattr(bench, f"scenario_{name}")()
                except Exception as exc:  # noqa: BLE001  report it and go on
                    traceback.print_exc()
                    bench.figures[name] = {"error": f"{type(exc).__name__}: {exc}"}
                    bench.add(name, "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
                    bench.checks.append((name, False, "ran to the end"))
        finally:
            try:
                bench.drop_database()
            except Exception:  # noqa: BLE001
                traceback.print_exc()
            shutil.rmtree(tmp, ignore_errors=True)
    bench.figures["load_average"] = {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]}
    bench.figures["checks_ok"] = all(ok for _, ok, _ in bench.checks)
    bench.figures["failed_checks"] = [f"{sc}: {what}" for sc, ok, what in bench.checks if not ok]
    bench.figures["seconds"] = round(time.perf_counter() - began, 1)
    if args.json:
        print(json.dumps(bench.figures, indent=2))
    else:
        print(bench.table())
        print(
            f"\n{bench.figures['seconds']:.0f} s in all; "
            f"{'QUICK sizes: a smoke run, not figures to quote' if args.quick else 'default sizes'}"
        )


if __name__ == "__main__":
    main()
