"""The doorbell: whoever makes a delivery due rings it, and the delivery scheduler, listening, looks at once.

Two bells, for the two distances:
- `ring_on_commit(conn)`: every process, on any machine, hears it when the
  transaction commits (a PostgreSQL NOTIFY on CHANNEL; on SQLite the commit
  itself is seen, through the database's `data_version`).
- `ring()`: this process's listener hears it at once (after the commit, by the caller).

Publishing, webhooks and recoveries ring it; they need not know who listens.

A second, quieter bell says only that deliveries changed (published, attempted),
for the pages that show them as they happen: `changed()` tells this process's
change listeners; recording rings `changed_on_commit(conn)` for the other
processes (a PostgreSQL NOTIFY on CHANGED_CHANNEL, which the delivery scheduler
also LISTENs on; on SQLite, `data_version` again). Never a look for due work:
an attempt recorded makes nothing due now. The due bell counts as a change too.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

# The channels of the PostgreSQL NOTIFYs; the delivery scheduler LISTENs on both.
CHANNEL = "kwik_due"
CHANGED_CHANNEL = "kwik_changed"

_NOTIFY = sa.text(f"SELECT pg_notify('{CHANNEL}', '')")
_NOTIFY_CHANGED = sa.text(f"SELECT pg_notify('{CHANGED_CHANNEL}', '')")
_NEVER = object()
# One listener per process, its delivery scheduler: the one started last.
_listener: Callable[[], None] | None = None
# Who wants to know that deliveries changed (the pages that show them live), each safe to call from any thread.
_change_listeners: set[Callable[[], None]] = set()


def _notify_once(conn, statement, key: str) -> None:
    """Send a NOTIFY when this transaction commits, once however many rings share the transaction."""
    if conn.dialect.name == "postgresql" and conn.info.get(key, _NEVER) is not (now := conn.get_transaction()):
        conn.execute(statement)
        conn.info[key] = now  # held, so no later transaction can be this same object


def ring_on_commit(conn) -> None:
    """Tell every dispatcher process, on any machine, to look at once when this transaction commits.

    PostgreSQL sends a NOTIFY on commit, once however many rings share the
    transaction (a batch of publishes); on SQLite the commit itself is seen (its
    `data_version` changes), so there is nothing to do.
    """
    _notify_once(conn, _NOTIFY, "kwik_notified")


def changed_on_commit(conn) -> None:
    """Tell every process's change listeners, when this transaction commits, that deliveries changed."""
    _notify_once(conn, _NOTIFY_CHANGED, "kwik_changed")


def ring() -> None:
    """Wake this process's listener, if it has one. Safe to call from any thread."""
    listener = _listener
    if listener is not None:
        listener()


def listen(callback: Callable[[], None]) -> None:
    """Make `callback` (safe to call from any thread) this process's listener."""
    global _listener
    _listener = callback


def stop_listening(callback: Callable[[], None]) -> None:
    """Stop `callback` listening, if it still is (a listener started since keeps listening)."""
    global _listener
    if _listener == callback:  # ==: a bound method is a new object each time it is read
        _listener = None


def changed() -> None:
    """Tell this process's change listeners that deliveries changed. Safe to call from any thread."""
    for callback in list(_change_listeners):
        callback()


def listen_for_changes(callback: Callable[[], None]) -> None:
    _change_listeners.add(callback)


def stop_listening_for_changes(callback: Callable[[], None]) -> None:
    _change_listeners.discard(callback)
