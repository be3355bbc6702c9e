"""Per-token rate limits, counted in the database so that the limit holds across every replica.

Fixed one-minute windows: each request adds one to its token's row for the current
window with a single upsert, and reads the count back in the same statement (publishes
that share a transaction add theirs in one: api/batches.py).
Headers follow the IETF RateLimit header fields draft: RateLimit-Limit,
RateLimit-Remaining, RateLimit-Reset (seconds), RateLimit-Policy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from kwik_console.store.token_tables import RateLimitCounter

WINDOW_SECONDS = 60
# Old windows are removed by the requests themselves, now and then: no job to run.
PURGE_ONE_IN = 200


@dataclasses.dataclass(frozen=True)
class Verdict:
    limit: int
    count: int
    reset_seconds: int

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit

    @property
    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(self.limit - self.count, 0)),
            "RateLimit-Reset": str(self.reset_seconds),
            "RateLimit-Policy": f"{self.limit};w={WINDOW_SECONDS}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


def _upsert(dialect: str):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = RateLimitCounter.__table__
    requests = sa.bindparam("requests", type_=sa.Integer())
    statement = insert(table).values(
        subject=sa.bindparam("subject"), window_start=sa.bindparam("window_start"), count=requests
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c.subject, table.c.window_start], set_={"count": table.c.count + requests}
    ).returning(table.c.count)


_UPSERTS = {name: _upsert(name) for name in ("postgresql", "sqlite")}
_PURGE = sa.delete(RateLimitCounter).where(RateLimitCounter.window_start < sa.bindparam("before"))


# Subjects this process saw go over their limit, and when that window ends. Within a window a
# count only grows, so they stay over until then: their requests are refused before any work,
# without a read. Every request is still counted in the database, which is what holds the limit
# across replicas; one that another replica pushed over is refused by its own count (`hit`).
_over_until: dict[tuple[object, str, int], int] = {}


def _known(connection, subject: str, limit: int) -> tuple[object, str, int]:
    return connection.engine.url, subject, limit  # a URL is immutable and hashable: nothing rendered per request


def used_up(connection, subject: str, now: dt.datetime, limit: int) -> bool:
    """Whether `subject` is known to have used all of the current window already (no database work)."""
    ends = _over_until.get(_known(connection, subject, limit))
    return ends is not None and now.timestamp() < ends


def _window_start(now: dt.datetime) -> int:
    seconds = int(now.timestamp())
    return seconds - seconds % WINDOW_SECONDS


def hit(connection, subject: str, now: dt.datetime, limit: int, requests: int = 1) -> Verdict:
    """Count `requests` for `subject` in the current window; the verdict (on the last of them) says whether it is
    within the limit."""
    seconds = int(now.timestamp())
    window_start = _window_start(now)
    count = connection.execute(
        _UPSERTS[connection.dialect.name], {"subject": subject, "window_start": window_start, "requests": requests}
    ).scalar_one()
    if random.randrange(PURGE_ONE_IN) == 0:
        connection.execute(_PURGE, {"before": window_start - WINDOW_SECONDS})
        for old in [key for key, ends in _over_until.items() if ends <= seconds]:
            del _over_until[old]
    verdict = Verdict(limit, count, max(window_start + WINDOW_SECONDS - seconds, 1))
    # Remembered when the first of them was over already: the count before them (committed, whatever becomes of
    # this transaction) had used the window up.
    if count - requests >= limit:
        _over_until[_known(connection, subject, limit)] = window_start + WINDOW_SECONDS
    return verdict
