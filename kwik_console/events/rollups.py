"""Delivery figures per webhook, per minute and per hour, kept up to date as attempts are recorded.

The dispatcher adds every batch of attempts here in the same transaction that
records them (`add`), so the webhook page's summary and charts read a few
hundred rollup rows and never scan the attempts table.

Durations go into a small fixed histogram per bucket (BIN_UPPER_MS: 20
log-spaced bins); p50 and p95 are read from it, interpolated inside the bin,
so they are estimates within one bin's width, which is what a chart needs.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import types
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel

from kwik_console.store.tables import Attempt, Delivery, DeliveryStatus, Webhook

# Upper bounds of the first 19 bins, in ms; the 20th holds everything slower (up to the 15 s timeout).
BIN_UPPER_MS = (5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000)
BINS = len(BIN_UPPER_MS) + 1
_LAST_BIN_UPPER_MS = 15_000
MINUTE, HOUR = 60, 3600
BIN_COLUMNS = [f"b{i}" for i in range(BINS)]


def _table(name: str) -> sa.Table:
    return sa.Table(
        name,
        SQLModel.metadata,
        sa.Column("webhook_id", sa.Integer, sa.ForeignKey("webhook.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),  # Unix seconds at the start of the minute / hour
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("successes", sa.Integer, nullable=False, default=0),
        sa.Column("duration_ms_sum", sa.BigInteger, nullable=False, default=0),
        *[sa.Column(c, sa.Integer, nullable=False, default=0) for c in BIN_COLUMNS],
    )


minute_table = _table("rollup_minute")
hour_table = _table("rollup_hour")
_GRAINS = ((minute_table, MINUTE), (hour_table, HOUR))
_SUMMED = ["attempts", "successes", "duration_ms_sum", *BIN_COLUMNS]


def bin_of(duration_ms: int) -> int:
    return bisect.bisect_left(BIN_UPPER_MS, max(duration_ms, 0))


def _epoch(when: dt.datetime) -> int:
    return int(when.timestamp())


def _aggregate(rows: Iterable[tuple[int, dt.datetime, int | None, int]], step: int) -> dict[tuple[int, int], dict]:
    """(webhook_id, attempted_at, http_code, duration_ms) -> one dict of sums per (webhook, bucket)."""
    out: dict[tuple[int, int], dict] = {}
    for webhook_id, attempted_at, http_code, duration_ms in rows:
        key = (webhook_id, _epoch(attempted_at) // step * step)
        acc = out.get(key)
        if acc is None:
            acc = out[key] = {"webhook_id": key[0], "bucket": key[1], **{c: 0 for c in _SUMMED}}
        acc["attempts"] += 1
        acc["successes"] += 1 if http_code is not None and 200 <= http_code < 300 else 0
        acc["duration_ms_sum"] += int(duration_ms)
        acc[f"b{bin_of(int(duration_ms))}"] += 1
    return out


def _upsert(dialect: str, table: sa.Table):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=["webhook_id", "bucket"],
        set_={c: table.c[c] + statement.excluded[c] for c in _SUMMED},
    )


_UPSERTS: dict[tuple[str, str], sa.Insert] = {}


def add_rows(conn, rows: Sequence[tuple[int, dt.datetime, int | None, int]]) -> None:
    """Add attempts, as (webhook_id, attempted_at, http_code, duration_ms), to both grains."""
    if not rows:
        return
    dialect = conn.dialect.name
    for table, step in _GRAINS:
        key = (dialect, table.name)
        if key not in _UPSERTS:
            _UPSERTS[key] = _upsert(dialect, table)
        # Sorted: concurrent recorders lock the same rows in the same order (no deadlock on PostgreSQL).
        values = [v for _, v in sorted(_aggregate(rows, step).items())]
        conn.execute(_UPSERTS[key], values)


def add(conn, attempts: Sequence[dict], finished: Sequence) -> None:
    """The dispatcher's hook: `attempts` as inserted into the attempt table, `finished` the claims they came from."""
    webhook_of = {f.claim.delivery_id: f.claim.webhook_id for f in finished}
    add_rows(
        conn, [(webhook_of[a["delivery_id"]], a["attempted_at"], a["http_code"], a["duration_ms"]) for a in attempts]
    )


def rebuild(conn, *, since: dt.datetime) -> int:
    """Rebuild both grains from the attempts table since `since` (docs/screenshots.py, after dating attempts back)."""
    for table, _ in _GRAINS:
        conn.execute(table.delete().where(table.c.bucket >= _epoch(since) // HOUR * HOUR))
    query = (
        sa.select(Delivery.webhook_id, Attempt.attempted_at, Attempt.http_code, Attempt.duration_ms)
        .join(Delivery, Delivery.id == Attempt.delivery_id)
        .where(Attempt.attempted_at >= since.replace(minute=0, second=0, microsecond=0))
    )
    count, batch = 0, []
    for row in conn.execute(query.execution_options(yield_per=10_000)):
        batch.append(tuple(row))
        if len(batch) >= 10_000:
            add_rows(conn, batch)
            count, batch = count + len(batch), []
    add_rows(conn, batch)
    return count + len(batch)


# ------------------------------------------------------------------ reading


def percentile(bins: Sequence[int], q: float) -> float | None:
    """The q-quantile (0..1) of durations from a histogram, interpolated inside its bin; None when empty."""
    total = sum(bins)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(bins):
        if n and seen + n >= rank:
            lower = 0 if i == 0 else BIN_UPPER_MS[i - 1]
            upper = BIN_UPPER_MS[i] if i < len(BIN_UPPER_MS) else _LAST_BIN_UPPER_MS
            return lower + (upper - lower) * max(rank - seen, 0) / n
        seen += n
    return float(_LAST_BIN_UPPER_MS)


@dataclasses.dataclass(frozen=True)
class Figures:
    attempts: int = 0
    successes: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    retrying: int = 0
    # Deliveries created in the span that have finished, and those of them that ended in Success: a delivery
    # whose third attempt succeeds counts once, as delivered, where the attempts count two failures.
    finished: int = 0
    delivered: int = 0

    @property
    def failures(self) -> int:
        return self.attempts - self.successes

    @property
    def success_rate(self) -> float | None:
        return None if self.attempts == 0 else self.successes / self.attempts

    @property
    def delivery_rate(self) -> float | None:
        return None if self.finished == 0 else self.delivered / self.finished


def _figures(row, retrying: int = 0) -> Figures:
    if row is None or not row.attempts:
        return Figures(retrying=retrying)
    bins = [int(getattr(row, c) or 0) for c in BIN_COLUMNS]
    return Figures(int(row.attempts), int(row.successes), percentile(bins, 0.5), percentile(bins, 0.95), retrying)


def _sums(table: sa.Table):
    return [sa.func.coalesce(sa.func.sum(table.c[c]), 0).label(c) for c in _SUMMED]


def retrying_now(conn, webhook_id: int) -> int:
    return conn.execute(
        sa.select(sa.func.count())
        .select_from(Delivery)
        .where(Delivery.webhook_id == webhook_id, Delivery.status == DeliveryStatus.RETRYING.value)
    ).scalar_one()


def _first_delivery_since(conn, since: dt.datetime) -> int | None:
    """The first delivery made at or after `since`, found by halving the ids (they grow with time): some twenty
    primary-key reads, where a filter on created_at would read every delivery (it has no index)."""
    D = Delivery.__table__.c
    low, high = conn.execute(sa.select(sa.func.min(D.id), sa.func.max(D.id))).one()
    if low is None:
        return None

    def first_from(x: int):
        return conn.execute(sa.select(D.id, D.created_at).where(D.id >= x).order_by(D.id).limit(1)).first()

    high += 1  # past the last: the answer may be "none"
    while low < high:
        middle = (low + high) // 2
        row = first_from(middle)
        if row is None or row.created_at >= since:
            high = middle
        else:
            low = row.id + 1  # nothing from `middle` to this id was made since
    row = first_from(low)
    return row.id if row is not None and row.created_at >= since else None


def delivery_outcomes(conn, webhook_id: int | None, *, since: dt.datetime) -> tuple[int, int]:
    """(finished, delivered): the deliveries created since `since` (of one webhook, or all) that have finished,
    and those that succeeded."""
    ended = (DeliveryStatus.SUCCESS.value, DeliveryStatus.FAILURE.value)
    first = _first_delivery_since(conn, since)
    if first is None:
        return 0, 0
    # By id, which the indexes lead with after the webhook and status: no scan of the table by its times.
    query = sa.select(Delivery.status, sa.func.count()).where(Delivery.status.in_(ended), Delivery.id >= first)
    if webhook_id is not None:
        query = query.where(Delivery.webhook_id == webhook_id)
    counts = dict(conn.execute(query.group_by(Delivery.status)).all())
    delivered = counts.get(DeliveryStatus.SUCCESS.value, 0)
    return delivered + counts.get(DeliveryStatus.FAILURE.value, 0), delivered


def delivery_outcomes_of(conn, webhook_ids: list[int], *, since: dt.datetime) -> dict[int, tuple[int, int]]:
    """`delivery_outcomes` for each of these webhooks, in one read: {webhook id: (finished, delivered)}."""
    first = _first_delivery_since(conn, since) if webhook_ids else None
    if first is None:
        return {}
    ended = (DeliveryStatus.SUCCESS.value, DeliveryStatus.FAILURE.value)
    rows = conn.execute(
        sa.select(Delivery.webhook_id, Delivery.status, sa.func.count())
        .where(Delivery.webhook_id.in_(webhook_ids), Delivery.status.in_(ended), Delivery.id >= first)
        .group_by(Delivery.webhook_id, Delivery.status)
    ).all()
    out: dict[int, tuple[int, int]] = {}
    for webhook_id, status, count in rows:
        finished, delivered = out.get(webhook_id, (0, 0))
        out[webhook_id] = (finished + count, delivered + (count if status == DeliveryStatus.SUCCESS.value else 0))
    return out


def summary(conn, webhook_id: int, *, now: dt.datetime) -> dict[str, Figures]:
    """The last 24 h (minute rows) and the last 7 days (hour rows) of one webhook."""
    t = _epoch(now)
    retrying = retrying_now(conn, webhook_id)
    out = {}
    for label, table, since in (("24h", minute_table, t - 86400), ("7d", hour_table, (t - 7 * 86400) // HOUR * HOUR)):
        row = conn.execute(
            sa.select(*_sums(table)).where(table.c.webhook_id == webhook_id, table.c.bucket >= since)
        ).one()
        finished, delivered = delivery_outcomes(conn, webhook_id, since=dt.datetime.fromtimestamp(since, dt.UTC))
        out[label] = dataclasses.replace(_figures(row, retrying), finished=finished, delivered=delivered)
    return out


@dataclasses.dataclass(frozen=True)
class Range:
    span_s: int
    table: sa.Table
    step_s: int  # one chart point


RANGES = {
    "1h": Range(3600, minute_table, MINUTE),
    "24h": Range(86400, minute_table, 15 * MINUTE),
    "7d": Range(7 * 86400, hour_table, 2 * HOUR),
    "30d": Range(30 * 86400, hour_table, 6 * HOUR),
}
# How far back each grain is read: its longest chart (the summary and the overview read no further back).
# Retention removes older rows (operations/retention.py).
KEEP_S = {table: max(r.span_s for r in RANGES.values() if r.table is table) for table, _ in _GRAINS}


@dataclasses.dataclass(frozen=True)
class Point:
    start: dt.datetime
    successes: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None


def series(conn, webhook_id: int, range_key: str, *, now: dt.datetime) -> list[Point]:
    """One chart's points, oldest first, every step present (zero when nothing happened)."""
    r = RANGES[range_key]
    points = r.span_s // r.step_s
    last = _epoch(now) // r.step_s * r.step_s
    first = last - (points - 1) * r.step_s
    t = r.table
    slot = t.c.bucket // r.step_s
    rows = conn.execute(
        sa.select(slot.label("slot"), *_sums(t))
        .where(t.c.webhook_id == webhook_id, t.c.bucket >= first, t.c.bucket < last + r.step_s)
        .group_by(slot)
    ).all()
    by_slot = {int(row.slot) * r.step_s: row for row in rows}
    out = []
    for start in range(first, last + 1, r.step_s):
        f = _figures(by_slot.get(start))
        out.append(Point(dt.datetime.fromtimestamp(start, dt.UTC), f.successes, f.failures, f.p50_ms, f.p95_ms))
    return out


@dataclasses.dataclass(frozen=True)
class WebhookFigures:
    webhook_id: int
    name: str
    status: str
    figures: Figures


def overview(conn, *, now: dt.datetime, limit: int = 8) -> tuple[Figures, list[WebhookFigures]]:
    """All webhooks' last 24 h (hour rows), and the webhooks with the most failed attempts first."""
    t = hour_table
    since = (_epoch(now) - 86400) // HOUR * HOUR + HOUR
    per_webhook = conn.execute(
        sa.select(t.c.webhook_id, *_sums(t)).where(t.c.bucket >= since).group_by(t.c.webhook_id)
    ).all()
    total = {c: 0 for c in _SUMMED}
    for row in per_webhook:
        for c in _SUMMED:
            total[c] += int(getattr(row, c))
    retrying_total = conn.execute(
        sa.select(sa.func.count())
        .select_from(Delivery)
        .where(Delivery.status == DeliveryStatus.RETRYING.value, Delivery.next_attempt_at.is_not(None))
    ).scalar_one()
    finished, delivered = delivery_outcomes(conn, None, since=dt.datetime.fromtimestamp(since, dt.UTC))
    overall = dataclasses.replace(
        _figures(types.SimpleNamespace(**total), retrying_total), finished=finished, delivered=delivered
    )
    worst = sorted(per_webhook, key=lambda r: (-(r.attempts - r.successes), -r.attempts))[:limit]
    names = (
        {}
        if not worst
        else dict(
            (w.id, (w.name, w.status))
            for w in conn.execute(
                sa.select(Webhook.id, Webhook.name, Webhook.status).where(Webhook.id.in_([r.webhook_id for r in worst]))
            )
        )
    )
    outcomes = delivery_outcomes_of(conn, [r.webhook_id for r in worst], since=dt.datetime.fromtimestamp(since, dt.UTC))
    rows = [
        WebhookFigures(
            r.webhook_id,
            *names[r.webhook_id],
            dataclasses.replace(
                _figures(r, retrying_now(conn, r.webhook_id)),
                finished=outcomes.get(r.webhook_id, (0, 0))[0],
                delivered=outcomes.get(r.webhook_id, (0, 0))[1],
            ),
        )
        for r in worst
        if r.webhook_id in names
    ]
    return overall, rows
