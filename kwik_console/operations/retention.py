"""Retention: events, deliveries and attempts older than KWIK_RETENTION_DAYS are purged, the alert emails
sent or given up on before then, and the charts' rollups older than the charts read (events/rollups.py: a day
of minute rows, 30 days of hour rows).

In bounded batches, each its own short transaction, so the purge never holds
the write lock for long (the longest is measured and logged). Walks the rows
oldest first by id and stops at the first one inside the window, so each run
reads only what it removes, plus what it must keep:
- a delivery still Pending or Retrying is never purged, nor its event;
- an event goes once none of its deliveries is left.
The rollups are walked by webhook and bucket, their primary key, from where the last batch stopped.
The rows themselves are the job's state: a run cut short by a restart is
simply taken up by the next one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time

from sqlalchemy import Engine, delete, exists, select, tuple_

from kwik_console.core.clock import utcnow
from kwik_console.core.errors import InvalidInput
from kwik_console.events import rollups
from kwik_console.store.db_clock import database_now
from kwik_console.store.tables import Alert, AlertState, Attempt, Delivery, Event

log = logging.getLogger(__name__)

BATCH = 500
D = Delivery.__table__.c
A = Attempt.__table__.c
E = Event.__table__.c
AL = Alert.__table__.c


@dataclasses.dataclass
class Purged:
    events: int = 0
    deliveries: int = 0
    attempts: int = 0
    rollups: int = 0  # the charts' minute and hour rows
    alerts: int = 0  # alert emails sent or given up on
    cutoff: dt.datetime | None = None  # what was older than this went, by the database's clock
    batches: int = 0
    longest_lock_ms: float = 0.0
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return self.events + self.deliveries + self.attempts + self.rollups + self.alerts


# A hundred years: past it, a cutoff falls before the calendar's first day.
DAYS_MAX = 36_500


def check_days(days, *, label: str = "Days") -> float:
    """The retention window in days, from 0 (keep everything) to DAYS_MAX; InvalidInput for anything else
    (NaN, infinity, text), naming the field as `label` (the CLI's `--days`)."""
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 <= days <= DAYS_MAX:
        raise InvalidInput({"days": f"{label} must be 0 (keep everything) to {DAYS_MAX:,} days."})
    return float(days)


def cutoff_for(days: float, now: dt.datetime | None = None) -> dt.datetime:
    return (now or utcnow()) - dt.timedelta(days=days)


def purge(
    engine: Engine,
    *,
    days: float,
    now: dt.datetime | None = None,
    batch: int = BATCH,
    budget_seconds: float | None = None,
) -> Purged:
    """Remove what is older than `days` (0: nothing), and the rollups older than the charts read; stops early
    after `budget_seconds`, if given."""
    report = Purged()
    if days <= 0:
        return report
    if now is None:  # by the database's clock, as every process shares it
        with engine.connect() as conn:
            now = database_now(conn)
    cutoff = report.cutoff = cutoff_for(days, now)
    started = time.monotonic()

    sqlite = engine.dialect.name == "sqlite"

    def timed(step):
        t = time.monotonic()
        with engine.begin() as conn:
            result = step(conn)
        held = time.monotonic() - t
        report.longest_lock_ms = max(report.longest_lock_ms, held * 1000)
        report.batches += 1
        if sqlite:
            # A writer waiting on SQLite's lock retries on its own timer: leave it a gap as
            # long as the batch held the lock, or back-to-back batches starve it (bench/operations.py).
            time.sleep(min(held, 0.25))
        return result

    def out_of_time() -> bool:
        return budget_seconds is not None and time.monotonic() - started > budget_seconds

    after = 0
    while not out_of_time():

        def deliveries(conn):
            rows = conn.execute(
                select(D.id, D.created_at, D.next_attempt_at).where(D.id > after).order_by(D.id).limit(batch)
            ).all()
            old = [r.id for r in rows if r.created_at < cutoff and r.next_attempt_at is None]
            if old:
                # Checked again as they go: a resend or a recovery may have queued one since it was read.
                # (SQLite: the first DELETE takes the write lock, so nothing changes between the two.)
                still = [D.id.in_(old), D.next_attempt_at.is_(None), D.created_at < cutoff]
                if conn.dialect.name == "postgresql":
                    old = list(conn.execute(select(D.id).where(*still).with_for_update(skip_locked=True)).scalars())
                    still = [D.id.in_(old)]
                report.attempts += conn.execute(
                    delete(Attempt).where(A.delivery_id.in_(select(D.id).where(*still)))
                ).rowcount
                report.deliveries += conn.execute(delete(Delivery).where(*still)).rowcount
            done = len(rows) < batch or any(r.created_at >= cutoff for r in rows)
            return (rows[-1].id if rows else after), done

        after, done = timed(deliveries)
        if done:
            break

    def old_by_id(table, start, remove) -> int:
        """Walk `table` by id, a batch per transaction, until its rows are no longer old; `remove(conn, ids)`
        deletes those of the old ids that may go and says how many it did. Returns how many went in all."""
        removed, last = 0, start
        while not out_of_time():

            def step(conn):
                rows = conn.execute(
                    select(table.id, table.created_at).where(table.id > last).order_by(table.id).limit(batch)
                ).all()
                old = [r.id for r in rows if r.created_at < cutoff]
                done = len(rows) < batch or any(r.created_at >= cutoff for r in rows)
                return (rows[-1].id if rows else last), (remove(conn, old) if old else 0), done

            last, went, done = timed(step)
            removed += went
            if done:
                break
        return removed

    # An event goes once no delivery refers to it.
    report.events = old_by_id(
        E,
        "",
        lambda conn, old: (
            conn.execute(delete(Event).where(E.id.in_(old), ~exists().where(D.event_id == E.id))).rowcount
        ),
    )
    # An alert still to send is kept, however old: its email has not gone yet.
    report.alerts = old_by_id(
        AL,
        0,
        lambda conn, old: conn.execute(delete(Alert).where(AL.id.in_(old), AL.state != AlertState.PENDING)).rowcount,
    )

    def rollups_before(table, read_since: int) -> None:
        """One grain's rows older than `read_since`, walked by their key (webhook, bucket)."""
        R = table.c
        key = tuple_(R.webhook_id, R.bucket)
        last_key = None
        while not out_of_time():

            def old_rollups(conn):
                old = [R.bucket < read_since, *([key > tuple_(*last_key)] if last_key else [])]
                keys = conn.execute(
                    select(R.webhook_id, R.bucket).where(*old).order_by(R.webhook_id, R.bucket).limit(batch)
                ).all()
                if keys:
                    report.rollups += conn.execute(delete(table).where(*old, key <= tuple_(*keys[-1]))).rowcount
                return (tuple(keys[-1]) if keys else last_key), len(keys) < batch

            last_key, done = timed(old_rollups)
            if done:
                return

    for table, keep_s in rollups.KEEP_S.items():
        rollups_before(table, int(now.timestamp()) - keep_s)  # the oldest bucket a chart reads
    report.seconds = time.monotonic() - started
    if report.rows:
        log.info(
            "retention (%g days): purged %d events, %d deliveries, %d attempts, %d alert emails older than %s "
            "and %d chart rollups in %d batches, %.1f s; longest write lock %.1f ms",
            days,
            report.events,
            report.deliveries,
            report.attempts,
            report.alerts,
            cutoff.isoformat(timespec="seconds"),
            report.rollups,
            report.batches,
            report.seconds,
            report.longest_lock_ms,
        )
    return report
