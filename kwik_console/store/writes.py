"""Short write transactions on hot paths (publish, the API's guard, recording attempts): on SQLite, one writer
at a time in this process, queued in order instead of sleeping in SQLite's busy handler; and, for an async
route, run on the event loop's own thread when the writer is free."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from kwik_console.store.db import opened_engine
from kwik_console.store.engines import SQLITE_BUSY_TIMEOUT_MS

# SQLite has one writer at a time. Threads of one process that collide wait in
# SQLite's busy handler, which sleeps in steps of up to 100 ms: a request's tail
# latency. Short write transactions on hot paths (publish, the API's guard) take
# this lock first, so they queue in order instead of sleeping.
_sqlite_writer = threading.Lock()


@contextlib.contextmanager
def one_writer(engine: Engine) -> Iterator[None]:
    """Around a short write transaction: on SQLite, one at a time in this process; elsewhere nothing."""
    if engine.dialect.name != "sqlite":
        yield
        return
    if not _on_the_loop.get():
        with _sqlite_writer:
            yield
        return
    if not _sqlite_writer.acquire(blocking=False):
        raise WriterBusy
    try:
        yield
    finally:
        _sqlite_writer.release()


class WriterBusy(Exception):
    """`run_short_write` on the event loop found SQLite's writer taken: nothing was written, and the work
    goes to a thread, to wait there."""


T = TypeVar("T")

# Set while `run_short_write` runs its work on the event loop's own thread, which must never wait.
_on_the_loop = contextvars.ContextVar("kwik_on_the_loop", default=False)


@contextlib.contextmanager
def short_write(engine: Engine) -> Iterator[Connection]:
    """A short write transaction (`one_writer`, then `engine.begin()`). On the event loop (`run_short_write`)
    it never waits: SQLite's writer taken, here or by another process, raises WriterBusy, rolled back."""
    with one_writer(engine), engine.connect() as connection:
        if not _on_the_loop.get():  # set by run_short_write, for SQLite only
            with connection.begin():
                yield connection
            return
        driver = connection.connection.driver_connection
        driver.execute("PRAGMA busy_timeout=0")  # another process's write lock: refused at once, not waited for
        try:
            with connection.begin():
                yield connection
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
                raise WriterBusy from exc
            raise
        finally:
            if not connection.invalidated:
                try:
                    driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                except sqlite3.Error:
                    connection.invalidate()  # never back to the pool refusing at once; the work's outcome stands


async def run_short_write(work: Callable[[], T]) -> T:
    """`work()`, a short write transaction in `short_write`, for an async route. On SQLite it runs on the
    event loop's own thread when the writer is free: SQLite works in this process's CPU, one writer at a
    time, so a thread adds only handoffs of the GIL between it and the loop (bench/api.py, alternating:
    POST /events 0.46 to 0.50 of in-process publishing, against 0.31 to 0.34 on a thread). Anything that
    would wait for the writer goes to a thread instead. So does every transaction on PostgreSQL: its round
    trips would stall the loop (0.28 and 0.30 on the loop, against 0.34 and 0.45)."""
    engine = opened_engine()
    checkedin = getattr(engine.pool, "checkedin", None) if engine is not None else None
    # On the loop only with SQLite's engine open and a connection idle in its pool: never a migration, a new
    # connection or a wait for one there (the first publish of a process goes to a thread).
    if engine is not None and engine.dialect.name == "sqlite" and checkedin is not None and checkedin() > 0:
        on_the_loop = _on_the_loop.set(True)
        try:
            return work()
        except WriterBusy:
            pass
        finally:
            _on_the_loop.reset(on_the_loop)
    return await asyncio.get_running_loop().run_in_executor(None, work)
