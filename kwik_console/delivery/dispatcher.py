"""Claim due deliveries, run their attempts, record every attempt, schedule retries.

The database is the source of truth. A claim is a lease on the delivery row
(`lease_until`, `leased_by`): a delivery in flight is never claimed by another
dispatcher, and a crashed dispatcher's claims are taken over once they expire.
Finished attempts are recorded in batches, and claims run a batch ahead of
the caps, so the database is touched a few times per batch, not per attempt.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import functools
import logging
import os
import random
import secrets
import socket
from collections.abc import Callable, Iterable

import httpx
from sqlalchemy import Engine, bindparam, insert, or_, select, update, func

from kwik_console.delivery import client as http
from kwik_console.delivery import retry
from kwik_console.delivery.signing import active_secrets, signature_headers
from kwik_console.models import Attempt, Delivery, DeliveryStatus, Event, UTCDateTime, Webhook, WebhookStatus, utcnow
from kwik_console.settings import Settings

log = logging.getLogger(__name__)

RECORD_GATHER_SECONDS = 0.01

D = Delivery.__table__.c
W = Webhook.__table__.c
E = Event.__table__.c


@dataclasses.dataclass(frozen=True)
class Claim:
    """A delivery this dispatcher holds the lease on, with what its next attempt needs."""

    delivery_id: int
    webhook_id: int
    url: str
    secrets: list[str]
    event_id: str
    body: bytes
    attempt_number: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A recorded attempt and where it left its delivery."""

    delivery_id: int
    attempt_number: int
    status: str
    http_code: int | None
    duration_ms: int
    response_body: str
    error: str | None
    next_attempt_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Finished:
    claim: Claim
    request_headers: dict[str, str]
    result: http.AttemptResult
    attempted_at: dt.datetime


# ---------------------------------------------------------------- database steps


@functools.cache
def _claim_statement(postgres: bool, *, by_ids: bool):
    """UPDATE ... RETURNING that leases due rows; built once, since claiming is the hot path."""
    when = UTCDateTime()
    unleased = or_(D.lease_until.is_(None), D.lease_until < bindparam("now", type_=when))
    due = select(D.id).where(D.next_attempt_at.is_not(None), unleased)
    if by_ids:
        due = due.where(D.id.in_(bindparam("ids", expanding=True)))
    else:
        due = (
            due.where(D.next_attempt_at <= bindparam("now", type_=when),
                      D.webhook_id.not_in(bindparam("full", expanding=True)))
            .order_by(D.next_attempt_at)
            .limit(bindparam("limit"))
        )
    if postgres:
        due = due.with_for_update(skip_locked=True)  # replicas skip each other's rows instead of waiting
    return (
        update(Delivery)
        .where(D.id.in_(due.scalar_subquery()))
        .values(lease_until=bindparam("lease_until", type_=when), leased_by=bindparam("owner"))
        .returning(D.id, D.webhook_id)
    )


# What an attempt needs, for the deliveries just claimed.
_CLAIMED = (
    select(
        D.id, D.webhook_id, D.attempt_count, D.event_id, E.body, W.url, W.status,
        W.secret, W.previous_secret, W.previous_secret_expires_at,
    )
    .join(Webhook, W.id == D.webhook_id)
    .join(Event, E.id == D.event_id)
    .where(D.id.in_(bindparam("kept", expanding=True)))
    .order_by(D.id)
)


def claim_deliveries(
    engine: Engine,
    *,
    owner: str,
    now: dt.datetime,
    lease_until: dt.datetime,
    limit: int,
    ids: Iterable[int] | None = None,
    room: dict[int, int] | None = None,
    per_webhook: int | None = None,
) -> tuple[list[Claim], int]:
    """Lease up to `limit` due deliveries (or exactly `ids`, due or not yet attempted).

    `room` says how many more each busy webhook may take; claims beyond a
    webhook's room are handed back in the same transaction. Returns the kept
    claims and how many rows the claim took before handing back.
    """
    full = [w for w, r in (room or {}).items() if r <= 0]
    params = {"now": now, "lease_until": lease_until, "owner": owner, "limit": limit, "full": full,
              "ids": list(ids or [])}
    with engine.begin() as conn:
        statement = _claim_statement(conn.dialect.name == "postgresql", by_ids=ids is not None)
        taken = conn.execute(statement, params).all()
        kept, handed_back = [], []
        if per_webhook is None:
            kept = [row.id for row in taken]
        else:
            left = dict(room or {})
            for row in sorted(taken, key=lambda r: r.id):
                if left.setdefault(row.webhook_id, per_webhook) > 0:
                    left[row.webhook_id] -= 1
                    kept.append(row.id)
                else:
                    handed_back.append(row.id)
        if handed_back:
            conn.execute(
                update(Delivery).where(D.id.in_(handed_back)).values(lease_until=None, leased_by=None)
            )
        if not kept:
            return [], len(taken)
        rows = conn.execute(_CLAIMED, {"kept": kept}).all()
        claims, stopped = [], []
        for row in rows:
            if row.status != WebhookStatus.LIVE:
                stopped.append(row.id)
                continue
            claims.append(
                Claim(
                    delivery_id=row.id,
                    webhook_id=row.webhook_id,
                    url=row.url,
                    secrets=active_secrets(row.secret, row.previous_secret, row.previous_secret_expires_at, now),
                    event_id=row.event_id,
                    body=row.body.encode(),
                    attempt_number=row.attempt_count + 1,
                )
            )
        if stopped:  # the webhook was disabled after this delivery was scheduled
            conn.execute(
                update(Delivery)
                .where(D.id.in_(stopped))
                .values(status=DeliveryStatus.FAILURE, next_attempt_at=None, lease_until=None,
                        leased_by=None, updated_at=now)
            )
    return claims, len(taken)


def release_claims(engine: Engine, *, owner: str, ids: list[int]) -> None:
    """Give back claims that were never attempted, so any dispatcher can take them now."""
    with engine.begin() as conn:
        conn.execute(
            update(Delivery).where(D.id.in_(ids), D.leased_by == owner).values(lease_until=None, leased_by=None)
        )


_STILL_OURS = (
    select(D.id, W.status)
    .join(Webhook, W.id == D.webhook_id)
    .where(D.id.in_(bindparam("ids", expanding=True)), D.leased_by == bindparam("owner"))
)
_INSERT_ATTEMPT = insert(Attempt)
_RECORD = (
    update(Delivery)
    .where(D.id == bindparam("_id"))
    .values(
        status=bindparam("_status"),
        attempt_count=bindparam("_number"),
        last_http_code=bindparam("_code"),
        next_attempt_at=bindparam("_next", type_=UTCDateTime()),
        lease_until=None,
        leased_by=None,
        updated_at=bindparam("_now", type_=UTCDateTime()),
    )
)


def record_attempts(
    engine: Engine,
    *,
    owner: str,
    finished: list[Finished],
    schedule: tuple[float, ...],
    now: dt.datetime,
    rng: random.Random | None = None,
) -> list[Outcome]:
    """Store each attempt and move its delivery on, in one transaction for the batch."""
    ids = [f.claim.delivery_id for f in finished]
    with engine.begin() as conn:
        # Only deliveries still ours: a deleted webhook takes its deliveries with
        # it, and a lease lost to another dispatcher is that one's to record.
        live = dict(conn.execute(_STILL_OURS, {"ids": ids, "owner": owner}).all())
        attempts, updates, outcomes = [], [], []
        for f in finished:
            c, r = f.claim, f.result
            if c.delivery_id not in live:
                log.warning("delivery %s: claim lost before its attempt was recorded", c.delivery_id)
                continue
            retry_after = r.response_headers.get("retry-after")
            status, next_at = retry.decide(
                http_code=r.http_code, attempts_made=c.attempt_number, schedule=schedule, now=now,
                retry_after_header=retry_after, rng=rng,
            )
            if status == DeliveryStatus.RETRYING and live[c.delivery_id] != WebhookStatus.LIVE:
                status, next_at = DeliveryStatus.FAILURE, None  # disabled while in flight
            attempts.append(
                {
                    "delivery_id": c.delivery_id,
                    "number": c.attempt_number,
                    "attempted_at": f.attempted_at,
                    "http_code": r.http_code,
                    "duration_ms": r.duration_ms,
                    "request_headers": f.request_headers,
                    "response_headers": r.response_headers,
                    "response_body": r.response_body,
                    "error": r.error,
                }
            )
            updates.append(
                {"_id": c.delivery_id, "_status": status.value, "_number": c.attempt_number,
                 "_code": r.http_code, "_next": next_at, "_now": now}
            )
            outcomes.append(
                Outcome(c.delivery_id, c.attempt_number, status.value, r.http_code, r.duration_ms,
                        r.response_body, r.error, next_at)
            )
        if attempts:
            conn.execute(_INSERT_ATTEMPT, attempts)
            conn.execute(_RECORD, updates)
    return outcomes


def read_outcome(engine: Engine, delivery_id: int) -> Outcome | None:
    """The delivery's state and latest attempt, as recorded by whichever dispatcher sent it."""
    A = Attempt.__table__.c
    with engine.connect() as conn:
        row = conn.execute(
            select(D.id, D.status, D.next_attempt_at, A.number, A.http_code, A.duration_ms,
                   A.response_body, A.error)
            .outerjoin(Attempt, A.delivery_id == D.id)
            .where(D.id == delivery_id)
            .order_by(A.number.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    return Outcome(row.id, row.number or 0, row.status, row.http_code, row.duration_ms or 0,
                   row.response_body or "", row.error, row.next_attempt_at)


def next_due_at(engine: Engine, now: dt.datetime) -> dt.datetime | None:
    """When the earliest scheduled attempt falls due, if any is still ahead."""
    with engine.connect() as conn:
        return conn.execute(select(func.min(D.next_attempt_at)).where(D.next_attempt_at > now)).scalar()


# ---------------------------------------------------------------- the dispatcher


class Dispatcher:
    """Runs attempts concurrently under a global cap and a per-webhook cap.

    One per process; `dispatch_due()` is called by the scheduler's jobs,
    `deliver()` sends given deliveries at once and returns their outcomes.
    """

    def __init__(self, settings: Settings, engine: Engine, *, rng: random.Random | None = None):
        self.settings = settings
        self.engine = engine
        self.rng = rng
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # Called with each recorded batch's outcomes (the scheduler arms retries from them).
        self.on_recorded: Callable[[list[Outcome]], None] | None = None
        self._client: httpx.AsyncClient | None = None
        # Attempts on the wire, per webhook: the caps count these. A finished
        # attempt keeps its lease until recorded, so no one else claims it meanwhile.
        self._in_flight: collections.Counter[int] = collections.Counter()
        self._backlog = False  # the last claim filled every free slot: more may be due
        # Claimed, waiting for a slot, per webhook (see dispatch_due).
        self._ready: dict[int, collections.deque[Claim]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._finished: list[Finished] = []
        self._record_wakeup = asyncio.Event()
        self._recorder: asyncio.Task | None = None
        self._waiters: dict[int, asyncio.Future[Outcome]] = {}
        self._closing = False
        self.attempts_recorded = 0

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    async def start(self) -> None:
        self._client = http.make_client(self.settings)
        self._recorder = asyncio.create_task(self._record_loop(), name="kwik-recorder")

    async def close(self, timeout: float | None = None) -> None:
        """Stop claiming, let attempts in flight finish and be recorded, then release resources.

        Attempts still running after `timeout` are abandoned; their leases
        expire and another dispatcher takes them over.
        """
        self._closing = True
        # Claims still waiting for a slot go back at once, not when their lease expires.
        waiting = [c.delivery_id for queue in self._ready.values() for c in queue]
        self._ready.clear()
        if waiting:
            self._db(release_claims, owner=self.owner, ids=waiting)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout or self.settings.attempt_timeout + 1)
        await self._flush()
        if self._recorder:
            self._recorder.cancel()
        if self._client:
            await self._client.aclose()

    def _db(self, fn, /, **kwargs):
        # Inline on this loop, not in a thread: each step is a millisecond or
        # two, and handing work between threads under the GIL cost a quarter
        # of the throughput (bench/delivery.py). The scheduler gives this loop
        # a thread of its own, so the console's UI never waits on it.
        return fn(self.engine, **kwargs)

    def next_due_at(self) -> dt.datetime | None:
        return self._db(next_due_at, now=utcnow())

    async def dispatch_due(self) -> int:
        """Claim due deliveries while there is room, and start their attempts.

        Claims run one batch ahead of the caps: each webhook may hold up to
        twice its cap (on the wire, or ready to go the moment a slot frees),
        so refilling rarely waits on the database. A ready claim waits at
        most one attempt's time, well inside its lease.
        """
        started = self.in_flight
        cap, per_webhook = self.settings.max_in_flight, self.settings.max_in_flight_per_webhook
        while not self._closing:
            self._start_ready()
            limit = 2 * cap - self.in_flight - self.ready
            if limit <= 0 or self.ready >= cap:
                break
            held = collections.Counter(self._in_flight)
            held.update({w: len(q) for w, q in self._ready.items()})
            now = utcnow()
            claims, taken = self._db(
                claim_deliveries, owner=self.owner, now=now,
                lease_until=now + dt.timedelta(seconds=self.settings.lease_seconds),
                limit=limit, room={w: 2 * per_webhook - n for w, n in held.items()},
                per_webhook=2 * per_webhook,
            )
            for claim in claims:
                self._ready.setdefault(claim.webhook_id, collections.deque()).append(claim)
            self._start_ready()
            self._backlog = taken >= limit
            if not self._backlog:
                break
        return self.in_flight - started

    @property
    def ready(self) -> int:
        return sum(len(q) for q in self._ready.values())

    def _start_ready(self) -> None:
        """Start ready claims while the global and per-webhook caps allow."""
        cap, per_webhook = self.settings.max_in_flight, self.settings.max_in_flight_per_webhook
        for webhook_id in list(self._ready):
            queue = self._ready[webhook_id]
            while queue and self.in_flight < cap and self._in_flight[webhook_id] < per_webhook:
                self._start([queue.popleft()])
            if not queue:
                del self._ready[webhook_id]

    async def deliver(self, delivery_ids: list[int]) -> list[Outcome]:
        """Attempt these deliveries now and wait for their recorded outcomes.

        A delivery another dispatcher already holds is waited for, then read back.
        """
        loop = asyncio.get_running_loop()
        futures = {i: self._waiters.setdefault(i, loop.create_future()) for i in delivery_ids}
        now = utcnow()
        claims, _ = self._db(
            claim_deliveries, owner=self.owner, now=now,
            lease_until=now + dt.timedelta(seconds=self.settings.lease_seconds),
            limit=len(delivery_ids), ids=delivery_ids,
        )
        self._start(claims)
        mine = {c.delivery_id for c in claims}
        outcomes: dict[int, Outcome] = {}
        pending = dict(futures)
        deadline = loop.time() + self.settings.attempt_timeout + 5
        while pending and loop.time() < deadline:
            await asyncio.wait(pending.values(), timeout=0.25)
            for delivery_id, future in list(pending.items()):
                if future.done():
                    outcomes[delivery_id] = pending.pop(delivery_id).result()
                elif delivery_id not in mine:  # held by another dispatcher: read its record
                    outcome = self._db(read_outcome, delivery_id=delivery_id)
                    if outcome is not None and outcome.attempt_number:
                        outcomes[delivery_id] = outcome
                        pending.pop(delivery_id)
        for delivery_id in pending:  # still running after the timeout: report where it stands
            self._waiters.pop(delivery_id, None)
            outcome = self._db(read_outcome, delivery_id=delivery_id)
            if outcome is not None:
                outcomes[delivery_id] = outcome
        return [outcomes[i] for i in delivery_ids if i in outcomes]

    def _start(self, claims: list[Claim]) -> None:
        for claim in claims:
            self._in_flight[claim.webhook_id] += 1
            self._spawn(self._attempt(claim))

    def _spawn(self, coroutine) -> None:
        # Hold a reference: the event loop keeps only weak ones to its tasks.
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, claim: Claim) -> None:
        attempted_at = utcnow()
        headers = signature_headers(claim.secrets, claim.event_id, int(attempted_at.timestamp()), claim.body)
        try:
            result = await http.send(self._client, claim.url, claim.body, headers, self.settings)
        except Exception as exc:  # noqa: BLE001  a bug here must not lose the claim silently
            log.exception("attempt of delivery %s failed unexpectedly", claim.delivery_id)
            result = http.AttemptResult(error=f"internal error: {exc}")
        request_headers = {"content-type": "application/json", "user-agent": http.USER_AGENT, **headers}
        self._finished.append(Finished(claim, request_headers, result, attempted_at))
        self._record_wakeup.set()
        self._in_flight[claim.webhook_id] -= 1
        if self._in_flight[claim.webhook_id] <= 0:
            del self._in_flight[claim.webhook_id]
        if self._closing:
            return
        self._start_ready()  # a slot is free: the next ready claim takes it at once
        # Top up once half the ready claims are used, rather than wait for the next tick.
        if self._backlog and self.ready <= self.settings.max_in_flight // 2:
            self._spawn(self.dispatch_due())

    async def _record_loop(self) -> None:
        while True:
            await self._record_wakeup.wait()
            # Gather a few more results: one transaction for many attempts is far cheaper.
            await asyncio.sleep(RECORD_GATHER_SECONDS)
            self._record_wakeup.clear()
            await self._flush()

    async def _flush(self) -> None:
        batch, self._finished = self._finished, []
        if not batch:
            return
        outcomes: list[Outcome] = []
        for attempt in range(3):
            try:
                outcomes = self._db(
                    record_attempts, owner=self.owner, finished=batch,
                    schedule=self.settings.retry_schedule, now=utcnow(), rng=self.rng,
                )
                break
            except Exception:  # noqa: BLE001  the leases expire and the attempts are made again
                log.exception("recording %d attempts failed (try %d of 3)", len(batch), attempt + 1)
                await asyncio.sleep(0.5 * (attempt + 1))
        self.attempts_recorded += len(outcomes)
        for outcome in outcomes:
            waiter = self._waiters.pop(outcome.delivery_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(outcome)
        if self.on_recorded is not None:
            self.on_recorded(outcomes)
