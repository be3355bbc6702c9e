"""Recover failed deliveries since a date: a job in the database that queues them again, in batches.

- Starting one counts the matching deliveries and stores the job; any process
  that delivers runs it (jobs.py), holding a short lease on the job's row, so
  a restart or a crash only pauses it until the lease expires.
- Each batch queues up to BATCH deliveries (due now) and moves the job's
  cursor in one short transaction: memory and lock time stay constant however
  many match. A queued delivery keeps its status until its next attempt is
  recorded; that attempt's outcome is counted in the job (dispatcher).
- Only deliveries still Failure (or Retrying, if asked) are queued, so one
  that has succeeded is never sent again.
- Cancelling stops the queuing and takes back what was queued and not yet sent.
- One running recovery per webhook (a unique index says so).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time

import sqlalchemy as sa
from sqlalchemy import Engine, bindparam, case, func, select, update
from sqlmodel import Session, col

from kwik_console.core import doorbell
from kwik_console.core.clock import utcnow
from kwik_console.core.errors import InvalidInput, NotFound, check_id
from kwik_console.events import catalog
from kwik_console.store.db_clock import database_now
from kwik_console.store.tables import (
    Delivery,
    DeliveryStatus,
    Recovery,
    RecoveryState,
    UTCDateTime,
    Webhook,
    WebhookStatus,
)
from kwik_console.team.audit import Actor, record

log = logging.getLogger(__name__)

BATCH = 1000
LEASE_SECONDS = 10.0
# Statuses a recovery may queue again; Failure when none is chosen.
RECOVERABLE = (DeliveryStatus.FAILURE.value, DeliveryStatus.RETRYING.value)

D = Delivery.__table__.c
R = Recovery.__table__.c
_WHEN = UTCDateTime()


@dataclasses.dataclass(frozen=True)
class Progress:
    """What the console's progress bar shows."""

    id: int
    webhook_id: int
    state: str
    since: dt.datetime
    event_types: list[str]
    statuses: list[str]
    total: int
    queued: int
    sent: int
    succeeded: int
    failed: int
    queuing_done: bool
    created_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None

    @property
    def running(self) -> bool:
        return self.state == RecoveryState.RUNNING

    @property
    def percent(self) -> int:
        """Sent of all matched; 100 once finished."""
        if self.state == RecoveryState.FINISHED:
            return 100
        return min(99, 100 * self.sent // self.total) if self.total else 0

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for key in ("since", "created_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        data["percent"] = self.percent
        return data


def progress_of(job: Recovery) -> Progress:
    return Progress(
        job.id,
        job.webhook_id,
        job.state,
        job.since,
        list(job.event_types),
        list(job.statuses),
        job.total,
        job.queued,
        job.sent,
        job.succeeded,
        job.failed,
        job.queuing_done,
        job.created_by,
        job.created_at,
        job.finished_at,
    )


def _matching(webhook_id: int, since: dt.datetime, event_types: list[str], statuses: list[str]):
    where = [D.webhook_id == webhook_id, D.status.in_(statuses), D.created_at >= since]
    if event_types:
        where.append(D.event_type.in_(event_types))
    return where


class WebhookDisabled(InvalidInput):
    """The webhook is Disabled: it sends nothing, so there is nothing to recover to."""


class AlreadyRunning(InvalidInput):
    """A recovery of the webhook is already running (one at a time)."""


def start_recovery(
    *,
    session: Session,
    webhook_id: int,
    since: dt.datetime,
    event_types: list[str] | None = None,
    statuses: list[str] | None = None,
    actor: Actor,
) -> Progress:
    """Store a recovery of the webhook's failed deliveries created since `since`; jobs.py runs it."""
    webhook = session.get(Webhook, check_id("Webhook", webhook_id))
    if webhook is None:
        raise NotFound(f"Webhook {webhook_id} does not exist.")
    if webhook.status == WebhookStatus.DISABLED:
        raise WebhookDisabled(
            {"webhook": f"{webhook.name!r} is Disabled and sends nothing: re-enable it, then recover."}
        )
    errors = {}
    now = utcnow()
    if not isinstance(since, dt.datetime) or since.tzinfo is None:
        errors["since"] = "Choose the date and time to recover from."
    elif since > now:
        errors["since"] = "The date to recover from must be in the past."
    event_types = sorted({t.strip() for t in (event_types or []) if t and t.strip()})
    unknown = [t for t in event_types if not catalog.is_known_type(t)]
    if unknown:
        errors["event_types"] = f"Unknown event type: {', '.join(unknown)}."
    statuses = sorted({s.strip().lower() for s in (statuses or []) if s and s.strip()}) or [RECOVERABLE[0]]
    if any(s not in RECOVERABLE for s in statuses):
        errors["statuses"] = "A recovery can queue deliveries that are Failure or Retrying."
    if errors:
        raise InvalidInput(errors)
    running = session.exec(
        sa.select(Recovery.id).where(Recovery.webhook_id == webhook_id, Recovery.state == RecoveryState.RUNNING)
    ).first()
    if running:
        raise AlreadyRunning(
            {
                "webhook": f"A recovery of {webhook.name!r} is already running: wait for it to finish, "
                "or cancel it first."
            }
        )
    total = session.exec(
        select(func.count()).select_from(Delivery.__table__).where(*_matching(webhook_id, since, event_types, statuses))
    ).scalar_one()
    job = Recovery(
        webhook_id=webhook_id,
        since=since,
        event_types=event_types,
        statuses=statuses,
        total=total,
        queuing_done=total == 0,
        state=RecoveryState.RUNNING if total else RecoveryState.FINISHED,
        created_by=actor.email[:254],
        created_at=now,
        updated_at=now,
        finished_at=None if total else now,
    )
    session.add(job)
    try:
        session.flush()
    except sa.exc.IntegrityError:  # another member started one a moment ago
        raise AlreadyRunning({"webhook": f"A recovery of {webhook.name!r} is already running."}) from None
    record(
        session=session,
        actor=actor,
        action="recovery.started",
        target=f"webhook {webhook_id}",
        detail={
            "recovery": job.id,
            "since": since.isoformat(),
            "event_types": event_types,
            "statuses": statuses,
            "matched": total,
        },
    )
    if total:
        doorbell.ring_on_commit(session.connection())
    return progress_of(job)


def get_recovery(*, session: Session, recovery_id: int) -> Progress:
    job = session.get(Recovery, check_id("Recovery", recovery_id))
    if job is None:
        raise NotFound(f"Recovery {recovery_id} does not exist.")
    session.refresh(job)
    return progress_of(job)


def latest_recovery(*, session: Session, webhook_id: int) -> Progress | None:
    """The webhook's running recovery, else its most recent one."""
    job = (
        session.exec(
            sa.select(Recovery)
            .where(Recovery.webhook_id == webhook_id)
            .order_by((Recovery.state == RecoveryState.RUNNING).desc(), col(Recovery.id).desc())
            .limit(1)
        )
        .scalars()
        .first()
    )
    return progress_of(job) if job else None


def list_recoveries(*, session: Session, webhook_id: int, limit: int = 20) -> list[Progress]:
    jobs = (
        session.exec(
            sa.select(Recovery).where(Recovery.webhook_id == webhook_id).order_by(col(Recovery.id).desc()).limit(limit)
        )
        .scalars()
        .all()
    )
    return [progress_of(j) for j in jobs]


def cancel_recovery(*, session: Session, recovery_id: int, actor: Actor) -> Progress:
    """Stop queuing; deliveries queued and not yet sent go back to where they were."""
    job = session.get(Recovery, check_id("Recovery", recovery_id))
    if job is None:
        raise NotFound(f"Recovery {recovery_id} does not exist.")
    if job.state != RecoveryState.RUNNING:
        raise InvalidInput({"recovery": f"This recovery is already {RecoveryState(job.state).label.lower()}."})
    now = utcnow()
    job.state, job.finished_at, job.updated_at = RecoveryState.CANCELLED, now, now
    session.add(job)
    record(
        session=session,
        actor=actor,
        action="recovery.cancelled",
        target=f"webhook {job.webhook_id}",
        detail={"recovery": job.id, "queued": job.queued, "sent": job.sent},
    )
    session.flush()
    # Taking back the queued deliveries is done in batches by the job runner (`take_back`), not here:
    # one statement over 100,000 rows would hold the write lock too long.
    return progress_of(job)


# ---------------------------------------------------------------- running (jobs.py)

_TAKE = (
    update(Recovery)
    .where(
        R.id == bindparam("job"),
        R.state == RecoveryState.RUNNING.value,
        R.lease_until.is_(None) | (R.lease_until < bindparam("now", type_=_WHEN)) | (R.leased_by == bindparam("owner")),
    )
    .values(lease_until=bindparam("until", type_=_WHEN), leased_by=bindparam("owner"))
)


def run_recoveries(engine: Engine, *, owner: str, budget_seconds: float = 0.5, batch: int = BATCH) -> int:
    """Queue batches of running recoveries this process may take, for about `budget_seconds`.

    Also finishes recoveries whose deliveries have all been sent, and takes back
    the unsent deliveries of cancelled ones. Returns how many deliveries it queued.
    """

    deadline = time.monotonic() + budget_seconds
    queued = 0
    with engine.connect() as conn:
        jobs = conn.execute(select(R.id, R.state, R.queuing_done).where(R.state == RecoveryState.RUNNING.value)).all()
    for job in jobs:
        if not job.queuing_done:
            while time.monotonic() < deadline:
                n, done = _queue_batch(engine, job.id, owner=owner, batch=batch)
                queued += n
                if done or n < 0:
                    break
        _finish_if_sent(engine, job.id)
        if time.monotonic() >= deadline:
            break
    take_back_cancelled(engine, batch=batch)
    return queued


def _queue_batch(engine: Engine, job_id: int, *, owner: str, batch: int) -> tuple[int, bool]:
    """One transaction: take the job's lease, queue the next batch, move the cursor. (-1, True) if not ours."""
    with engine.begin() as conn:
        now = database_now(conn)  # the deliveries' leases and due times are by the database's clock
        until = now + dt.timedelta(seconds=LEASE_SECONDS)
        if not conn.execute(_TAKE, {"job": job_id, "now": now, "until": until, "owner": owner}).rowcount:
            return -1, True  # cancelled, finished, or another process runs it
        job = conn.execute(select(R).where(R.id == job_id)).one()
        where = _matching(job.webhook_id, job.since, job.event_types, job.statuses)
        ids = list(conn.execute(select(D.id).where(*where, D.id > job.cursor).order_by(D.id).limit(batch)).scalars())
        moved = 0
        if ids:
            moved = conn.execute(
                update(Delivery)
                .where(D.id.in_(ids), D.status.in_(job.statuses), D.lease_until.is_(None) | (D.lease_until < now))
                .values(next_attempt_at=now, recovery_id=job_id, updated_at=now)
            ).rowcount
            doorbell.ring_on_commit(conn)
        done = len(ids) < batch
        conn.execute(
            update(Recovery)
            .where(R.id == job_id)
            .values(
                cursor=ids[-1] if ids else job.cursor,
                queued=R.queued + moved,
                queuing_done=done,
                updated_at=now,
                # A delivery that was on its way when its turn came is not queued: count it as no longer matched.
                total=R.total - (len(ids) - moved),
            )
        )
    return moved, done


def _finish_if_sent(engine: Engine, job_id: int) -> None:
    with engine.begin() as conn:
        job = conn.execute(select(R.state, R.queuing_done).where(R.id == job_id)).first()
        if job is None or job.state != RecoveryState.RUNNING or not job.queuing_done:
            return
        waiting = conn.execute(select(D.id).where(D.recovery_id == job_id).limit(1)).first()
        if waiting is None:
            now = utcnow()
            conn.execute(
                update(Recovery)
                .where(R.id == job_id, R.state == RecoveryState.RUNNING.value)
                .values(
                    state=RecoveryState.FINISHED.value,
                    finished_at=now,
                    updated_at=now,
                    lease_until=None,
                    leased_by=None,
                )
            )
            log.info("recovery %s finished", job_id)


def take_back_cancelled(engine: Engine, *, batch: int = BATCH) -> int:
    """Deliveries queued by cancelled recoveries and not yet sent: back to Failure (a Retrying one keeps its turn)."""
    taken = 0
    cancelled = select(R.id).where(R.state == RecoveryState.CANCELLED.value).scalar_subquery()
    while True:
        with engine.begin() as conn:
            now = database_now(conn)  # leases are by the database's clock
            ids = list(
                conn.execute(
                    select(D.id)
                    .where(D.recovery_id.in_(cancelled), D.lease_until.is_(None) | (D.lease_until < now))
                    .limit(batch)
                ).scalars()
            )
            if not ids:
                return taken
            conn.execute(
                update(Delivery)
                .where(D.id.in_(ids))
                .values(
                    recovery_id=None,
                    updated_at=now,
                    next_attempt_at=case((D.status == DeliveryStatus.FAILURE.value, None), else_=D.next_attempt_at),
                )
            )
            taken += len(ids)
