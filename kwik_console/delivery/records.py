"""Recording attempts, in SQL: store each attempt and move its delivery on, in one transaction per batch."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random

from sqlalchemy import Engine, Float, bindparam, insert, select, update
from sqlalchemy.exc import OperationalError

from kwik_console.delivery import client as http
from kwik_console.delivery import retry
from kwik_console.delivery.hooks import AfterRecord
from kwik_console.delivery.types import Finished, Outcome
from kwik_console.events import rollups
from kwik_console.store.db_clock import due_at
from kwik_console.store.tables import Attempt, Delivery, DeliveryStatus, UTCDateTime, Webhook, WebhookStatus
from kwik_console.store.writes import short_write

log = logging.getLogger(__name__)

D = Delivery.__table__.c
W = Webhook.__table__.c
A = Attempt.__table__.c
_WHEN = UTCDateTime()

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
        # By the database's clock: the claims that take it are.
        next_attempt_at=due_at(bindparam("_next", type_=_WHEN), bindparam("_delay", type_=Float())),
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


def _record(engine, *, owner, finished, schedule, now, rng, after_record) -> list[Outcome]:
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
                http_code=r.http_code,
                attempts_made=c.attempt_number,
                schedule=schedule,
                now=now,
                retry_after_header=retry_after,
                rng=rng,
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
                {
                    "_id": c.delivery_id,
                    "_status": status.value,
                    "_number": c.attempt_number,
                    "_code": r.http_code,
                    "_next": next_at,
                    "_delay": None if next_at is None else (next_at - now).total_seconds(),
                    "_now": now,
                }
            )
            outcomes.append(
                Outcome(c.delivery_id, c.attempt_number, status.value, r.http_code, r.duration_ms, body, error, next_at)
            )
        if attempts:
            conn.execute(_INSERT_ATTEMPT, attempts)
            conn.execute(_RECORD, updates)
            rollups.add(conn, attempts, finished)  # the charts' figures, in the same transaction
            if after_record is not None:
                kept = {o.delivery_id: o for o in outcomes}
                after_record(
                    conn,
                    [
                        (ours[i].webhook_id, ours[i].recovery_id, kept[i], f.attempted_at)
                        for f in finished
                        if (i := f.claim.delivery_id) in kept
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
