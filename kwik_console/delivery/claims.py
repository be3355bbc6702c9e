"""The claim, in SQL: lease due deliveries, fairly across webhooks; give back what was not sent.

A claim is a lease on the delivery row (`lease_until`, `leased_by`), measured by
the database's clock: a delivery in flight is never claimed by another
dispatcher, and a crashed dispatcher's claims are taken over once they expire.
Claims are taken per webhook, round-robin across the webhooks with due
deliveries, each up to its room, so a webhook with a huge backlog costs a claim
no more than one with a single event (`Turns` breaks the ties).
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
from collections.abc import Iterable

from sqlalchemy import Engine, bindparam, func, select, text, update

from kwik_console.delivery.types import Claim, Taken
from kwik_console.store.db_clock import database_now
from kwik_console.store.tables import (
    Delivery,
    DeliveryStatus,
    Event,
    PreviousSecret,
    UTCDateTime,
    Webhook,
    WebhookStatus,
)
from kwik_console.store.writes import short_write
from kwik_console.webhooks.signing import active_secrets

D = Delivery.__table__.c
W = Webhook.__table__.c
E = Event.__table__.c
P = PreviousSecret.__table__.c

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
    select(D.id, D.webhook_id, D.attempt_count, D.event_id, E.body, W.url, W.status, W.secret, W.headers)
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
    .values(
        status=DeliveryStatus.FAILURE,
        next_attempt_at=None,
        lease_until=None,
        leased_by=None,
        recovery_id=None,
        updated_at=bindparam("now", type_=_WHEN),
    )
)
_UNLEASE = (
    update(Delivery).where(D.id.in_(bindparam("released", expanding=True))).values(lease_until=None, leased_by=None)
)
_WEBHOOK_STATES = select(W.id, W.status, W.max_per_second, W.rate_next_at).where(
    W.id.in_(bindparam("webhooks", expanding=True))
)
_HOLD_RATE_CLOCKS = (
    update(Webhook).where(W.id.in_(bindparam("webhooks", expanding=True))).values(rate_next_at=W.rate_next_at)
)
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
        ranked.extend(
            (holds + rank, turn, r.next_attempt_at, r.id, webhook_id)
            for rank, r in enumerate(due[: room.get(webhook_id, per_webhook)])
        )
    ranked.sort()
    chosen = ranked[:limit]
    taken = collections.Counter(w for *_, w in chosen)
    saturated = {
        w
        for w, n in taken.items()
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
                conn,
                now=now,
                limit=limit,
                room=dict(room or {}),
                per_webhook=per_webhook or limit,
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
                    headers=row.headers or {},
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
            update(Delivery).where(D.leased_by == owner, D.id.not_in(on_wire)).values(lease_until=None, leased_by=None)
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


def next_due_at(engine: Engine, after: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """When the earliest unclaimed attempt falls due, of those due after `after`, by this process's clock.

    `after` is when the asking look began: a delivery that fell due while it
    claimed, too late for its claim, is in the answer (a time already past).
    Due times are by the database's clock (db_clock.py); `after`, `now` and the
    answer are by this process's, for its timers.
    """
    with engine.connect() as conn:
        ours_ahead_by = now - database_now(conn)
        due = conn.execute(
            select(func.min(D.next_attempt_at)).where(
                D.next_attempt_at > after - ours_ahead_by,
                D.lease_until.is_(None) | (D.lease_until < now - ours_ahead_by),
            )
        ).scalar()
    return None if due is None else due + ours_ahead_by
