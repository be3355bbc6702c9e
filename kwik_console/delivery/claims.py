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
import json
from collections.abc import Iterable

from sqlalchemy import Engine, String, bindparam, func, select, text, type_coerce, update

from kwik_console.core.settings import get_settings
from kwik_console.delivery.types import Claim, Taken
from kwik_console.store.db_clock import database_now
from kwik_console.store.secret_box import unseal
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
_PENDING = """
    WITH RECURSIVE pending(webhook_id) AS (
        SELECT min(webhook_id) FROM delivery WHERE next_attempt_at IS NOT NULL
        UNION ALL
        SELECT (SELECT min(d.webhook_id) FROM delivery d
                WHERE d.next_attempt_at IS NOT NULL AND d.webhook_id > pending.webhook_id)
        FROM pending WHERE pending.webhook_id IS NOT NULL
    )
"""

# A claim reads and writes its rows as one JSON value per statement, not a row per delivery: the database
# thread then gives the interpreter lock back to the loop once per statement, not once per row (SQLite
# steps each row with the lock released), and no ORM or Core row is built per delivery.

# The pending webhooks' states, [id, status, max_per_second, rate_next_at] each; on PostgreSQL with the
# database's clock, read in the same round trip.
_PENDING_STATES = {
    "postgresql": text(
        _PENDING
        + """
        SELECT clock_timestamp(), (
            SELECT json_agg(json_build_array(w.id, w.status, w.max_per_second, w.rate_next_at))
            FROM pending p JOIN webhook w ON w.id = p.webhook_id
        )
        """
    ),
    "sqlite": text(
        _PENDING
        + """
        SELECT NULL, (
            SELECT json_group_array(json_array(w.id, w.status, w.max_per_second, w.rate_next_at))
            FROM pending p JOIN webhook w ON w.id = p.webhook_id
        )
        """
    ),
}

# The choice, given (webhook, take, holds, turn) for each webhook that may take some: each one's oldest
# due, unleased deliveries, up to `take` (its room, and its fair part of the limit), ranked round by round
# (the claims it already holds count as rounds taken), then by turn (`Turns`), then by due time; the first
# `limit` of them. Each chosen row carries how many of its webhook's were in the running, and how many
# were in all (`saturated` and `limited` are read from these).
# Each webhook's `per` oldest are read (a LIMIT that is the same for all: SQLite's takes no column, and
# PostgreSQL's planner, seeing a constant and arrays it can count, keeps its estimates, and so its plan,
# small: with a LIMIT by column it expected millions of rows and compiled the statement (JIT), 0.5 s a claim
# on a 300,000 backlog), then cut to the webhook's take.
_WEBHOOKS_IN_TURN = {
    "postgresql": """
        SELECT * FROM unnest(CAST(:ids AS integer[]), CAST(:takes AS integer[]), CAST(:holds AS integer[]),
                             CAST(:turns AS double precision[])) AS w(id, take, holds, turn)
    """,
    "sqlite": """
        SELECT value ->> 0 AS id, value ->> 1 AS take, value ->> 2 AS holds, value ->> 3 AS turn
        FROM json_each(:webhooks)
    """,
}
# What an attempt needs, per delivery: [id, webhook_id, attempt_count, event_id, body, webhook status,
# url, secret as stored, headers, whether a replaced secret still signs].
_NEEDS = """
    d.id, d.webhook_id, d.attempt_count, d.event_id, e.body, w.status, w.url, w.secret, {headers},
    EXISTS (SELECT 1 FROM previous_secret p WHERE p.webhook_id = d.webhook_id AND p.expires_at > :now)
"""
# PostgreSQL: choose, lock (SKIP LOCKED: replicas pass each other's rows by instead of waiting), lease and
# return what the attempts need, in one statement (one round trip, its own transaction).
_PICK_AND_LEASE = text(
    f"""
    WITH w AS ({_WEBHOOKS_IN_TURN["postgresql"]}),
    due AS (
        SELECT d.id, d.webhook_id, d.next_attempt_at, w.turn, w.take, w.holds,
               row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at, d.id) AS rank
        FROM w CROSS JOIN LATERAL (
            SELECT id, webhook_id, next_attempt_at FROM delivery
            WHERE webhook_id = w.id AND next_attempt_at IS NOT NULL AND next_attempt_at <= :now
              AND (lease_until IS NULL OR lease_until < :now)
            ORDER BY next_attempt_at LIMIT :per
            FOR UPDATE SKIP LOCKED
        ) AS d
    ),
    kept AS (SELECT *, count(*) OVER (PARTITION BY webhook_id) AS found FROM due WHERE rank <= take),
    chosen AS (
        SELECT id, found, count(*) OVER () AS candidates,
               row_number() OVER (ORDER BY holds + rank, turn, next_attempt_at, id) AS place
        FROM kept ORDER BY place LIMIT :limit
    ),
    leased AS (
        UPDATE delivery SET lease_until = :lease_until, leased_by = :owner
        FROM chosen WHERE delivery.id = chosen.id
        RETURNING delivery.id, delivery.webhook_id, delivery.attempt_count, delivery.event_id,
                  chosen.found, chosen.candidates, chosen.place
    )
    SELECT json_agg(json_build_array({_NEEDS.format(headers="w.headers")}, d.found, d.candidates) ORDER BY d.place)
    FROM leased d JOIN event e ON e.id = d.event_id JOIN webhook w ON w.id = d.webhook_id
    """
).bindparams(bindparam("now", type_=_WHEN), bindparam("lease_until", type_=_WHEN))
# SQLite: the choice, [id, webhook_id, found, candidates] each, in order; `_LEASE` and `_LEASED` follow in the
# same transaction. (SQLite's LIMIT takes no column: each webhook's `per` are read, then cut to its take.)
_PICK = text(
    f"""
    WITH w AS ({_WEBHOOKS_IN_TURN["sqlite"]}),
    due AS (
        SELECT d.id, d.webhook_id, d.next_attempt_at, w.turn, w.take, w.holds,
               row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at, d.id) AS rank
        FROM w JOIN delivery d ON d.id IN (
            SELECT id FROM delivery
            WHERE webhook_id = w.id AND next_attempt_at IS NOT NULL AND next_attempt_at <= :now
              AND (lease_until IS NULL OR lease_until < :now)
            ORDER BY next_attempt_at LIMIT :per
        )
    ),
    kept AS (SELECT *, count(*) OVER (PARTITION BY webhook_id) AS found FROM due WHERE rank <= take),
    chosen AS (
        SELECT id, webhook_id, found, count(*) OVER () AS candidates,
               row_number() OVER (ORDER BY holds + rank, turn, next_attempt_at, id) AS place
        FROM kept ORDER BY place LIMIT :limit
    )
    SELECT json_group_array(json_array(id, webhook_id, found, candidates)) FROM (SELECT * FROM chosen ORDER BY place)
    """
).bindparams(bindparam("now", type_=_WHEN))
# Lease exactly these rows, if still unfinished and unleased: the re-check makes a race harmless.
_LEASE = text(
    """
    UPDATE delivery SET lease_until = :lease_until, leased_by = :owner
    WHERE id IN (SELECT value FROM json_each(:ids)) AND next_attempt_at IS NOT NULL
      AND (lease_until IS NULL OR lease_until < :now)
    """
).bindparams(bindparam("now", type_=_WHEN), bindparam("lease_until", type_=_WHEN))
_LEASED = text(
    f"""
    SELECT json_group_array(json_array({_NEEDS.format(headers="json(w.headers)")}))
    FROM delivery d JOIN event e ON e.id = d.event_id JOIN webhook w ON w.id = d.webhook_id
    WHERE d.id IN (SELECT value FROM json_each(:ids)) AND d.leased_by = :owner AND d.lease_until = :lease_until
    """
).bindparams(bindparam("now", type_=_WHEN), bindparam("lease_until", type_=_WHEN))


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


# What an attempt needs, for the deliveries just claimed (the secret as stored: `_secret` opens it).
_CLAIMED = (
    select(
        D.id,
        D.webhook_id,
        D.attempt_count,
        D.event_id,
        E.body,
        W.url,
        W.status,
        type_coerce(W.secret, String).label("secret"),
        W.headers,
    )
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


def _json_rows(value) -> list:
    """A statement's rows, aggregated as one JSON array (psycopg reads JSON itself; SQLite gives text)."""
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else value


def _when(value) -> dt.datetime | None:
    """A time read out of JSON: ISO text with its offset on PostgreSQL, naive UTC on SQLite."""
    if value is None:
        return None
    when = dt.datetime.fromisoformat(value)
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


@functools.lru_cache(maxsize=4096)
def _opened(stored: str, _keys: tuple[str, ...]) -> str:
    return unseal(stored)


def _secret(stored: str) -> str:
    """A webhook's secret as stored, opened once per process and key set, not at every claim."""
    return _opened(stored, get_settings().secret_keys)


def _pending_states(conn) -> tuple[dt.datetime | None, dict[int, list]]:
    """The database's clock (PostgreSQL; None on SQLite), and each pending webhook's [status, rate, clock]."""
    clock, states = conn.execute(_PENDING_STATES[conn.dialect.name]).one()
    return clock, {w: [status, rate, _when(at)] for w, status, rate, at in _json_rows(states)}


def _lock_rate_clocks(conn, states: dict[int, list]) -> None:
    """Read the rate-limited webhooks' clocks again, holding them: one process moves a webhook's clock at a time."""
    limited = [w for w, (status, rate, _) in states.items() if rate and status == WebhookStatus.LIVE]
    if not limited:
        return
    if conn.dialect.name == "postgresql":
        locked = conn.execute(_WEBHOOK_STATES.with_for_update(), {"webhooks": limited})
    else:
        # SQLite: take the write lock first, then read the clocks again. Two processes that
        # both read a clock before either wrote it would each start its allowance.
        conn.execute(_HOLD_RATE_CLOCKS, {"webhooks": limited})
        locked = conn.execute(_WEBHOOK_STATES, {"webhooks": limited})
    for s in locked:
        states[s.id] = [s.status, s.max_per_second, s.rate_next_at]


def _claim_due(conn, *, owner, now, lease_until, states, limit: int, room: dict[int, int], per_webhook: int, turns):
    """Lease up to `limit` due deliveries, round-robin across the pending webhooks, each within its room.

    Returns the rows leased (`_NEEDS`), the webhooks looked at, those that may have more due, whether the
    overall limit cut the choice short, and when a rate-limited webhook may send its next one.
    """
    postgres = conn.dialect.name == "postgresql"
    # Paused webhooks' deliveries wait; rate-limited ones may take only what their clock allows.
    rates, next_rate_at = {}, None
    held = {w: per_webhook - r for w, r in room.items()}  # claims each webhook has ready or in flight
    room = dict(room)
    for webhook_id, (status, rate, clock) in states.items():
        if rate and status == WebhookStatus.LIVE:
            allowance, base = _rate_allowance(rate, clock, now)
            rates[webhook_id] = (rate, base)
            room[webhook_id] = min(room.get(webhook_id, per_webhook), allowance)
            if allowance == 0:
                next_rate_at = base if next_rate_at is None else min(next_rate_at, base)
    pending = [w for w, (status, *_) in states.items() if status != WebhookStatus.PAUSED]
    pending = [w for w in pending if room.get(w, per_webhook) > 0]
    if not pending:
        return [], set(), set(), False, next_rate_at
    # No more of each than its room, nor than its fair part of the limit (+1, so
    # a webhook left short can be told from one with nothing more due).
    per = min(per_webhook, max(1, -(-limit // len(pending))) + 1)
    # Round-robin: each webhook's first before anyone's second, counting the claims it
    # already holds; among equals, the webhook given fewest so far first (`Turns`), so a
    # limit never favours the same ones.
    takes = [min(per, room.get(w, per_webhook)) for w in pending]
    holds = [held.get(w, 0) for w in pending]
    turn = [turns.of(w) for w in pending]
    if postgres:
        params = {"ids": pending, "takes": takes, "holds": holds, "turns": turn, "now": now, "per": per}
        params |= {"limit": limit, "lease_until": lease_until, "owner": owner}
        chosen = rows = _json_rows(conn.execute(_PICK_AND_LEASE, params).scalar())
    else:
        webhooks = json.dumps([list(w) for w in zip(pending, takes, holds, turn)])
        chosen = _json_rows(
            conn.execute(_PICK, {"webhooks": webhooks, "now": now, "per": per, "limit": limit}).scalar()
        )
        rows = []
        if chosen:
            params = {"ids": json.dumps([r[0] for r in chosen]), "now": now, "lease_until": lease_until, "owner": owner}
            conn.execute(_LEASE, params)
            rows = _json_rows(conn.execute(_LEASED, params).scalar())
            place = {r[0]: n for n, r in enumerate(chosen)}
            rows.sort(key=lambda r: place[r[0]])
    # Each chosen row ends with how many of its webhook's deliveries were in the running, and how many in all.
    taken = collections.Counter(r[1] for r in chosen)
    found = {r[1]: r[-2] for r in chosen}
    saturated = {w for w, n in taken.items() if found[w] >= per or found[w] > n or n >= room.get(w, per_webhook)}
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
    limited = bool(chosen) and chosen[0][-1] > limit
    return rows, set(pending), saturated, limited, next_rate_at


def _claims_of(conn, rows: list, now: dt.datetime) -> list[Claim]:
    """The claims of the rows just leased (`_NEEDS`); those of webhooks no longer Live are finished or given back."""
    previous = collections.defaultdict(list)
    rotated = sorted({r[1] for r in rows if r[9]})
    if rotated:  # a secret replaced, still in its overlap: it signs too
        for p in conn.execute(_PREVIOUS_SECRETS, {"webhooks": rotated, "now": now}):
            previous[p.webhook_id].append((p.secret, p.expires_at))
    claims, stopped, released = [], [], []
    for delivery_id, webhook_id, attempt_count, event_id, body, status, url, secret, headers, *_ in rows:
        if status == WebhookStatus.PAUSED:  # paused after this delivery was due: it waits
            released.append(delivery_id)
            continue
        if status != WebhookStatus.LIVE:
            stopped.append(delivery_id)
            continue
        secret = _secret(secret)
        claims.append(
            Claim(
                delivery_id=delivery_id,
                webhook_id=webhook_id,
                url=url,
                secrets=active_secrets(secret, previous[webhook_id], now) if webhook_id in previous else [secret],
                event_id=event_id,
                body=body.encode(),
                attempt_number=attempt_count + 1,
                headers=headers or {},
            )
        )
    if stopped:  # the webhook was disabled after this delivery was scheduled
        conn.execute(_STOP, {"stopped": stopped, "now": now})
    if released:
        conn.execute(_UNLEASE, {"released": released})
    return claims


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
    if ids is not None:
        return _claim_these(
            engine, owner=owner, ids=list(ids), lease_seconds=lease_seconds, now=now, lease_until=lease_until
        )
    due = functools.partial(
        _claim_due,
        owner=owner,
        limit=limit,
        room=dict(room or {}),
        per_webhook=per_webhook or limit,
        turns=turns or Turns(),
    )
    if engine.dialect.name == "postgresql":
        # Two round trips, each statement its own transaction (no BEGIN or COMMIT to wait for): the
        # pending webhooks' states, then the choice and its lease at once. A rate-limited webhook's
        # clock is read and moved in a transaction of its own, below.
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            clock, states = _pending_states(conn)
            if not states:
                return Taken([], set(), set(), False, None)
            now = now or clock.astimezone(dt.UTC)
            if lease_until is None:
                lease_until = now + dt.timedelta(seconds=lease_seconds)
            if not any(rate and status == WebhookStatus.LIVE for status, rate, _ in states.values()):
                rows, checked, saturated, limited, next_rate_at = due(
                    conn, now=now, lease_until=lease_until, states=states
                )
                claims = _claims_of(conn, rows, now)
                return Taken(claims, checked, saturated, limited, next_rate_at, _seen_live(states, rows))
    with short_write(engine) as conn:
        clock, states = _pending_states(conn)
        if not states:
            return Taken([], set(), set(), False, None)
        if now is None:
            now = database_now(conn) if clock is None else clock.astimezone(dt.UTC)
        if lease_until is None:
            lease_until = now + dt.timedelta(seconds=lease_seconds)
        _lock_rate_clocks(conn, states)
        rows, checked, saturated, limited, next_rate_at = due(conn, now=now, lease_until=lease_until, states=states)
        claims = _claims_of(conn, rows, now)
    return Taken(claims, checked, saturated, limited, next_rate_at, _seen_live(states, rows))


def _seen_live(states: dict[int, list], rows: list) -> set[int]:
    """The webhooks this claim saw Live: in the pending states, and in every row it leased of theirs."""
    return {w for w, (status, *_) in states.items() if status == WebhookStatus.LIVE} - {
        r[1] for r in rows if r[5] != WebhookStatus.LIVE
    }


def _claim_these(engine: Engine, *, owner: str, ids: list[int], lease_seconds, now, lease_until) -> Taken:
    """Lease exactly these deliveries (deliver now), due or not yet attempted."""
    with short_write(engine) as conn:
        postgres = conn.dialect.name == "postgresql"
        if now is None:
            now = database_now(conn)
        if lease_until is None:
            lease_until = now + dt.timedelta(seconds=lease_seconds)
        if not ids:
            return Taken([], set(), set(), False, None)
        leased = conn.execute(
            _lease_statement(postgres), {"ids": ids, "now": now, "lease_until": lease_until, "owner": owner}
        ).all()
        if not leased:  # taken by another dispatcher in the meantime
            return Taken([], set(), set(), False, None)
        rows = [
            [r.id, r.webhook_id, r.attempt_count, r.event_id, r.body, r.status, r.url, r.secret, r.headers, True]
            for r in conn.execute(_CLAIMED, {"kept": [r.id for r in leased]})
        ]
        claims = _claims_of(conn, rows, now)
    order = {i: n for n, i in enumerate(ids)}
    claims.sort(key=lambda c: order.get(c.delivery_id, 0))
    return Taken(claims, set(), set(), False, None)


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
