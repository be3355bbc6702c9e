"""Claim due deliveries, run their attempts, record every attempt, schedule retries.

The database is the source of truth. A claim is a lease on the delivery row
(`lease_until`, `leased_by`): a delivery in flight is never claimed by another
dispatcher, and a crashed dispatcher's claims are taken over once they expire.

Three rules keep it fast and fair:
- Database work runs on a thread of its own (on PostgreSQL, records on a
  second), never on the loop that carries the HTTP attempts: a slow write
  (another process holding SQLite's lock) delays records, not responses.
- Claims are taken per webhook, round-robin across the webhooks with due
  deliveries, each up to its room, so a webhook with a huge backlog costs a
  claim no more than one with a single event.
- Endpoints that hang cannot starve a healthy one: a webhook that already has
  attempts on the wire may not take the last quarter of the global slots, and
  an attempt still waiting after a second stops counting against the global
  cap (up to the cap again: at most twice the cap on the wire).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import datetime as dt
import functools
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterable

import httpx
from sqlalchemy import Engine, bindparam, func, insert, select, text, update

from kwik_console.core import metrics
from kwik_console.events import rollups
from kwik_console.store.writes import short_write
from kwik_console.delivery import client as http
from kwik_console.delivery import retry
from kwik_console.webhooks.signing import active_secrets, signature_headers
from kwik_console.operations.after_record import operations_after_record
from kwik_console.store.tables import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Event,
    PreviousSecret,
    UTCDateTime,
    Webhook,
    WebhookStatus,
    utcnow,
)
from kwik_console.core.settings import Settings

log = logging.getLogger(__name__)

RECORD_GATHER_SECONDS = 0.005
# Time kept at the end of a lease for recording an attempt's outcome.
RECORD_MARGIN_SECONDS = 1.0
# A claim that waited longer than this for a slot is checked again before its
# request starts: the webhook may have been disabled or deleted meanwhile.
RECHECK_AFTER_SECONDS = 0.05
# An attempt still waiting for its response after this long is a slow one: it
# gives its global slot to others (it keeps its webhook's).
SLOW_ATTEMPT_SECONDS = 1.0
# While few webhooks are busy, each may hold this many times its cap in claims
# (on the wire, or ready the moment a slot frees); twice its cap when many are.
# One busy webhook's drain is bound by its claims, which run back to back: each
# claim takes what the reach leaves, so a longer reach means fewer, larger claims
# (bench/delivery.py (a), 20,000 events: 625 claims of 32 where 4 made 1,251 of 16).
CLAIM_AHEAD = 8

D = Delivery.__table__.c
W = Webhook.__table__.c
E = Event.__table__.c
P = PreviousSecret.__table__.c
A = Attempt.__table__.c


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
    # time.monotonic() by which the request must start, or the lease could end mid-attempt.
    send_by: float = float("inf")
    claimed_at: float = 0.0


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


@dataclasses.dataclass(frozen=True)
class Taken:
    """What a claim took: the claims kept, and the webhooks that may have more due."""

    claims: list[Claim]
    # Webhooks the claim looked at, and those of them that may have more due.
    checked: set[int]
    saturated: set[int]
    # The claim stopped at its overall limit: other webhooks may have more due.
    limited: bool
    # When a rate-limited webhook that still has due deliveries may send its next one.
    next_rate_at: dt.datetime | None = None


# ---------------------------------------------------------------- database steps

_WHEN = UTCDateTime()

# The webhooks with unfinished deliveries, one index seek each (a loose index
# scan): the cost follows the number of such webhooks, not of their deliveries.
_PENDING_WEBHOOKS = text(
    """
    WITH RECURSIVE pending(webhook_id) AS (
        SELECT min(webhook_id) FROM delivery WHERE next_attempt_at IS NOT NULL
        UNION ALL
        SELECT (SELECT min(d.webhook_id) FROM delivery d
                WHERE d.next_attempt_at IS NOT NULL AND d.webhook_id > pending.webhook_id)
        FROM pending WHERE pending.webhook_id IS NOT NULL
    )
    SELECT webhook_id FROM pending WHERE webhook_id IS NOT NULL
    """
)

# Each webhook's oldest due, unleased deliveries, up to :per of each.
_DUE_PER_WEBHOOK = {
    "postgresql": text(
        """
        SELECT d.id, d.webhook_id, d.next_attempt_at
        FROM unnest(CAST(:webhooks AS integer[])) AS w(id)
        CROSS JOIN LATERAL (
            SELECT id, webhook_id, next_attempt_at FROM delivery
            WHERE webhook_id = w.id AND next_attempt_at IS NOT NULL AND next_attempt_at <= :now
              AND (lease_until IS NULL OR lease_until < :now)
            ORDER BY next_attempt_at LIMIT :per
        ) AS d
        """
    ).bindparams(bindparam("now", type_=_WHEN)),
    "sqlite": text(
        """
        SELECT d.id, d.webhook_id, d.next_attempt_at
        FROM json_each(:webhooks) AS w
        JOIN delivery d ON d.id IN (
            SELECT id FROM delivery
            WHERE webhook_id = w.value AND next_attempt_at IS NOT NULL AND next_attempt_at <= :now
              AND (lease_until IS NULL OR lease_until < :now)
            ORDER BY next_attempt_at LIMIT :per
        )
        """
    ).bindparams(bindparam("now", type_=_WHEN)),
}


@functools.cache
def _lease_statement(postgres: bool):
    """Lease exactly these rows, if still unfinished and unleased: the re-check makes a race harmless."""
    now = bindparam("now", type_=_WHEN)
    rows = select(D.id).where(
        D.id.in_(bindparam("ids", expanding=True)),
        D.next_attempt_at.is_not(None),
        (D.lease_until.is_(None)) | (D.lease_until < now),
    )
    if postgres:
        rows = rows.with_for_update(skip_locked=True)  # replicas skip each other's rows instead of waiting
    return (
        update(Delivery)
        .where(D.id.in_(rows.scalar_subquery()))
        .values(lease_until=bindparam("lease_until", type_=_WHEN), leased_by=bindparam("owner"))
        .returning(D.id, D.webhook_id)
    )


# What an attempt needs, for the deliveries just claimed.
_CLAIMED = (
    select(D.id, D.webhook_id, D.attempt_count, D.event_id, E.body, W.url, W.status, W.secret)
    .join(Webhook, W.id == D.webhook_id)
    .join(Event, E.id == D.event_id)
    .where(D.id.in_(bindparam("kept", expanding=True)))
    .order_by(D.id)
)
_PREVIOUS_SECRETS = select(P.webhook_id, P.secret, P.expires_at).where(
    P.webhook_id.in_(bindparam("webhooks", expanding=True)), P.expires_at > bindparam("now", type_=_WHEN)
)
_STOP = (
    update(Delivery)
    .where(D.id.in_(bindparam("stopped", expanding=True)))
    .values(status=DeliveryStatus.FAILURE, next_attempt_at=None, lease_until=None, leased_by=None,
            recovery_id=None, updated_at=bindparam("now", type_=_WHEN))
)
_UNLEASE = (
    update(Delivery).where(D.id.in_(bindparam("released", expanding=True))).values(lease_until=None, leased_by=None)
)
_WEBHOOK_STATES = select(W.id, W.status, W.max_per_second, W.rate_next_at).where(
    W.id.in_(bindparam("webhooks", expanding=True))
)
_HOLD_RATE_CLOCKS = update(Webhook).where(W.id.in_(bindparam("webhooks", expanding=True))).values(
    rate_next_at=W.rate_next_at)
_SET_RATE_CLOCK = update(Webhook).where(W.id == bindparam("_id")).values(rate_next_at=bindparam("_at", type_=_WHEN))
# How far behind its clock a rate-limited webhook may fall and catch up (at least
# one delivery's interval): claims come a little late, and the rate must not drift down.
RATE_CATCH_UP_SECONDS = 0.2


def _rate_allowance(rate: float, clock: dt.datetime | None, now: dt.datetime) -> tuple[int, dt.datetime]:
    """How many deliveries a webhook limited to `rate` per second may start now, and its clock's base.

    The clock (`rate_next_at`) is when the next delivery may start; each one
    started moves it on by 1/rate (a GCRA, shared through the database by every process).
    """
    interval = 1.0 / rate
    base = max(clock or now, now - dt.timedelta(seconds=max(interval, RATE_CATCH_UP_SECONDS)))
    if base > now:
        return 0, base
    return int((now - base).total_seconds() * rate) + 1, base


# How far one webhook's turns may run ahead of the clock (`Turns`).
TURNS_LEAD = 8


class Turns:
    """Whose turn it is among webhooks on an equal footing in a claim: start-time fair queuing.

    Each webhook has a tag, the deliveries it has been given on a clock shared by all; each claimed
    delivery moves its webhook's tag on by one. A webhook new to the queue, or back after a quiet
    spell, starts at the clock (the least-served tag of the last claim, at most TURNS_LEAD behind
    its most served), so it neither jumps ahead of the others for long nor waits behind them. A
    webhook given two in one claim thus waits for the others' second before its third, whatever
    order their deliveries fell due in; a time of last service could not tell it from the others
    served in the same claim (bench/delivery.py (b), a backlog in webhook order: the first
    webhooks had twice the others' share).
    """

    def __init__(self) -> None:
        self.clock = 0.0
        self._tags: dict[int, float] = {}

    def of(self, webhook_id: int) -> float:
        """Lower goes first."""
        return max(self._tags.get(webhook_id, self.clock), self.clock)

    def served(self, webhook_ids: Iterable[int]) -> None:
        """Record one claim: a webhook id per delivery claimed."""
        starts: dict[int, float] = {}
        for webhook_id in webhook_ids:
            tag = self.of(webhook_id)
            starts.setdefault(webhook_id, tag)
            self._tags[webhook_id] = tag + 1
        if starts:
            # The least served of the claim sets the clock, but it never trails the most served by more than
            # TURNS_LEAD: a webhook taking one at a time (rate-limited, a trickle) must not hold it back while
            # a busy one runs ahead, or a webhook new to the queue would win every tie against the busy one.
            self.clock = max(self.clock, min(starts.values()), max(self._tags[w] for w in starts) - TURNS_LEAD)
        if len(self._tags) > 10_000:  # tags not ahead of the clock are the same as none
            self._tags = {w: t for w, t in self._tags.items() if t > self.clock}


def _due_candidates(conn, *, now, limit: int, room: dict[int, int], per_webhook: int, turns: Turns):
    """Pick up to `limit` due deliveries, round-robin across webhooks, each within its room.

    Returns the ids, the webhooks looked at, those that may have more due, and
    whether the overall limit cut the choice short.
    """
    pending = [w for w in conn.execute(_PENDING_WEBHOOKS).scalars() if room.get(w, per_webhook) > 0]
    if not pending:
        return [], set(), set(), False, None
    # Paused webhooks' deliveries wait; rate-limited ones may take only what their clock allows.
    states = conn.execute(_WEBHOOK_STATES, {"webhooks": pending}).all()
    limited_ids = [s.id for s in states if s.max_per_second and s.status == WebhookStatus.LIVE]
    if limited_ids:  # one process moves a webhook's clock at a time
        if conn.dialect.name == "postgresql":
            locked = {s.id: s for s in conn.execute(_WEBHOOK_STATES.with_for_update(), {"webhooks": limited_ids})}
        else:
            # SQLite: take the write lock first, then read the clocks again. Two processes that
            # both read a clock before either wrote it would each start its allowance.
            conn.execute(_HOLD_RATE_CLOCKS, {"webhooks": limited_ids})
            locked = {s.id: s for s in conn.execute(_WEBHOOK_STATES, {"webhooks": limited_ids})}
        states = [locked.get(s.id, s) for s in states]
    paused = {s.id for s in states if s.status == WebhookStatus.PAUSED}
    rates, next_rate_at = {}, None
    held = {w: per_webhook - r for w, r in room.items()}  # claims each webhook has ready or in flight
    room = dict(room)
    for state in states:
        if state.id in limited_ids:
            allowance, base = _rate_allowance(state.max_per_second, state.rate_next_at, now)
            rates[state.id] = (state.max_per_second, base)
            room[state.id] = min(room.get(state.id, per_webhook), allowance)
            if allowance == 0:
                next_rate_at = base if next_rate_at is None else min(next_rate_at, base)
    pending = [w for w in pending if w not in paused and room.get(w, per_webhook) > 0]
    if not pending:
        return [], set(), set(), False, next_rate_at
    # No more of each than its room, nor than its fair part of the limit (+1, so
    # a webhook left short can be told from one with nothing more due).
    per = min(per_webhook, max(1, -(-limit // len(pending))) + 1)
    if conn.dialect.name == "postgresql":
        params = {"webhooks": pending, "now": now, "per": per}
    else:
        params = {"webhooks": "[" + ",".join(map(str, pending)) + "]", "now": now, "per": per}
    rows = conn.execute(_DUE_PER_WEBHOOK[conn.dialect.name], params).all()
    by_webhook: dict[int, list] = collections.defaultdict(list)
    for row in rows:
        by_webhook[row.webhook_id].append(row)
    ranked = []
    for webhook_id, due in by_webhook.items():
        due.sort(key=lambda r: (r.next_attempt_at, r.id))
        # Round-robin: each webhook's first before anyone's second, counting the claims it
        # already holds; among equals, the webhook given fewest so far first (`Turns`), so a
        # limit never favours the same ones.
        turn, holds = turns.of(webhook_id), held.get(webhook_id, 0)
        ranked.extend((holds + rank, turn, r.next_attempt_at, r.id, webhook_id)
                      for rank, r in enumerate(due[: room.get(webhook_id, per_webhook)]))
    ranked.sort()
    chosen = ranked[:limit]
    taken = collections.Counter(w for *_, w in chosen)
    saturated = {
        w for w, n in taken.items()
        if len(by_webhook[w]) >= per or len(by_webhook[w]) > n or n >= room.get(w, per_webhook)
    }
    clocks = []
    for webhook_id, (rate, base) in rates.items():
        if taken[webhook_id]:
            clock = base + dt.timedelta(seconds=taken[webhook_id] / rate)
            clocks.append({"_id": webhook_id, "_at": clock})
            if webhook_id in saturated:  # more due: look again when the clock allows
                saturated.discard(webhook_id)
                next_rate_at = clock if next_rate_at is None else min(next_rate_at, clock)
    if clocks:
        conn.execute(_SET_RATE_CLOCK, clocks)
    return [i for *_, i, _ in chosen], set(pending), saturated, len(ranked) > limit, next_rate_at


def database_now(conn) -> dt.datetime:
    """The time by the database's clock: every replica's leases are measured by the same one.

    SQLite lives on this machine, so its clock is ours.
    """
    if conn.dialect.name == "postgresql":
        return conn.execute(select(func.clock_timestamp())).scalar_one().astimezone(dt.UTC)
    return utcnow()


def claim_deliveries(
    engine: Engine,
    *,
    owner: str,
    limit: int,
    lease_seconds: float | None = None,
    now: dt.datetime | None = None,
    lease_until: dt.datetime | None = None,
    ids: Iterable[int] | None = None,
    room: dict[int, int] | None = None,
    per_webhook: int | None = None,
    turns: Turns | None = None,
) -> Taken:
    """Lease up to `limit` due deliveries (or exactly `ids`, due or not yet attempted).

    The lease lasts `lease_seconds` by the database's clock (tests may pass
    `now` and `lease_until` instead). `room` says how many more each busy
    webhook may take (default `per_webhook`); `turns` says whose turn it is
    among equals (`Turns`; it is read here, not moved on). Claims of
    webhooks no longer Live are finished as Failure.
    """
    with short_write(engine) as conn:
        postgres = conn.dialect.name == "postgresql"
        if now is None:
            now = database_now(conn)
        if lease_until is None:
            lease_until = now + dt.timedelta(seconds=lease_seconds)
        checked, saturated, limited, next_rate_at = set(), set(), False, None
        if ids is None:
            wanted, checked, saturated, limited, next_rate_at = _due_candidates(
                conn, now=now, limit=limit, room=dict(room or {}), per_webhook=per_webhook or limit,
                turns=turns or Turns(),
            )
        else:
            wanted = list(ids)
        if not wanted:
            return Taken([], checked, set(), False, next_rate_at)
        leased = conn.execute(
            _lease_statement(postgres), {"ids": wanted, "now": now, "lease_until": lease_until, "owner": owner}
        ).all()
        if not leased:  # taken by another dispatcher in the meantime
            return Taken([], checked, saturated, False, next_rate_at)
        rows = conn.execute(_CLAIMED, {"kept": [r.id for r in leased]}).all()
        previous = collections.defaultdict(list)
        for p in conn.execute(_PREVIOUS_SECRETS, {"webhooks": sorted({r.webhook_id for r in rows}), "now": now}):
            previous[p.webhook_id].append((p.secret, p.expires_at))
        claims, stopped, released = [], [], []
        for row in rows:
            if row.status == WebhookStatus.PAUSED:  # paused after this delivery was due: it waits
                released.append(row.id)
                continue
            if row.status != WebhookStatus.LIVE:
                stopped.append(row.id)
                continue
            claims.append(
                Claim(
                    delivery_id=row.id,
                    webhook_id=row.webhook_id,
                    url=row.url,
                    secrets=active_secrets(row.secret, previous[row.webhook_id], now),
                    event_id=row.event_id,
                    body=row.body.encode(),
                    attempt_number=row.attempt_count + 1,
                )
            )
        if stopped:  # the webhook was disabled after this delivery was scheduled
            conn.execute(_STOP, {"stopped": stopped, "now": now})
        if released:
            conn.execute(_UNLEASE, {"released": released})
    order = {i: n for n, i in enumerate(wanted)}
    claims.sort(key=lambda c: order.get(c.delivery_id, 0))
    return Taken(claims, checked, saturated, limited, next_rate_at)


def release_claims(engine: Engine, *, owner: str, ids: list[int]) -> None:
    """Give back claims that were never attempted, so any dispatcher can take them now."""
    with engine.begin() as conn:
        conn.execute(
            update(Delivery).where(D.id.in_(ids), D.leased_by == owner).values(lease_until=None, leased_by=None)
        )


def release_unsent(engine: Engine, *, owner: str, on_wire: list[int]) -> None:
    """Give back every claim `owner` still holds except those whose attempts may be on the wire."""
    with engine.begin() as conn:
        conn.execute(
            update(Delivery)
            .where(D.leased_by == owner, D.id.not_in(on_wire))
            .values(lease_until=None, leased_by=None)
        )


_SENDABLE = (
    select(D.id)
    .join(Webhook, W.id == D.webhook_id)
    .where(
        D.id.in_(bindparam("ids", expanding=True)),
        D.leased_by == bindparam("owner"),
        D.next_attempt_at.is_not(None),
        W.status == WebhookStatus.LIVE.value,
    )
)


def still_sendable(engine: Engine, *, owner: str, ids: list[int]) -> set[int]:
    """Of these claims, the ones still ours, unfinished, and of a Live webhook."""
    with engine.connect() as conn:
        return set(conn.execute(_SENDABLE, {"ids": ids, "owner": owner}).scalars())


_STILL_OURS = (
    select(D.id, W.status, D.webhook_id, D.recovery_id)
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
        next_attempt_at=bindparam("_next", type_=_WHEN),
        lease_until=None,
        leased_by=None,
        recovery_id=None,  # counted in its recovery below: a recovery counts each delivery's next attempt once
        updated_at=bindparam("_now", type_=_WHEN),
    )
)


def storable(text: str | None, limit: int | None = None) -> str | None:
    """Text as every database takes it: no NUL characters (PostgreSQL refuses them), no lone surrogates."""
    if text is None:
        return None
    text = text.replace("\x00", "\N{REPLACEMENT CHARACTER}")
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if limit is None else text[:limit]


def _storable_headers(headers: dict[str, str]) -> dict[str, str]:
    return {storable(k): storable(v) for k, v in headers.items()}


def record_attempts(
    engine: Engine,
    *,
    owner: str,
    finished: list[Finished],
    schedule: tuple[float, ...],
    now: dt.datetime,
    rng: random.Random | None = None,
) -> list[Outcome]:
    """Store each attempt and move its delivery on, in one transaction for the batch.

    A batch the database refuses is recorded again one attempt at a time, so
    one bad row never takes its neighbours with it.
    """
    try:
        return _record(engine, owner=owner, finished=finished, schedule=schedule, now=now, rng=rng)
    except Exception:  # noqa: BLE001  retried row by row below
        if len(finished) == 1:
            raise
        log.exception("recording %d attempts together failed; recording them one by one", len(finished))
    outcomes = []
    for f in finished:
        try:
            outcomes += _record(engine, owner=owner, finished=[f], schedule=schedule, now=now, rng=rng)
        except Exception as exc:  # noqa: BLE001  keep the outcome, drop what the database would not take
            log.exception("recording the attempt of delivery %s failed; recording it without its response",
                          f.claim.delivery_id)
            bare = http.AttemptResult(http_code=f.result.http_code, duration_ms=f.result.duration_ms,
                                      error=f"{f.result.error or ''} (response not stored: {type(exc).__name__})")
            outcomes += _record(engine, owner=owner, finished=[dataclasses.replace(f, result=bare)],
                                schedule=schedule, now=now, rng=rng)
    return outcomes


def _record(engine, *, owner, finished, schedule, now, rng) -> list[Outcome]:
    ids = [f.claim.delivery_id for f in finished]
    with short_write(engine) as conn:
        # Only deliveries still ours: a deleted webhook takes its deliveries with
        # it, and a lease lost to another dispatcher is that one's to record.
        ours = {row.id: row for row in conn.execute(_STILL_OURS, {"ids": ids, "owner": owner})}
        live = {i: row.status for i, row in ours.items()}
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
            if status == DeliveryStatus.RETRYING and live[c.delivery_id] == WebhookStatus.DISABLED:
                status, next_at = DeliveryStatus.FAILURE, None  # disabled while in flight
            body, error = storable(r.response_body), storable(r.error)
            attempts.append(
                {
                    "delivery_id": c.delivery_id,
                    "number": c.attempt_number,
                    "attempted_at": f.attempted_at,
                    "http_code": r.http_code,
                    "duration_ms": r.duration_ms,
                    "request_headers": f.request_headers,
                    "response_headers": _storable_headers(r.response_headers),
                    "response_body": body,
                    "error": error,
                }
            )
            updates.append(
                {"_id": c.delivery_id, "_status": status.value, "_number": c.attempt_number,
                 "_code": r.http_code, "_next": next_at, "_now": now}
            )
            outcomes.append(
                Outcome(c.delivery_id, c.attempt_number, status.value, r.http_code, r.duration_ms, body, error,
                        next_at)
            )
        if attempts:
            conn.execute(_INSERT_ATTEMPT, attempts)
            conn.execute(_RECORD, updates)
            rollups.add(conn, attempts, finished)  # the charts' figures, in the same transaction
            kept = {o.delivery_id: o for o in outcomes}
            operations_after_record(
                conn, [(ours[i].webhook_id, ours[i].recovery_id, kept[i], f.attempted_at)
                       for f in finished if (i := f.claim.delivery_id) in kept],
                max_attempts=len(schedule) + 1,
            )
    return outcomes


def read_outcome(engine: Engine, delivery_id: int) -> Outcome | None:
    """The delivery's state and latest attempt, as recorded by whichever dispatcher sent it."""
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


def next_due_at(engine: Engine, after: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """When the earliest unclaimed attempt falls due, of those due after `after`.

    `after` is when the asking look began: a delivery that fell due while it
    claimed, too late for its claim, is in the answer (a time already past).
    """
    with engine.connect() as conn:
        return conn.execute(select(func.min(D.next_attempt_at)).where(
            D.next_attempt_at > after, D.lease_until.is_(None) | (D.lease_until < now))).scalar()


# ---------------------------------------------------------------- the dispatcher


class Dispatcher:
    """Runs attempts concurrently under a global cap and a per-webhook cap.

    One per process; `dispatch_due()` is called by the scheduler's jobs,
    `deliver()` sends given deliveries at once (ahead of the queue, within the
    same caps) and returns their outcomes.
    """

    def __init__(self, settings: Settings, engine: Engine, *, rng: random.Random | None = None):
        self.settings = settings
        self.engine = engine
        self.rng = rng
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # Called with each recorded batch's outcomes (the scheduler arms retries from them).
        self.on_recorded: Callable[[list[Outcome]], None] | None = None
        self._client: httpx.AsyncClient | None = None
        # Database steps run off the HTTP loop, in order: claims and checks on one thread and,
        # on PostgreSQL, records on another, so neither waits behind the other's round trips.
        # SQLite has one writer at a time: there, one thread does both, taking turns.
        self._database = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kwik-database")
        self._records = self._database
        if engine.dialect.name == "postgresql":
            self._records = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kwik-records")
        # Attempts on the wire (or being re-checked), per webhook: the caps count these.
        # A finished attempt keeps its lease until recorded, so no one else claims it meanwhile.
        self._in_flight: collections.Counter[int] = collections.Counter()
        # When each attempt on the wire started (time.monotonic()), by delivery.
        self._on_wire: dict[int, float] = {}
        self._nudge: asyncio.TimerHandle | None = None
        self._rate_timer: asyncio.TimerHandle | None = None
        # Claimed, waiting for a slot, per webhook; `deliver()`'s claims go first.
        self._ready: dict[int, collections.deque[Claim]] = {}
        self._urgent: collections.deque[Claim] = collections.deque()
        # Webhooks that may have more due than they were given, and whether the
        # last claim stopped at its overall limit (see `_top_up`).
        self._saturated: set[int] = set()
        # Whose turn it is among webhooks on an equal footing: the claim's round-robin.
        self._turns = Turns()
        self._limited = False
        self._claiming: asyncio.Task | None = None
        self._claim_again = False
        self._tasks: set[asyncio.Task] = set()
        self._finished: list[Finished] = []
        self._record_wakeup = asyncio.Event()
        self._recorder: asyncio.Task | None = None
        self._recheck: dict[int, asyncio.Future[bool]] = {}
        self._rechecking: asyncio.Task | None = None
        # Per webhook, the last started claim's decision to send or not (see `_sendable`).
        self._deciding: dict[int, asyncio.Future[None]] = {}
        self._waiters: dict[int, asyncio.Future[Outcome]] = {}
        self._closing = False
        self.attempts_recorded = 0
        # When the last claim looked for due deliveries: whatever was due then has been seen.
        self.last_claim_at: dt.datetime | None = None

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    @property
    def ready(self) -> int:
        return sum(len(q) for q in self._ready.values()) + len(self._urgent)

    async def start(self) -> None:
        self._client = http.make_client(self.settings)
        self._recorder = asyncio.create_task(self._record_loop(), name="kwik-recorder")

    async def close(self, timeout: float | None = None) -> None:
        """Stop claiming, let attempts in flight finish and be recorded, then release resources.

        Attempts still running after `timeout` are abandoned; their leases
        expire and another dispatcher takes them over.
        """
        self._closing = True
        if self._claiming is not None and self._claiming is not asyncio.current_task():
            # A claim is a bounded database step: let it finish, so what it took is handed back below.
            await asyncio.wait({self._claiming}, timeout=self.settings.lease_seconds)
        # Claims still waiting for a slot go back at once, not when their lease expires.
        waiting = [c.delivery_id for queue in [*self._ready.values(), self._urgent] for c in queue]
        self._ready.clear()
        self._urgent.clear()
        if waiting:
            await self._db(release_claims, owner=self.owner, ids=waiting)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout or self.settings.attempt_timeout + 1)
        await self._flush()
        # Whatever else this dispatcher still holds was never sent (a claim that raced the
        # stop): hand it back too. Attempts abandoned on the wire keep theirs until it expires.
        await self._db(release_unsent, owner=self.owner, on_wire=list(self._on_wire))
        if self._recorder:
            self._recorder.cancel()
        if self._rate_timer is not None:
            self._rate_timer.cancel()
        if self._client:
            await self._client.aclose()
        self._database.shutdown(wait=True)
        self._records.shutdown(wait=True)
        metrics.set_in_flight(0)

    async def _db(self, fn, /, *, thread: concurrent.futures.Executor | None = None, **kwargs):
        """Run a database step on a database thread; the HTTP loop goes on meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(thread or self._database, functools.partial(fn, self.engine, **kwargs))

    async def next_due_at(self, after: dt.datetime) -> dt.datetime | None:
        return await self._db(next_due_at, after=after, now=utcnow())

    # -------------------------------------------------- claiming

    async def dispatch_due(self) -> int:
        """Claim due deliveries while there is room, and start their attempts.

        One claim runs at a time; a call while one runs asks it to go round
        again. Claims run ahead of the caps: each webhook may hold up to
        CLAIM_AHEAD times its cap (twice, when many are busy), and the process
        twice its global cap.
        """
        started = self.in_flight
        if self._claiming is not None:
            self._claim_again = True
            return 0
        self._claiming = asyncio.current_task()
        try:
            self._claim_again = True
            while self._claim_again and not self._closing:
                self._claim_again = False
                await self._claim_once()
        finally:
            self._claiming = None
        return self.in_flight - started

    async def _claim_once(self) -> None:
        cap, per_webhook = self.settings.max_in_flight, self.settings.max_in_flight_per_webhook
        # Claims parked behind a webhook that may not start more now (at its own cap,
        # or held back by the slots kept for others) do not use up the claim-ahead:
        # other webhooks' work still gets claimed. Each webhook parks at most its room.
        busy = self._busy()
        parked = sum(len(q) for w, q in self._ready.items() if not self._may_start(w, busy))
        limit = 2 * cap - busy - (self.ready - parked)
        if limit <= 0:
            return
        held = collections.Counter(self._in_flight)
        held.update({w: len(q) for w, q in self._ready.items()})
        # Many busy webhooks keep the slots filled between them, and a short reach ahead
        # keeps their turns even; a few reach further, so a claim's round trips serve more.
        ahead = CLAIM_AHEAD if len(held) * per_webhook <= cap else 2
        now = utcnow()
        claimed_at = time.monotonic()
        taken: Taken = await self._db(
            claim_deliveries, owner=self.owner, lease_seconds=self.settings.lease_seconds,
            limit=limit, room={w: ahead * per_webhook - n for w, n in held.items()}, per_webhook=ahead * per_webhook,
            turns=self._turns,  # moved on only here, on the loop, once the claim has returned
        )
        self._turns.served(c.webhook_id for c in taken.claims)
        metrics.observe_claim(time.monotonic() - claimed_at, len(taken.claims))
        self.last_claim_at = now
        if self._closing:  # stopped while claiming: these go straight back
            if taken.claims:
                await self._db(release_claims, owner=self.owner, ids=[c.delivery_id for c in taken.claims])
            return
        send_by = claimed_at + self.settings.lease_seconds - self.settings.attempt_timeout - RECORD_MARGIN_SECONDS
        # The claim read its webhooks' state as it returned: the wait for a slot starts now.
        taken_at = time.monotonic()
        for claim in taken.claims:
            claim = dataclasses.replace(claim, send_by=send_by, claimed_at=taken_at)
            self._ready.setdefault(claim.webhook_id, collections.deque()).append(claim)
        self._saturated = taken.saturated | (self._saturated - taken.checked)
        self._limited = taken.limited
        if taken.next_rate_at is not None:
            self._look_at(taken.next_rate_at)
        self._start_ready()
        if taken.limited and taken.claims and self.ready < cap:
            self._claim_again = True

    def _look_at(self, when: dt.datetime) -> None:
        """Claim again at `when` (a rate-limited webhook's next turn), unless a look is due sooner."""
        loop = asyncio.get_running_loop()
        at = loop.time() + max(0.001, (when - utcnow()).total_seconds())
        if self._rate_timer is not None and self._rate_timer.when() <= at:
            return
        if self._rate_timer is not None:
            self._rate_timer.cancel()

        def look():
            self._rate_timer = None
            if not self._closing:
                self._spawn(self.dispatch_due())

        self._rate_timer = loop.call_at(at, look)

    def _top_up(self, webhook_id: int) -> None:
        """After an attempt: claim more if this webhook, or the claim as a whole, may have more due."""
        if self._closing:
            return
        per_webhook = self.settings.max_in_flight_per_webhook
        low = len(self._ready.get(webhook_id, ())) < per_webhook
        if (webhook_id in self._saturated and low) or (self._limited and self.ready <= self.settings.max_in_flight // 2):
            if self._claiming is None:
                self._spawn(self.dispatch_due())
            else:
                self._claim_again = True

    # -------------------------------------------------- starting attempts

    def _busy(self) -> int:
        """Global slots taken: attempts in flight, less the slow ones (up to the cap)."""
        busy = self.in_flight
        if busy < self.settings.max_in_flight:
            return busy
        since = time.monotonic() - SLOW_ATTEMPT_SECONDS
        slow = sum(1 for started in self._on_wire.values() if started < since)
        return busy - min(slow, self.settings.max_in_flight)

    def _may_start(self, webhook_id: int, busy: int) -> bool:
        cap, per_webhook = self.settings.max_in_flight, self.settings.max_in_flight_per_webhook
        mine = self._in_flight[webhook_id]
        if busy >= cap or mine >= per_webhook:
            return False
        # The last quarter of the slots is kept for webhooks with nothing on the
        # wire, so endpoints that hang until the timeout cannot take them all.
        return mine == 0 or cap - busy > cap // 4

    def _start_ready(self) -> None:
        """Start ready claims, round-robin across webhooks, while the caps allow."""
        busy = self._busy()
        blocked = collections.deque()
        while self._urgent:
            claim = self._urgent.popleft()
            if self._may_start(claim.webhook_id, busy):
                self._start(claim)
                busy += 1
            else:
                blocked.append(claim)
        self._urgent = blocked
        progress = True
        while progress and self._ready and busy < self.settings.max_in_flight:
            progress = False
            for webhook_id in list(self._ready):
                if not self._may_start(webhook_id, busy):
                    continue
                queue = self._ready.pop(webhook_id)
                self._start(queue.popleft())
                busy += 1
                progress = True
                if queue:  # to the back of the line: the next free slot goes to another webhook
                    self._ready[webhook_id] = queue
        if (self._ready or self._urgent) and busy >= self.settings.max_in_flight and self._nudge is None:
            # Every slot is taken: look again soon, when some attempts may have turned slow.
            def nudge():
                self._nudge = None
                if not self._closing:
                    self._start_ready()

            self._nudge = asyncio.get_running_loop().call_later(SLOW_ATTEMPT_SECONDS / 4, nudge)

    def _start(self, claim: Claim) -> None:
        self._in_flight[claim.webhook_id] += 1
        self._spawn(self._attempt(claim))

    def _spawn(self, coroutine) -> None:
        # Hold a reference: the event loop keeps only weak ones to its tasks.
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sendable(self, claim: Claim) -> bool:
        """Whether a claim may be sent now: its lease has time left, and if it waited, it is still wanted.

        A webhook's claims decide in the order they were started, each after the one
        before it, so its deliveries start oldest first; their re-checks run together.
        """
        before = self._deciding.get(claim.webhook_id)
        decided = self._deciding[claim.webhook_id] = asyncio.get_running_loop().create_future()
        try:
            if time.monotonic() > claim.send_by:
                log.info("delivery %s: lease too close to its end to attempt; handing it back", claim.delivery_id)
                return False
            check = self._recheck_if_stale(claim)
            if before is not None and not before.done():
                await before
                check = check or self._recheck_if_stale(claim)
            return True if check is None else await check
        finally:
            # Set before the caller sends: the next claim's turn comes after this one's request has started.
            if not decided.done():  # (a successor cancelled while waiting cancels it)
                decided.set_result(None)
            if self._deciding.get(claim.webhook_id) is decided:
                del self._deciding[claim.webhook_id]

    def _recheck_if_stale(self, claim: Claim) -> asyncio.Future[bool] | None:
        """A claim that waited too long for its slot is checked again, in the next batch; a fresh one is not."""
        if time.monotonic() - claim.claimed_at <= RECHECK_AFTER_SECONDS:
            return None
        future = self._recheck.get(claim.delivery_id)
        if future is None:
            future = self._recheck[claim.delivery_id] = asyncio.get_running_loop().create_future()
        if self._rechecking is None:
            self._rechecking = asyncio.create_task(self._recheck_loop())
        return future

    async def _recheck_loop(self) -> None:
        """Check waiting claims in batches: one query for all that are due to start."""
        try:
            while self._recheck:
                batch, self._recheck = self._recheck, {}
                try:
                    good = await self._db(still_sendable, owner=self.owner, ids=list(batch))
                except Exception:  # noqa: BLE001  unsure: don't send; the lease expires and it is retried
                    log.exception("checking %d waiting claims failed", len(batch))
                    good = set()
                for delivery_id, future in batch.items():
                    if not future.done():
                        future.set_result(delivery_id in good)
        finally:
            self._rechecking = None

    async def _attempt(self, claim: Claim) -> None:
        try:
            if await self._sendable(claim):
                await self._send(claim)
            else:
                self._resolve_waiter(claim.delivery_id, None)
                await self._db(release_claims, owner=self.owner, ids=[claim.delivery_id])
        finally:
            self._in_flight[claim.webhook_id] -= 1
            if self._in_flight[claim.webhook_id] <= 0:
                del self._in_flight[claim.webhook_id]
                if not self._in_flight:  # idle: said at once (otherwise the scheduler's look says it)
                    metrics.set_in_flight(0)
            if not self._closing:
                self._start_ready()  # a slot is free: the next ready claim takes it at once
                self._top_up(claim.webhook_id)

    async def _send(self, claim: Claim) -> None:
        attempted_at = utcnow()
        headers = signature_headers(claim.secrets, claim.event_id, int(attempted_at.timestamp()), claim.body)
        self._on_wire[claim.delivery_id] = time.monotonic()
        try:
            result = await http.send(self._client, claim.url, claim.body, headers, self.settings)
        except Exception as exc:  # noqa: BLE001  a bug here must not lose the claim silently
            log.exception("attempt of delivery %s failed unexpectedly", claim.delivery_id)
            result = http.AttemptResult(error=f"internal error: {exc}")
        finally:
            self._on_wire.pop(claim.delivery_id, None)
        request_headers = {"content-type": "application/json", "user-agent": http.USER_AGENT, **headers}
        self._finished.append(Finished(claim, request_headers, result, attempted_at))
        self._record_wakeup.set()

    # -------------------------------------------------- deliver now

    async def deliver(self, delivery_ids: list[int]) -> list[Outcome]:
        """Attempt these deliveries now, ahead of the queue but within the caps; wait for their outcomes.

        A delivery another dispatcher already holds is waited for, then read back.
        """
        loop = asyncio.get_running_loop()
        futures = {i: self._waiters.setdefault(i, loop.create_future()) for i in delivery_ids}
        claimed_at = time.monotonic()
        taken: Taken = await self._db(
            claim_deliveries, owner=self.owner, lease_seconds=self.settings.lease_seconds,
            limit=len(delivery_ids), ids=delivery_ids,
        )
        send_by = claimed_at + self.settings.lease_seconds - self.settings.attempt_timeout - RECORD_MARGIN_SECONDS
        # Fresh claims: checked at claim time, so `claimed_at` is when the wait for a slot starts.
        self._urgent.extend(dataclasses.replace(c, send_by=send_by, claimed_at=time.monotonic())
                            for c in taken.claims)
        self._start_ready()
        mine = {c.delivery_id for c in taken.claims}
        outcomes: dict[int, Outcome] = {}
        pending = dict(futures)
        # Waiting for a slot is bounded by the lease; the attempt itself by its timeout.
        deadline = loop.time() + self.settings.lease_seconds + 5
        while pending and loop.time() < deadline:
            await asyncio.wait(pending.values(), timeout=0.25)
            for delivery_id, future in list(pending.items()):
                if future.done():
                    pending.pop(delivery_id)
                    if future.result() is not None:
                        outcomes[delivery_id] = future.result()
                elif delivery_id not in mine:  # held by another dispatcher: read its record
                    outcome = await self._db(read_outcome, delivery_id=delivery_id)
                    if outcome is not None and outcome.attempt_number:
                        outcomes[delivery_id] = outcome
                        pending.pop(delivery_id)
        for delivery_id in delivery_ids:  # not sent by us, or still running: report where it stands
            self._waiters.pop(delivery_id, None)
            if delivery_id not in outcomes:
                outcome = await self._db(read_outcome, delivery_id=delivery_id)
                if outcome is not None:
                    outcomes[delivery_id] = outcome
        return [outcomes[i] for i in delivery_ids if i in outcomes]

    def _resolve_waiter(self, delivery_id: int, outcome: Outcome | None) -> None:
        waiter = self._waiters.pop(delivery_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(outcome)

    # -------------------------------------------------- recording

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
                started = time.monotonic()
                outcomes = await self._db(
                    record_attempts, thread=self._records, owner=self.owner, finished=batch,
                    schedule=self.settings.retry_schedule, now=utcnow(), rng=self.rng,
                )
                metrics.observe_record(time.monotonic() - started)
                break
            except Exception:  # noqa: BLE001  the database is away: the leases expire and the attempts are made again
                log.exception("recording %d attempts failed (try %d of 3)", len(batch), attempt + 1)
                await asyncio.sleep(0.5 * (attempt + 1))
        self.attempts_recorded += len(outcomes)
        metrics.observe_attempts([(metrics.outcome_of(o.http_code), o.duration_ms / 1000,
                                   o.status if o.next_attempt_at is None else None) for o in outcomes])
        for outcome in outcomes:
            self._resolve_waiter(outcome.delivery_id, outcome)
        if self.on_recorded is not None:
            self.on_recorded(outcomes)
