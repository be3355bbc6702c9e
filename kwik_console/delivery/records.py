"""Recording attempts, in SQL: store each attempt and move its delivery on, in one transaction per batch."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import random

from sqlalchemy import Engine, select, text
from sqlalchemy.exc import OperationalError

from kwik_console.delivery import client as http
from kwik_console.delivery import retry
from kwik_console.delivery.hooks import AfterRecord
from kwik_console.delivery.types import Finished, Outcome
from kwik_console.events import rollups
from kwik_console.store.tables import Attempt, Delivery, DeliveryStatus, WebhookStatus
from kwik_console.store.writes import short_write

log = logging.getLogger(__name__)

D = Delivery.__table__.c
A = Attempt.__table__.c

# A batch is written with one statement per step, its rows handed over as one JSON value: no row-by-row
# executemany, and on SQLite one step with the interpreter lock released per statement, not per row.
# Each attempt: [delivery_id, number, attempted_at, http_code, duration_ms, request_headers, response_headers,
# response_body, error, status, next_attempt_at (SQLite) or seconds until it (PostgreSQL), updated_at].
_ATTEMPTS = {
    "postgresql": """
        SELECT CAST(r->>0 AS integer) AS id, CAST(r->>1 AS integer) AS number,
               CAST(r->>2 AS timestamptz) AS attempted_at, CAST(r->>3 AS integer) AS http_code,
               CAST(r->>4 AS integer) AS duration_ms, r->5 AS request_headers, r->6 AS response_headers,
               r->>7 AS response_body, r->>8 AS error, r->>9 AS status, CAST(r->>10 AS double precision) AS delay,
               CAST(r->>11 AS timestamptz) AS updated_at
        FROM json_array_elements(CAST(:attempts AS json)) AS r
    """,
    "sqlite": """
        SELECT value ->> 0 AS id, value ->> 1 AS number, value ->> 2 AS attempted_at, value ->> 3 AS http_code,
               value ->> 4 AS duration_ms, value -> 5 AS request_headers, value -> 6 AS response_headers,
               value ->> 7 AS response_body, value ->> 8 AS error, value ->> 9 AS status,
               value ->> 10 AS next_attempt_at, value ->> 11 AS updated_at
        FROM json_each(:attempts)
    """,
}
_RETRYING, _FAILURE, _DISABLED = (
    DeliveryStatus.RETRYING.value,
    DeliveryStatus.FAILURE.value,
    WebhookStatus.DISABLED.value,
)
# PostgreSQL: in one statement (one round trip), only deliveries still ours, each moved on and its attempt
# stored; a webhook disabled while its attempt was in flight finishes it as Failure. The next attempt is due
# by the database's clock (store/db_clock.py), as the claims that take it read it. Its recovery is let go:
# after_record counts it there, once. Returns, for each one still ours, [id, webhook_id, recovery_id (as it
# was), whether its webhook is disabled].
_RECORD = {
    "postgresql": text(
        f"""
        WITH v AS ({_ATTEMPTS["postgresql"]}),
        ours AS (
            SELECT d.id, d.webhook_id, d.recovery_id, w.status = '{_DISABLED}' AS disabled
            FROM delivery d JOIN webhook w ON w.id = d.webhook_id
            WHERE d.id IN (SELECT id FROM v) AND d.leased_by = :owner
        ),
        moved AS (
            UPDATE delivery SET
                status = CASE WHEN v.status = '{_RETRYING}' AND ours.disabled THEN '{_FAILURE}' ELSE v.status END,
                attempt_count = v.number,
                last_http_code = v.http_code,
                next_attempt_at = CASE WHEN v.status = '{_RETRYING}' AND ours.disabled THEN NULL
                                       ELSE now() + make_interval(secs => v.delay) END,
                lease_until = NULL,
                leased_by = NULL,
                recovery_id = NULL,
                updated_at = v.updated_at
            FROM v JOIN ours ON ours.id = v.id
            WHERE delivery.id = v.id AND delivery.leased_by = :owner
            RETURNING delivery.id, ours.webhook_id, ours.recovery_id, ours.disabled
        ),
        stored AS (
            INSERT INTO attempt (delivery_id, number, attempted_at, http_code, duration_ms, request_headers,
                                 response_headers, response_body, error)
            SELECT v.id, v.number, v.attempted_at, v.http_code, v.duration_ms, v.request_headers,
                   v.response_headers, v.response_body, v.error
            FROM v JOIN moved ON moved.id = v.id
        )
        SELECT json_agg(json_build_array(id, webhook_id, recovery_id, disabled)) FROM moved
        """
    ),
    # SQLite, in the recording's transaction: which are still ours (`_STILL_OURS`) first, then these two.
    "sqlite": (
        text(
            f"""
            INSERT INTO attempt (delivery_id, number, attempted_at, http_code, duration_ms, request_headers,
                                 response_headers, response_body, error)
            SELECT id, number, attempted_at, http_code, duration_ms, request_headers, response_headers,
                   response_body, error
            FROM ({_ATTEMPTS["sqlite"]})
            """
        ),
        text(
            f"""
            UPDATE delivery SET
                status = v.status,
                attempt_count = v.number,
                last_http_code = v.http_code,
                next_attempt_at = v.next_attempt_at,
                lease_until = NULL,
                leased_by = NULL,
                recovery_id = NULL,
                updated_at = v.updated_at
            FROM ({_ATTEMPTS["sqlite"]}) AS v
            WHERE delivery.id = v.id
            """
        ),
    ),
}
_STILL_OURS = text(
    f"""
    SELECT json_group_array(json_array(d.id, d.webhook_id, d.recovery_id, w.status = '{_DISABLED}'))
    FROM delivery d JOIN webhook w ON w.id = d.webhook_id
    WHERE d.id IN (SELECT value FROM json_each(:ids)) AND d.leased_by = :owner
    """
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
    after_record: AfterRecord | None = None,
) -> list[Outcome]:
    """Store each attempt and move its delivery on, in one transaction for the batch.

    A batch the database refuses is recorded again one attempt at a time, so
    one bad row never takes its neighbours with it. `after_record` (hooks.py)
    moves on what else the attempts change, in the same transaction.
    """
    try:
        return _record(
            engine, owner=owner, finished=finished, schedule=schedule, now=now, rng=rng, after_record=after_record
        )
    except Exception as exc:  # noqa: BLE001  retried row by row below
        if len(finished) == 1 or _unreachable(exc):
            raise  # a database that is away would fail each row the same way
        log.exception("recording %d attempts together failed; recording them one by one", len(finished))
    outcomes = []
    for f in finished:
        try:
            outcomes += _record(
                engine, owner=owner, finished=[f], schedule=schedule, now=now, rng=rng, after_record=after_record
            )
        except Exception as exc:  # noqa: BLE001  keep the outcome, drop what the database would not take
            log.exception(
                "recording the attempt of delivery %s failed; recording it without its response", f.claim.delivery_id
            )
            bare = http.AttemptResult(
                http_code=f.result.http_code,
                duration_ms=f.result.duration_ms,
                error=f"{f.result.error or ''} (response not stored: {type(exc).__name__})",
            )
            outcomes += _record(
                engine,
                owner=owner,
                finished=[dataclasses.replace(f, result=bare)],
                schedule=schedule,
                now=now,
                rng=rng,
                after_record=after_record,
            )
    return outcomes


def _sqlite_time(when: dt.datetime | None) -> str | None:
    """A time as SQLite's columns hold it (UTCDateTime): naive UTC text, to the microsecond."""
    return None if when is None else when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _rows(value) -> list:
    """A statement's rows, aggregated as one JSON array (psycopg reads JSON itself; SQLite gives text)."""
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else value


def _record(engine, *, owner, finished, schedule, now, rng, after_record) -> list[Outcome]:
    with short_write(engine) as conn:
        postgres = conn.dialect.name == "postgresql"
        decided = []
        for f in finished:
            c, r = f.claim, f.result
            status, next_at = retry.decide(
                http_code=r.http_code,
                attempts_made=c.attempt_number,
                schedule=schedule,
                now=now,
                retry_after_header=r.response_headers.get("retry-after"),
                rng=rng,
            )
            decided.append((f, status, next_at, storable(r.response_body), storable(r.error)))
        if postgres:
            rows = [
                [
                    f.claim.delivery_id,
                    f.claim.attempt_number,
                    f.attempted_at.isoformat(),
                    f.result.http_code,
                    f.result.duration_ms,
                    f.request_headers,
                    _storable_headers(f.result.response_headers),
                    body,
                    error,
                    status.value,
                    None if next_at is None else (next_at - now).total_seconds(),
                    now.isoformat(),
                ]
                for f, status, next_at, body, error in decided
            ]
            # Only deliveries still ours: a deleted webhook takes its deliveries with
            # it, and a lease lost to another dispatcher is that one's to record.
            ours = _rows(conn.execute(_RECORD["postgresql"], {"attempts": json.dumps(rows), "owner": owner}).scalar())
        else:
            ids = json.dumps([f.claim.delivery_id for f in finished])
            ours = _rows(conn.execute(_STILL_OURS, {"ids": ids, "owner": owner}).scalar())
        ours = {i: (webhook_id, recovery_id, disabled) for i, webhook_id, recovery_id, disabled in ours}
        attempts, kept, outcomes = [], [], []
        for f, status, next_at, body, error in decided:
            c, r = f.claim, f.result
            if c.delivery_id not in ours:
                log.warning("delivery %s: claim lost before its attempt was recorded", c.delivery_id)
                continue
            if status == DeliveryStatus.RETRYING and ours[c.delivery_id][2]:
                status, next_at = DeliveryStatus.FAILURE, None  # disabled while in flight
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
            kept.append((f, status, next_at))
            outcomes.append(
                Outcome(c.delivery_id, c.attempt_number, status.value, r.http_code, r.duration_ms, body, error, next_at)
            )
        if not attempts:
            return outcomes
        if not postgres:
            rows = json.dumps(
                [
                    [
                        a["delivery_id"],
                        a["number"],
                        _sqlite_time(a["attempted_at"]),
                        a["http_code"],
                        a["duration_ms"],
                        a["request_headers"],
                        a["response_headers"],
                        a["response_body"],
                        a["error"],
                        status.value,
                        _sqlite_time(next_at),
                        _sqlite_time(now),
                    ]
                    for a, (_, status, next_at) in zip(attempts, kept)
                ]
            )
            insert, move = _RECORD["sqlite"]
            conn.execute(insert, {"attempts": rows})
            conn.execute(move, {"attempts": rows})
        rollups.add(conn, attempts, finished)  # the charts' figures, in the same transaction
        if after_record is not None:
            after_record(
                conn,
                [
                    (ours[o.delivery_id][0], ours[o.delivery_id][1], o, f.attempted_at)
                    for o, (f, *_) in zip(outcomes, kept)
                ],
                max_attempts=len(schedule) + 1,
            )
    return outcomes


def _unreachable(exc: Exception) -> bool:
    return isinstance(exc, OperationalError) or getattr(exc, "connection_invalidated", False)


def read_outcome(engine: Engine, delivery_id: int) -> Outcome | None:
    """The delivery's state and latest attempt, as recorded by whichever dispatcher sent it."""
    with engine.connect() as conn:
        row = conn.execute(
            select(D.id, D.status, D.next_attempt_at, A.number, A.http_code, A.duration_ms, A.response_body, A.error)
            .outerjoin(Attempt, A.delivery_id == D.id)
            .where(D.id == delivery_id)
            .order_by(A.number.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    return Outcome(
        row.id,
        row.number or 0,
        row.status,
        row.http_code,
        row.duration_ms or 0,
        row.response_body or "",
        row.error,
        row.next_attempt_at,
    )
