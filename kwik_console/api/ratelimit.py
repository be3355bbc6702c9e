"""Per-token rate limits, counted in the database so that the limit holds across every replica.

Fixed one-minute windows: each request adds one to its token's row for the current
window with a single upsert, and reads the count back in the same statement.
Headers follow the IETF RateLimit header fields draft: RateLimit-Limit,
RateLimit-Remaining, RateLimit-Reset (seconds), RateLimit-Policy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from kwik_console.api_models import RateLimitCounter

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
    statement = insert(table).values(subject=sa.bindparam("subject"), window_start=sa.bindparam("window_start"),
                                     count=1)
    return statement.on_conflict_do_update(
        index_elements=[table.c.subject, table.c.window_start], set_={"count": table.c.count + 1}
    ).returning(table.c.count)


_UPSERTS = {name: _upsert(name) for name in ("postgresql", "sqlite")}
_COUNT = sa.select(RateLimitCounter.count).where(RateLimitCounter.subject == sa.bindparam("subject"),
                                                 RateLimitCounter.window_start == sa.bindparam("window_start"))
_PURGE = sa.delete(RateLimitCounter).where(RateLimitCounter.window_start < sa.bindparam("before"))


def used_up(connection, subject: str, now: dt.datetime, limit: int) -> bool:
    """Whether `subject` has used all of the current window already (a read: no row is locked)."""
    count = connection.execute(_COUNT, {"subject": subject, "window_start": _window_start(now)}).scalar()
    return count is not None and count >= limit


def _window_start(now: dt.datetime) -> int:
    seconds = int(now.timestamp())
    return seconds - seconds % WINDOW_SECONDS


def hit(connection, subject: str, now: dt.datetime, limit: int) -> Verdict:
    """Count one request for `subject` in the current window; the verdict says whether it is within the limit."""
    seconds = int(now.timestamp())
    window_start = _window_start(now)
    count = connection.execute(_UPSERTS[connection.dialect.name],
                               {"subject": subject, "window_start": window_start}).scalar_one()
    if random.randrange(PURGE_ONE_IN) == 0:
        connection.execute(_PURGE, {"before": window_start - WINDOW_SECONDS})
    return Verdict(limit, count, max(window_start + WINDOW_SECONDS - seconds, 1))
