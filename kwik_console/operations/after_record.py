"""What recording attempts also moves on, in the same transaction: recoveries' counts, webhooks' health, notices
and alert emails; and the word to the pages that show deliveries live."""

from __future__ import annotations

import collections
import datetime as dt

from sqlalchemy import bindparam, update

from kwik_console.core import doorbell
from kwik_console.core.clock import utcnow
from kwik_console.core.settings import get_settings
from kwik_console.operations import alerts, health, notices
from kwik_console.store.db_clock import database_now
from kwik_console.store.tables import DeliveryStatus, Recovery, UTCDateTime, Webhook

R = Recovery.__table__.c
W = Webhook.__table__.c
_WHEN = UTCDateTime()

_COUNT = (
    update(Recovery)
    .where(R.id == bindparam("_id"))
    .values(
        sent=R.sent + bindparam("_sent"),
        succeeded=R.succeeded + bindparam("_ok"),
        failed=R.failed + bindparam("_failed"),
    )
)
# Conditional, so that of two processes only one sees each change and sends its notice.
_RECOVERED = (
    update(Webhook)
    .where(W.id.in_(bindparam("ids", expanding=True)), W.failing_since.is_not(None))
    .values(failing_since=None)
    .returning(W.id, W.name, W.url, W.status)
)
_FAILING = (
    update(Webhook)
    .where(W.id == bindparam("_id"), W.failing_since.is_(None))
    .values(failing_since=bindparam("_since", type_=_WHEN))
    .returning(W.id, W.name, W.url, W.status)
)


def operations_after_record(conn, recorded: list[tuple], *, max_attempts: int) -> None:
    """`recorded`: (webhook_id, recovery_id, outcome, attempted_at) for each attempt just stored."""
    doorbell.changed_on_commit(conn)  # the pages that show deliveries live, in every process
    counts: dict[int, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    last: dict[int, tuple] = {}
    first_failure: dict[int, dt.datetime] = {}
    exhausted = []
    for webhook_id, recovery_id, outcome, attempted_at in recorded:
        success = outcome.status == DeliveryStatus.SUCCESS
        if recovery_id is not None:
            row = counts[recovery_id]
            row[0] += 1
            row[1 if success else 2] += 1
        last[webhook_id] = (success, outcome)
        if not success:
            first_failure.setdefault(webhook_id, attempted_at)
        if outcome.status == DeliveryStatus.FAILURE and outcome.attempt_number >= max_attempts:
            exhausted.append((webhook_id, outcome))
    if counts:
        conn.execute(_COUNT, [{"_id": r, "_sent": n, "_ok": ok, "_failed": bad} for r, (n, ok, bad) in counts.items()])
    recovered = [w for w, (success, _) in last.items() if success]
    if recovered:
        for row in conn.execute(_RECOVERED, {"ids": recovered}).all():
            notices.webhook_recovered(conn, row, last[row.id][1])
            alerts.webhook_recovered(conn, row)
    database_ahead_by = None
    for webhook_id, (success, outcome) in last.items():
        if success:
            continue
        if database_ahead_by is None:  # failing since, by the database's clock, which auto-disable reads
            database_ahead_by = database_now(conn) - utcnow()
        since = first_failure[webhook_id] + database_ahead_by
        for row in conn.execute(_FAILING, {"_id": webhook_id, "_since": since}).all():
            notices.webhook_failing(conn, row, outcome, since)
            due = since + health.failing_after(get_settings().auto_disable_after)
            alerts.webhook_failing(conn, row, outcome, since, due=due)
    for webhook_id, outcome in exhausted:
        notices.delivery_exhausted(conn, webhook_id, outcome)
