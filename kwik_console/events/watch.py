"""One watcher per process for the pages that show deliveries as they happen (a webhook's event log, the
recent deliveries on its page).

The doorbell's change bell wakes it: this process's publishes and records, and
every other process's, through the delivery scheduler's LISTEN on PostgreSQL or
SQLite's `data_version`. Woken, it reads once, for every open tab in the
process, which webhooks have new deliveries or attempts, and moves those
webhooks' versions on. A tab waits on its webhook's version, so no tab asks the
database anything until its webhook changed.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from kwik_console.core import doorbell
from kwik_console.store.db import get_engine
from kwik_console.store.deadline import within
from kwik_console.store.tables import Attempt, Delivery

log = logging.getLogger(__name__)

# Looks at most this often however busy the engine is (each is one read), and at least this often while any
# tab follows, in case a wake-up was lost (a LISTEN connection that dropped).
LOOK_GAP_SECONDS = 0.1
QUIET_LOOK_SECONDS = 30.0
# The watcher stops this long after the last tab stopped following; the next one starts it again.
IDLE_STOP_SECONDS = 60.0
STEP_SECONDS = 10.0

_D = Delivery.__table__.c
_A = Attempt.__table__.c
_MARKS = sa.select(
    sa.select(sa.func.coalesce(sa.func.max(_D.id), 0)).scalar_subquery(),
    sa.select(sa.func.coalesce(sa.func.max(_A.id), 0)).scalar_subquery(),
)
_NEW_DELIVERIES = (
    sa.select(_D.webhook_id, sa.func.max(_D.id)).where(_D.id > sa.bindparam("after")).group_by(_D.webhook_id)
)
_NEW_ATTEMPTS = (
    sa.select(_D.webhook_id, sa.func.max(_A.id))
    .select_from(Attempt.__table__.join(Delivery.__table__, _A.delivery_id == _D.id))
    .where(_A.id > sa.bindparam("after"))
    .group_by(_D.webhook_id)
)


class _Watcher:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # A webhook's version is the epoch plus its own count; the epoch moves when nothing is known of what
        # changed (the first look, or one after the database failed), so that every tab looks again.
        self._epoch = 0
        self._counts: dict[int, int] = {}
        self._changed = asyncio.Condition()
        self._woken = asyncio.Event()
        self._followers = 0
        self._last_follow = loop.time()
        self._marks: tuple[int, int] | None = None  # the newest delivery and attempt ids seen
        self._task: asyncio.Task | None = None

    def version(self, webhook_id: int) -> int:
        self._start()
        return self._version(webhook_id)

    def _version(self, webhook_id: int) -> int:
        return self._epoch + self._counts.get(webhook_id, 0)

    async def changed_after(self, webhook_id: int, seen: int, timeout: float) -> int | None:
        self._start()
        self._followers += 1
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._version(webhook_id) != seen), timeout)
            return self._version(webhook_id)
        except TimeoutError:
            return None
        finally:
            self._followers -= 1
            self._last_follow = self._loop.time()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._marks = None
            self._woken.set()  # the first look takes the marks
            self._task = self._loop.create_task(self._run(), name="kwik-delivery-watch")

    def _ring(self) -> None:
        """The change bell, from any thread."""
        try:
            self._loop.call_soon_threadsafe(self._woken.set)
        except RuntimeError:  # the loop closed: nothing follows any more
            pass

    async def _run(self) -> None:
        doorbell.listen_for_changes(self._ring)
        try:
            while self._followers or self._loop.time() - self._last_follow < IDLE_STOP_SECONDS:
                try:
                    await asyncio.wait_for(self._woken.wait(), QUIET_LOOK_SECONDS)
                except TimeoutError:
                    pass
                self._woken.clear()
                try:
                    changed = await asyncio.to_thread(self._look)
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("the delivery watch cannot read the database (%s); it looks again soon", exc)
                    self._marks = None
                    await asyncio.sleep(1.0)
                    self._woken.set()
                    continue
                if changed is None:
                    self._epoch += 1
                for webhook_id in changed or ():
                    self._counts[webhook_id] = self._counts.get(webhook_id, 0) + 1
                if changed is None or changed:
                    async with self._changed:
                        self._changed.notify_all()
                await asyncio.sleep(LOOK_GAP_SECONDS)
        finally:
            doorbell.stop_listening_for_changes(self._ring)

    def _look(self) -> set[int] | None:
        """Which webhooks have deliveries or attempts newer than the marks; None when there were no marks."""
        with within(STEP_SECONDS), get_engine().connect() as conn:
            if self._marks is None:
                self._marks = tuple(conn.execute(_MARKS).one())
                return None
            deliveries, attempts = self._marks
            new_deliveries = conn.execute(_NEW_DELIVERIES, {"after": deliveries}).all()
            new_attempts = conn.execute(_NEW_ATTEMPTS, {"after": attempts}).all()
        self._marks = (
            max([deliveries, *(newest for _, newest in new_deliveries)]),
            max([attempts, *(newest for _, newest in new_attempts)]),
        )
        return {webhook_id for webhook_id, _ in new_deliveries} | {webhook_id for webhook_id, _ in new_attempts}


_watcher: _Watcher | None = None


def _current() -> _Watcher:
    global _watcher
    loop = asyncio.get_running_loop()
    if _watcher is None or _watcher._loop is not loop:
        _watcher = _Watcher(loop)
    return _watcher


def version(webhook_id: int) -> int:
    """The webhook's version now, to wait on with `changed_after` (starts the watcher if it sleeps)."""
    return _current().version(webhook_id)


async def changed_after(webhook_id: int, seen: int, *, timeout: float) -> int | None:
    """Wait until the webhook's deliveries change from version `seen`; its new version, or None after `timeout`."""
    return await _current().changed_after(webhook_id, seen, timeout)
