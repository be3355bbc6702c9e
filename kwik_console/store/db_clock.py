"""Due times by the database's clock.

Leases are measured by the database's clock, so every due time they are compared with must be too: a
process whose own clock is off would otherwise move retries (an hour behind, the 5 s, 300 s and 1,800 s
waits collapse into one burst) and new deliveries (ahead, not due until that clock is reached). On
PostgreSQL the time is the database's `now()`, in the statement that writes it. SQLite lives on this
machine, so its clock is ours, and the time this process gives is written.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from kwik_console.core.clock import utcnow
from kwik_console.store.tables import UTCDateTime


class due_at(FunctionElement):  # noqa: N801  used as a SQL function is: due_at(now) in values()
    """A due time to write: `now() + delay` seconds on PostgreSQL (now() alone without a delay); on SQLite
    `local`, the same time by this process's clock. Either may be a bound parameter, as in an executemany."""

    type = UTCDateTime()
    inherit_cache = True
    name = "due_at"

    def __init__(self, local, delay=None):
        args = [local if isinstance(local, sa.ClauseElement) else sa.literal(local, UTCDateTime())]
        if delay is not None:
            args.append(delay if isinstance(delay, sa.ClauseElement) else sa.literal(delay, sa.Float()))
        super().__init__(*args)


@compiles(due_at)
def _by_this_process(element, compiler, **kw) -> str:
    return compiler.process(element.clauses.clauses[0], **kw)


@compiles(due_at, "postgresql")
def _by_the_database(element, compiler, **kw) -> str:
    clauses = element.clauses.clauses
    if len(clauses) == 1:
        return "now()"
    # A NULL delay gives NULL: nothing due.
    return f"now() + make_interval(secs => CAST({compiler.process(clauses[1], **kw)} AS double precision))"


def database_now(conn) -> dt.datetime:
    """The time by the database's clock, read now (SQLite's is ours)."""
    if conn.dialect.name == "postgresql":
        return conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one().astimezone(dt.UTC)
    return utcnow()
