"""The doorbell: whoever makes a delivery due rings it, and the delivery scheduler, listening, looks at once.

Two bells, for the two distances:
- `ring_on_commit(conn)`: every process, on any machine, hears it when the
  transaction commits (a PostgreSQL NOTIFY on CHANNEL; on SQLite the commit
  itself is seen, through the database's `data_version`).
- `ring()`: this process's listener hears it at once (after the commit, by the caller).

Publishing, webhooks and recoveries ring it; they need not know who listens.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

# The channel of the PostgreSQL NOTIFY; the delivery scheduler LISTENs on it.
CHANNEL = "kwik_due"

_NOTIFY = sa.text(f"SELECT pg_notify('{CHANNEL}', '')")
_NEVER = object()
# One listener per process, its delivery scheduler: the one started last.
_listener: Callable[[], None] | None = None


def ring_on_commit(conn) -> None:
    """Tell every dispatcher process, on any machine, to look at once when this transaction commits.

    PostgreSQL sends a NOTIFY on commit, once however many rings share the
    transaction (a batch of publishes); on SQLite the commit itself is seen (its
    `data_version` changes), so there is nothing to do.
    """
    if conn.dialect.name == "postgresql" and conn.info.get("kwik_notified", _NEVER) is not (
        now := conn.get_transaction()
    ):
        conn.execute(_NOTIFY)
        conn.info["kwik_notified"] = now  # held, so no later transaction can be this same object


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
