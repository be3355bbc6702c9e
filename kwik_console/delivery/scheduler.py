"""APScheduler wiring: when the dispatcher looks for due deliveries.

The scheduler keeps nothing a crash could lose; it only decides when to look:
- `dispatch-due`, an interval job, polls every KWIK_POLL_SECONDS (it also takes
  over the leases of crashed processes);
- `next-retry`, a date job, fires when the earliest scheduled retry falls due,
  and is set again for the next one each time it runs.

A publish wakes the dispatcher at once: the scheduler listens at the doorbell
(core/doorbell.py) that the publishing process rings, and hears other processes'
publishes by a PostgreSQL NOTIFY, or on SQLite a change of the database's
`data_version`, looked at every few milliseconds.

The background jobs it runs beside the looks are the app's (hooks.py).

The scheduler and its dispatcher run on an event loop in a thread of their
own, so delivery work never holds up the console's pages, and vice versa.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time

import uvloop
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from kwik_console.core import doorbell, metrics
from kwik_console.core.clock import utcnow
from kwik_console.core.process import freeze_startup_objects, short_gil_turns
from kwik_console.core.settings import Settings, get_settings
from kwik_console.delivery import hooks
from kwik_console.delivery.dispatcher import Dispatcher
from kwik_console.delivery.types import Outcome
from kwik_console.store import deadline
from kwik_console.store.db import get_engine
from kwik_console.store.engines import POSTGRES_CONNECT_ARGS

log = logging.getLogger(__name__)
logging.getLogger("apscheduler").setLevel(logging.ERROR)  # every run at INFO, a look skipped while one runs at WARNING

POLL_JOB = "dispatch-due"
RETRY_JOB = "next-retry"
# How often, on SQLite, we look whether another process wrote to the database.
DATA_VERSION_SECONDS = 0.01

_current: DeliveryScheduler | None = None


class DeliveryScheduler:
    def __init__(self, settings: Settings | None = None, engine=None, *, engine_hooks: hooks.Hooks | None = None):
        self.settings = settings or get_settings()
        self.dispatcher = Dispatcher(self.settings, engine or get_engine(), engine_hooks=engine_hooks)
        self.dispatcher.on_recorded = self._after_record
        self._aps: AsyncIOScheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()

    # -------------------------------------------------- lifecycle (any thread)

    def start(self) -> None:
        """Start the delivery thread; return once its scheduler runs."""
        global _current
        short_gil_turns()
        self._thread = threading.Thread(target=self._run, name="kwik-delivery", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._failure is not None:
            raise self._failure
        freeze_startup_objects()
        _current = self
        doorbell.listen(self.wake)
        log.info("delivery scheduler started (%s)", self.dispatcher.owner)

    def stop(self) -> None:
        """Stop looking, let attempts in flight finish and be recorded, then end the thread."""
        global _current
        doorbell.stop_listening(self.wake)
        if _current is self:
            _current = None
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()
        log.info("delivery scheduler stopped")

    def wake(self) -> None:
        """Look for due deliveries now. Safe to call from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake_now)
        doorbell.changed()  # this process published: its pages show the new deliveries

    async def deliver(self, delivery_ids: list[int]) -> list[Outcome]:
        """Attempt deliveries at once on the delivery thread; await their outcomes from any loop."""
        future = asyncio.run_coroutine_threadsafe(self.dispatcher.deliver(delivery_ids), self._loop)
        return await asyncio.wrap_future(future)

    # -------------------------------------------------- on the delivery thread

    def _run(self) -> None:
        self._loop = uvloop.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.dispatcher.start()
            self._aps = AsyncIOScheduler(
                event_loop=self._loop,
                timezone=dt.UTC,
                # A late run is still a run: never skip a look because the loop was busy.
                job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            )
            self._aps.add_job(
                self._dispatch, IntervalTrigger(seconds=self.settings.poll_seconds), id=POLL_JOB, next_run_time=utcnow()
            )
            self._add_jobs()
            self._aps.start()
            watcher = self._loop.create_task(self._watch_other_processes(), name="kwik-wake-watcher")
            self._tasks.add(watcher)
        except BaseException as exc:  # noqa: BLE001  reported to start()'s caller
            self._failure = exc
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        self._aps.shutdown(wait=False)
        await self.dispatcher.close()
        for task in self._tasks:
            task.cancel()
        # A job still waiting on a silent database would hold the process's exit: its connection goes.
        deadline.cut_all()

    def _add_jobs(self) -> None:
        """The app's background jobs (hooks.py: recoveries, auto-disable, retention), each on a thread of its own."""
        engine, owner, settings = self.dispatcher.engine, self.dispatcher.owner, self.settings

        def on_thread(fn, *args):
            async def run():
                try:
                    await asyncio.to_thread(_within_job, fn, *args)
                except Exception:  # noqa: BLE001  the next run tries again
                    log.exception("%s failed", fn.__name__)

            return run

        now = utcnow()
        for job in self.dispatcher.hooks.jobs:
            self._aps.add_job(
                on_thread(job.run, engine, owner, settings),
                IntervalTrigger(seconds=job.every_seconds),
                id=job.id,
                next_run_time=now + dt.timedelta(seconds=job.first_after_seconds),
            )

    def _wake_now(self) -> None:
        if self._aps is None or not self._aps.running:
            return
        # dispatch_due runs one claim at a time and folds wake-ups that come meanwhile.
        self._spawn(self._claim_logged())

    async def _claim_logged(self) -> None:
        try:
            await self.dispatcher.dispatch_due()
        except Exception:  # noqa: BLE001  a wake-up's claim that failed is the poll's to make again
            if self.dispatcher.database_trouble is None:  # else said once already, not at every wake-up
                log.warning("claiming after a wake-up failed; the next look tries again", exc_info=True)

    def _spawn(self, coroutine) -> None:
        # Hold a reference: the event loop keeps only weak ones to its tasks.
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_other_processes(self) -> None:
        """Wake when another process publishes: LISTEN on PostgreSQL, `data_version` on SQLite. Either also
        tells the change listeners, as do this process's own publishes and records."""
        engine = self.dispatcher.engine
        if engine.dialect.name == "postgresql":
            await asyncio.to_thread(self._listen, engine)
            return
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            seen = None
            while not self._stop.is_set():
                # A read of the shared-memory header: microseconds, never waits for a writer.
                version = cursor.execute("PRAGMA data_version").fetchone()[0]
                if version != seen and seen is not None:
                    self._wake_now()
                    doorbell.changed()
                seen = version
                await asyncio.sleep(DATA_VERSION_SECONDS)
        finally:
            connection.close()

    def _listen(self, engine) -> None:
        """On a thread of its own: wait for NOTIFYs from any process's publish, and wake the loop."""
        import psycopg  # only PostgreSQL needs the driver: a console on SQLite never loads it

        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, **POSTGRES_CONNECT_ARGS) as conn:
                    conn.execute(f"LISTEN {doorbell.CHANNEL}")
                    conn.execute(f"LISTEN {doorbell.CHANGED_CHANNEL}")
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=0.5, stop_after=1):
                            if notice.channel == doorbell.CHANNEL:
                                self._loop.call_soon_threadsafe(self._wake_now)
                            doorbell.changed()
            except psycopg.Error:
                log.warning("listening for publishes failed; polling until it reconnects", exc_info=True)
                time.sleep(1.0)
            except RuntimeError:  # the loop closed: we are stopping
                return

    def _arm_retry(self, when: dt.datetime | None, *, replace: bool = False) -> None:
        """Make sure a look happens when the earliest known retry falls due."""
        if when is None or self._aps is None or not self._aps.running:
            return
        job = self._aps.get_job(RETRY_JOB)
        if replace or job is None or job.next_run_time is None or when < job.next_run_time:
            self._aps.add_job(self._look_when_due, DateTrigger(run_date=when), id=RETRY_JOB, replace_existing=True)

    async def _look_when_due(self) -> None:
        # Returns at once, the look running as a task of its own. The job is re-armed by the looks, often
        # for a retry already due; APScheduler skips a run that falls due while the job's previous run
        # has not returned, and a skipped date job is gone: retries then waited for the poll.
        self._spawn(self._dispatch_logged())

    async def _dispatch_logged(self) -> None:
        try:
            await self._dispatch()
        except Exception:  # noqa: BLE001  as APScheduler would have logged it; the next look tries again
            log.exception("looking for due deliveries failed")

    async def _dispatch(self) -> None:
        """Claim what is due, then make sure a look happens when the next retry falls due."""
        # The gauge, once a look rather than at each attempt's start and end: each report writes a shared file.
        metrics.set_in_flight(self.dispatcher.in_flight)
        began = utcnow()
        await self.dispatcher.dispatch_due()
        self._arm_retry(await self.dispatcher.next_due_at(after=began), replace=True)

    def _after_record(self, outcomes: list[Outcome]) -> None:
        doorbell.changed()
        self._arm_retry(min((o.next_attempt_at for o in outcomes if o.next_attempt_at), default=None))


# No wait of a background job (recoveries, auto-disable, retention, alerts) for the database lasts longer than
# this, whatever the database does: longer than any statement the server allows.
JOB_STEP_SECONDS = 90.0


def _within_job(fn, *args):
    with deadline.within(JOB_STEP_SECONDS):
        return fn(*args)


def current() -> DeliveryScheduler | None:
    return _current


def wake() -> None:
    """Wake this process's scheduler, if it runs one (a face that published calls this after committing)."""
    doorbell.ring()


async def deliver_now(delivery_ids: list[int]) -> list[Outcome]:
    """Attempt deliveries at once and return their outcomes (Test Webhook, CLI publish).

    Uses this process's dispatcher when one runs, or a short-lived one.
    """
    if _current is not None:
        return await _current.deliver(delivery_ids)
    dispatcher = Dispatcher(get_settings(), get_engine())
    await dispatcher.start()
    try:
        return await dispatcher.deliver(delivery_ids)
    finally:
        await dispatcher.close()


@contextlib.asynccontextmanager
async def running(settings: Settings | None = None):
    """The scheduler for the lifetime of a block: the console's lifespan task and `kwik-console worker`."""
    scheduler = DeliveryScheduler(settings)
    await asyncio.to_thread(scheduler.start)
    try:
        yield scheduler
    finally:
        await asyncio.to_thread(scheduler.stop)
