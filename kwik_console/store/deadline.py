"""A limit on how long a thread's database step may wait, kept by this process rather than the database.

A database that keeps its connections open and answers nothing (a firewall or NAT that dropped the flow, a
hung server) trips neither the server's statement_timeout, which it never sees, nor TCP keepalives while
something on the path still acknowledges. A read then waits for ever, and every step queued behind it with
it: delivery stops. A thread that runs a step `within(seconds)` has the sockets of the connections it holds
shut down once the time is up, so the step fails (the connection is dropped from the pool) and the next one
opens a fresh connection. PostgreSQL only: SQLite is a file on this machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

from sqlalchemy import Engine, event, exc

log = logging.getLogger(__name__)

CHECK_EVERY_SECONDS = 0.5

_lock = threading.Lock()
# Per thread: when its step must end (time.monotonic()), and how long it was given.
_steps: dict[int, tuple[float, float]] = {}
# Per thread: the driver connections it holds from a watched pool.
_held: dict[int, dict[int, object]] = {}
_watchdog: threading.Thread | None = None
# Driver connections whose sockets were shut, by id: never handed out again.
_cut: dict[int, object] = {}


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Database work on this thread in which no wait for the database may last longer than `seconds`,
    whatever the database does: the time runs from the start, and again from each statement."""
    me = threading.get_ident()
    with _lock:
        _steps[me] = (time.monotonic() + seconds, seconds)
    _start_watchdog()
    try:
        yield
    finally:
        with _lock:
            _steps.pop(me, None)


def watch(engine: Engine) -> None:
    """Know which connections of this engine's pool each thread holds (for `within` and `cut_all`)."""

    @event.listens_for(engine, "checkout")
    def _taken(dbapi_connection, record, _proxy) -> None:
        with _lock:
            was_cut = _cut.pop(id(dbapi_connection), None) is dbapi_connection
        if was_cut:
            # Given back unused after its socket was shut (a job cancelled while stopping): the pool drops
            # it and hands out another, instead of the next step failing on it.
            raise exc.DisconnectionError("its socket was shut when a step ran out of time")
        me = threading.get_ident()
        record.info["kwik_held_by"] = me
        with _lock:
            _held.setdefault(me, {})[id(record)] = dbapi_connection

    @event.listens_for(engine, "invalidate")
    @event.listens_for(engine, "close")
    def _gone(dbapi_connection, *_args) -> None:
        with _lock:
            _cut.pop(id(dbapi_connection), None)

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(*_args) -> None:
        me = threading.get_ident()
        with _lock:
            step = _steps.get(me)
            if step is not None and step[0] != float("inf"):
                _steps[me] = (time.monotonic() + step[1], step[1])

    @event.listens_for(engine, "checkin")
    def _given_back(_dbapi_connection, record) -> None:
        holder = record.info.pop("kwik_held_by", None)
        with _lock:
            held = _held.get(holder)
            if held is not None:
                held.pop(id(record), None)
                if not held:
                    del _held[holder]


def cut_all() -> int:
    """Shut the connections of every step still running in this process (a stop that will not wait for the
    database); returns how many were cut."""
    with _lock:
        stuck = [c for thread in _steps for c in _held.get(thread, {}).values()]
    for connection in stuck:
        _shut(connection)
    return len(stuck)


def _start_watchdog() -> None:
    global _watchdog
    with _lock:
        if _watchdog is not None:
            return
        _watchdog = threading.Thread(target=_watch_steps, name="kwik-db-deadline", daemon=True)
    _watchdog.start()


def _watch_steps() -> None:
    while True:
        time.sleep(CHECK_EVERY_SECONDS)
        now = time.monotonic()
        with _lock:
            late = [(thread, seconds) for thread, (until, seconds) in _steps.items() if until <= now]
            for thread, _seconds in late:
                _steps[thread] = (float("inf"), _steps[thread][1])  # cut once
            connections = [(seconds, list(_held.get(thread, {}).values())) for thread, seconds in late]
        for seconds, held in connections:
            if held:
                log.warning(
                    "the database did not answer within %g s: its connection is closed, the step fails", seconds
                )
            for connection in held:
                _shut(connection)


def _shut(dbapi_connection) -> None:
    """Shut the connection's socket down: a read or write blocked on it returns at once with an error."""
    with _lock:
        _cut[id(dbapi_connection)] = dbapi_connection
    try:
        fd = getattr(dbapi_connection, "driver_connection", dbapi_connection).pgconn.socket
    except Exception:  # noqa: BLE001  closed already, or not a psycopg connection: nothing to cut
        return
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed meanwhile
