"""Claim due deliveries, run their attempts, record every attempt, schedule retries.

The database is the source of truth. A claim is a lease on the delivery row
(`lease_until`, `leased_by`): a delivery in flight is never claimed by another
dispatcher, and a crashed dispatcher's claims are taken over once they expire.
This is the engine; its SQL is in claims.py (claiming) and records.py (recording).

Three rules keep it fast and fair:
- Database work runs on a thread of its own (on PostgreSQL, records on a
  second), never on the loop that carries the HTTP attempts: a slow write
  (another process holding SQLite's lock) delays records, not responses.
- Claims are taken per webhook, round-robin across the webhooks with due
  deliveries, each up to its room, so a webhook with a huge backlog costs a
  claim no more than one with a single event.
- Endpoints that hang cannot starve a healthy one: a webhook that already has
  attempts on the wire may not take the last quarter of the global slots, and
  an attempt still waiting after a second stops counting against the global
  cap (up to the cap again: at most twice the cap on the wire).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable

import httpx
from sqlalchemy import Engine

from kwik_console.core import metrics
from kwik_console.core.clock import utcnow
from kwik_console.core.settings import Settings
from kwik_console.delivery import client as http
from kwik_console.delivery import hooks
from kwik_console.delivery.claims import (
    Turns,
    claim_deliveries,
    next_due_at,
    release_claims,
    release_unsent,
    still_sendable,
)
from kwik_console.delivery.records import read_outcome, record_attempts
from kwik_console.delivery.types import Claim, Finished, Outcome, Taken
from kwik_console.store import deadline
from kwik_console.webhooks.signing import signature_headers

log = logging.getLogger(__name__)

RECORD_GATHER_SECONDS = 0.005
# While attempts finish in numbers (the last batch held more than a webhook's cap), a batch gathers for longer:
# a record's transaction costs about as much CPU as twenty to thirty of its rows. A lone attempt (Test webhook,
# a trickle) is still recorded within RECORD_GATHER_SECONDS.
RECORD_GATHER_BUSY_SECONDS = 0.02
# Time kept at the end of a lease for recording an attempt's outcome.
RECORD_MARGIN_SECONDS = 1.0
# A claim that waited longer than this for a slot is checked again before its
# request starts: the webhook may have been disabled or deleted meanwhile. A later
# claim that saw its webhook Live vouches for it as a check would: what else a check
# reads (the lease, the due time) moves only with this dispatcher or with that status.
RECHECK_AFTER_SECONDS = 0.05
# An attempt still waiting for its response after this long is a slow one: it
# gives its global slot to others (it keeps its webhook's).
SLOW_ATTEMPT_SECONDS = 1.0
# While few webhooks are busy, each may hold this many times its cap in claims
# (on the wire, or ready the moment a slot frees); twice its cap when many are.
# One busy webhook's drain is bound by its claims, which run back to back: each
# claim takes what the reach leaves, so a longer reach means fewer, larger claims
# (bench/delivery.py (a), 20,000 events: 625 claims of 32 where 4 made 1,251 of 16).
CLAIM_AHEAD = 8
# A claim, record or check that has not ended in this long has met a database gone silent: its connection
# is cut (store/deadline.py) and the step fails, to be tried again on a fresh one. Each takes milliseconds.
STEP_SECONDS = 10.0
# While stopping, the database gets this long per step, and one failed step ends the hand-backs: the leases
# expire instead. A stop then takes the attempt timeout and a few seconds, whatever the database does.
CLOSING_STEP_SECONDS = 3.0


class Dispatcher:
    """Runs attempts concurrently under a global cap and a per-webhook cap.

    One per process; `dispatch_due()` is called by the scheduler's jobs,
    `deliver()` sends given deliveries at once (ahead of the queue, within the
    same caps) and returns their outcomes.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        rng: random.Random | None = None,
        engine_hooks: hooks.Hooks | None = None,
    ):
        self.settings = settings
        self.engine = engine
        self.rng = rng
        # What the layers above do with the engine's work (hooks.py); the app installs them at start.
        self.hooks = engine_hooks if engine_hooks is not None else hooks.installed()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # Called with each recorded batch's outcomes (the scheduler arms retries from them).
        self.on_recorded: Callable[[list[Outcome]], None] | None = None
        self._client: httpx.AsyncClient | None = None
        # Database steps run off the HTTP loop, in order: claims and checks on one thread and,
        # on PostgreSQL, records on another, so neither waits behind the other's round trips.
        # SQLite has one writer at a time: there, one thread does both, taking turns.
        self._database = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kwik-database")
        self._records = self._database
        if engine.dialect.name == "postgresql":
            self._records = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kwik-records")
        # Attempts on the wire (or being re-checked), per webhook: the caps count these.
        # A finished attempt keeps its lease until recorded, so no one else claims it meanwhile.
        self._in_flight: collections.Counter[int] = collections.Counter()
        self._in_flight_total = 0  # their sum, kept as they start and end: the caps read it at every start
        # When each attempt on the wire started (time.monotonic()), by delivery.
        self._on_wire: dict[int, float] = {}
        self._nudge: asyncio.TimerHandle | None = None
        self._rate_timer: asyncio.TimerHandle | None = None
        # Claimed, waiting for a slot, per webhook; `deliver()`'s claims go first.
        self._ready: dict[int, collections.deque[Claim]] = {}
        self._urgent: collections.deque[Claim] = collections.deque()
        # Webhooks that may have more due than they were given, and whether the
        # last claim stopped at its overall limit (see `_top_up`).
        self._saturated: set[int] = set()
        # Whose turn it is among webhooks on an equal footing: the claim's round-robin.
        self._turns = Turns()
        self._limited = False
        self._claiming: asyncio.Task | None = None
        self._claim_again = False
        self._tasks: set[asyncio.Task] = set()
        self._finished: list[Finished] = []
        self._record_wakeup = asyncio.Event()
        self._recorder: asyncio.Task | None = None
        # Held while a batch is recorded: a stop hands back what is left only once no record is under way,
        # or it would hand back deliveries whose attempts that record is about to store (and they would go again).
        self._recording = asyncio.Lock()
        self._recheck: dict[int, asyncio.Future[bool]] = {}
        self._rechecking: asyncio.Task | None = None
        # When a claim last saw each webhook Live (time.monotonic()): see RECHECK_AFTER_SECONDS.
        self._seen_live: dict[int, float] = {}
        # Per webhook, the last started claim's decision to send or not (see `_sendable`).
        self._deciding: dict[int, asyncio.Future[None]] = {}
        self._waiters: dict[int, asyncio.Future[Outcome]] = {}
        self._closing = False
        # Why the last database step failed, until one succeeds (the readiness probe reports it).
        self.database_trouble: str | None = None
        self.attempts_recorded = 0
        # CPU and wall seconds spent in each engine step by this process, said in the log when it stops.
        self.steps: collections.Counter[str] = collections.Counter()
        # When the last claim looked for due deliveries: whatever was due then has been seen.
        self.last_claim_at: dt.datetime | None = None

    @property
    def in_flight(self) -> int:
        return self._in_flight_total

    @property
    def ready(self) -> int:
        return sum(len(q) for q in self._ready.values()) + len(self._urgent)

    async def start(self) -> None:
        self._client = http.make_client(self.settings)
        self._recorder = asyncio.create_task(self._record_loop(), name="kwik-recorder")

    async def close(self, timeout: float | None = None) -> None:
        """Stop claiming, let attempts in flight finish and be recorded, then release resources.

        Attempts still running after `timeout` are abandoned; their leases
        expire and another dispatcher takes them over.
        """
        self._closing = True
        if self._claiming is not None and self._claiming is not asyncio.current_task():
            # A claim is a bounded database step: let it finish, so what it took is handed back below.
            await asyncio.wait({self._claiming}, timeout=STEP_SECONDS + 1)
        # Claims still waiting for a slot go back at once, not when their lease expires.
        waiting = [c.delivery_id for queue in [*self._ready.values(), self._urgent] for c in queue]
        self._ready.clear()
        self._urgent.clear()
        reachable = not waiting or await self._closing_step(release_claims, owner=self.owner, ids=waiting)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout or self.settings.attempt_timeout + 1)
        if self._recorder:
            async with self._recording:  # a record under way ends first; the recorder stops between batches
                self._recorder.cancel()
        if reachable:
            reachable = await self._flush(tries=1)
        if reachable:
            # Whatever else this dispatcher still holds was never sent (a claim that raced the
            # stop): hand it back too. Attempts abandoned on the wire keep theirs until it expires.
            await self._closing_step(release_unsent, owner=self.owner, on_wire=list(self._on_wire))
        if self._rate_timer is not None:
            self._rate_timer.cancel()
        if self._client:
            await self._client.aclose()
        self._database.shutdown(wait=True)
        self._records.shutdown(wait=True)
        metrics.set_in_flight(0)
        log.info("engine steps (seconds): %s", json.dumps({k: round(v, 4) for k, v in sorted(self.steps.items())}))

    async def _db(self, fn, /, *, thread: concurrent.futures.Executor | None = None, **kwargs):
        """Run a database step on a database thread; the HTTP loop goes on meanwhile."""
        loop = asyncio.get_running_loop()
        seconds = CLOSING_STEP_SECONDS if self._closing else STEP_SECONDS
        step = functools.partial(_within, seconds, self.steps, fn, self.engine, **kwargs)
        try:
            result = await loop.run_in_executor(thread or self._database, step)
        except Exception as exc:
            self._database_failed(exc)
            raise
        if self.database_trouble is not None:
            log.warning("the database answers again")
            self.database_trouble = None
        return result

    def _database_failed(self, exc: Exception) -> None:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        trouble = reason[0] if reason else type(exc).__name__
        if self.database_trouble is None:
            log.error("the database cannot be reached: %s", trouble)
        self.database_trouble = trouble

    async def _closing_step(self, fn, /, **kwargs) -> bool:
        """A hand-back while stopping; False if the database did not take it (the leases expire instead)."""
        try:
            await self._db(fn, **kwargs)
        except Exception:  # noqa: BLE001  logged once by _db; stopping goes on
            return False
        return True

    async def next_due_at(self, after: dt.datetime) -> dt.datetime | None:
        return await self._db(next_due_at, after=after, now=utcnow())

    # -------------------------------------------------- claiming

    async def dispatch_due(self) -> int:
        """Claim due deliveries while there is room, and start their attempts.

        One claim runs at a time; a call while one runs asks it to go round
        again. Claims run ahead of the caps: each webhook may hold up to
        CLAIM_AHEAD times its cap (twice, when many are busy), and the process
        twice its global cap.
        """
        started = self.in_flight
        if self._claiming is not None:
            self._claim_again = True
            return 0
        self._claiming = asyncio.current_task()
        try:
            self._claim_again = True
            while self._claim_again and not self._closing:
                self._claim_again = False
                await self._claim_once()
        finally:
            self._claiming = None
        return self.in_flight - started

    async def _claim_once(self) -> None:
        cap, per_webhook = self.settings.max_in_flight, self.settings.max_in_flight_per_webhook
        # Claims parked behind a webhook that may not start more now (at its own cap,
        # or held back by the slots kept for others) do not use up the claim-ahead:
        # other webhooks' work still gets claimed. Each webhook parks at most its room.
        busy = self._busy()
        parked = sum(len(q) for w, q in self._ready.items() if not self._may_start(w, busy))
        limit = 2 * cap - busy - (self.ready - parked)
        if limit <= 0:
            return
        held = collections.Counter(self._in_flight)
        held.update({w: len(q) for w, q in self._ready.items()})
        # Many busy webhooks keep the slots filled between them, and a short reach ahead
        # keeps their turns even; a few reach further, so a claim's round trips serve more.
        ahead = CLAIM_AHEAD if len(held) * per_webhook <= cap else 2
        now = utcnow()
        claimed_at = time.monotonic()
        taken: Taken = await self._db(
            claim_deliveries,
            owner=self.owner,
            lease_seconds=self.settings.lease_seconds,
            limit=limit,
            room={w: ahead * per_webhook - n for w, n in held.items()},
            per_webhook=ahead * per_webhook,
            turns=self._turns,  # moved on only here, on the loop, once the claim has returned
        )
        cpu = time.thread_time()
        self._turns.served(c.webhook_id for c in taken.claims)
        metrics.observe_claim(time.monotonic() - claimed_at, len(taken.claims))
        self.last_claim_at = now
        if self._closing:  # stopped while claiming: these go straight back
            if taken.claims:
                await self._db(release_claims, owner=self.owner, ids=[c.delivery_id for c in taken.claims])
            return
        send_by = claimed_at + self.settings.lease_seconds - self.settings.attempt_timeout - RECORD_MARGIN_SECONDS
        # The claim read its webhooks' state as it returned: the wait for a slot starts now.
        taken_at = time.monotonic()
        for claim in taken.claims:
            claim = dataclasses.replace(claim, send_by=send_by, claimed_at=taken_at)
            self._ready.setdefault(claim.webhook_id, collections.deque()).append(claim)
        if len(self._seen_live) > 10_000:  # only the last RECHECK_AFTER_SECONDS count
            self._seen_live = {w: t for w, t in self._seen_live.items() if taken_at - t <= RECHECK_AFTER_SECONDS}
        self._seen_live.update(dict.fromkeys(taken.live, taken_at))
        self._saturated = taken.saturated | (self._saturated - taken.checked)
        self._limited = taken.limited
        if taken.next_rate_at is not None:
            self._look_at(taken.next_rate_at)
        self.steps["claim on the loop cpu"] += time.thread_time() - cpu
        self._start_ready()
        if taken.limited and taken.claims and self.ready < cap:
            self._claim_again = True

    def _look_at(self, when: dt.datetime) -> None:
        """Claim again at `when` (a rate-limited webhook's next turn), unless a look is due sooner."""
        loop = asyncio.get_running_loop()
        at = loop.time() + max(0.001, (when - utcnow()).total_seconds())
        if self._rate_timer is not None and self._rate_timer.when() <= at:
            return
        if self._rate_timer is not None:
            self._rate_timer.cancel()

        def look():
            self._rate_timer = None
            if not self._closing:
                self._spawn(self.dispatch_due())

        self._rate_timer = loop.call_at(at, look)

    def _top_up(self, webhook_id: int) -> None:
        """After an attempt: claim more if this webhook, or the claim as a whole, may have more due."""
        if self._closing:
            return
        per_webhook = self.settings.max_in_flight_per_webhook
        low = len(self._ready.get(webhook_id, ())) < per_webhook
        if (webhook_id in self._saturated and low) or (
            self._limited and self.ready <= self.settings.max_in_flight // 2
        ):
            if self._claiming is None:
                self._spawn(self.dispatch_due())
            else:
                self._claim_again = True

    # -------------------------------------------------- starting attempts

    def _busy(self) -> int:
        """Global slots taken: attempts in flight, less the slow ones (up to the cap)."""
        busy = self.in_flight
        if busy < self.settings.max_in_flight:
            return busy
        since = time.monotonic() - SLOW_ATTEMPT_SECONDS
        slow = sum(1 for started in self._on_wire.values() if started < since)
        return busy - min(slow, self.settings.max_in_flight)

    def _may_start(self, webhook_id: int, busy: int) -> bool:
        cap, per_webhook = self.settings.max_in_flight, self.settings.max_in_flight_per_webhook
        mine = self._in_flight[webhook_id]
        if busy >= cap or mine >= per_webhook:
            return False
        # The last quarter of the slots is kept for webhooks with nothing on the
        # wire, so endpoints that hang until the timeout cannot take them all.
        return mine == 0 or cap - busy > cap // 4

    def _start_ready(self) -> None:
        """Start ready claims, round-robin across webhooks, while the caps allow."""
        busy = self._busy()
        blocked = collections.deque()
        while self._urgent:
            claim = self._urgent.popleft()
            if self._may_start(claim.webhook_id, busy):
                self._start(claim)
                busy += 1
            else:
                blocked.append(claim)
        self._urgent = blocked
        progress = True
        while progress and self._ready and busy < self.settings.max_in_flight:
            progress = False
            for webhook_id in list(self._ready):
                if busy >= self.settings.max_in_flight:
                    break  # every slot taken: no need to ask each webhook
                if not self._may_start(webhook_id, busy):
                    continue
                queue = self._ready.pop(webhook_id)
                self._start(queue.popleft())
                busy += 1
                progress = True
                if queue:  # to the back of the line: the next free slot goes to another webhook
                    self._ready[webhook_id] = queue
        if (self._ready or self._urgent) and busy >= self.settings.max_in_flight and self._nudge is None:
            # Every slot is taken: look again soon, when some attempts may have turned slow.
            def nudge():
                self._nudge = None
                if not self._closing:
                    self._start_ready()

            self._nudge = asyncio.get_running_loop().call_later(SLOW_ATTEMPT_SECONDS / 4, nudge)

    def _start(self, claim: Claim) -> None:
        self._in_flight[claim.webhook_id] += 1
        self._in_flight_total += 1
        self._spawn(self._attempt(claim))

    def _spawn(self, coroutine) -> None:
        # Hold a reference: the event loop keeps only weak ones to its tasks.
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sendable(self, claim: Claim) -> bool:
        """Whether a claim may be sent now: its lease has time left, and if it waited, it is still wanted.

        A webhook's claims decide in the order they were started, each after the one
        before it, so its deliveries start oldest first; their re-checks run together.
        """
        before = self._deciding.get(claim.webhook_id)
        decided = self._deciding[claim.webhook_id] = asyncio.get_running_loop().create_future()
        try:
            if time.monotonic() > claim.send_by:
                log.info("delivery %s: lease too close to its end to attempt; handing it back", claim.delivery_id)
                return False
            check = self._recheck_if_stale(claim)
            if before is not None and not before.done():
                await before
                check = check or self._recheck_if_stale(claim)
            return True if check is None else await check
        finally:
            # Set before the caller sends: the next claim's turn comes after this one's request has started.
            if not decided.done():  # (a successor cancelled while waiting cancels it)
                decided.set_result(None)
            if self._deciding.get(claim.webhook_id) is decided:
                del self._deciding[claim.webhook_id]

    def _recheck_if_stale(self, claim: Claim) -> asyncio.Future[bool] | None:
        """A claim that waited too long for its slot is checked again, in the next batch; a fresh one is not."""
        seen = max(claim.claimed_at, self._seen_live.get(claim.webhook_id, 0.0))
        if time.monotonic() - seen <= RECHECK_AFTER_SECONDS:
            return None
        future = self._recheck.get(claim.delivery_id)
        if future is None:
            future = self._recheck[claim.delivery_id] = asyncio.get_running_loop().create_future()
        if self._rechecking is None:
            self._rechecking = asyncio.create_task(self._recheck_loop())
        return future

    async def _recheck_loop(self) -> None:
        """Check waiting claims in batches: one query for all that are due to start."""
        try:
            while self._recheck:
                batch, self._recheck = self._recheck, {}
                try:
                    good = await self._db(still_sendable, owner=self.owner, ids=list(batch))
                except Exception:  # noqa: BLE001  unsure: don't send; the lease expires and it is retried
                    log.exception("checking %d waiting claims failed", len(batch))
                    good = set()
                for delivery_id, future in batch.items():
                    if not future.done():
                        future.set_result(delivery_id in good)
        finally:
            self._rechecking = None

    async def _attempt(self, claim: Claim) -> None:
        try:
            if await self._sendable(claim):
                await self._send(claim)
            else:
                self._resolve_waiter(claim.delivery_id, None)
                await self._db(release_claims, owner=self.owner, ids=[claim.delivery_id])
        finally:
            self._in_flight[claim.webhook_id] -= 1
            self._in_flight_total -= 1
            if self._in_flight[claim.webhook_id] <= 0:
                del self._in_flight[claim.webhook_id]
                if not self._in_flight:  # idle: said at once (otherwise the scheduler's look says it)
                    metrics.set_in_flight(0)
            if not self._closing:
                self._start_ready()  # a slot is free: the next ready claim takes it at once
                self._top_up(claim.webhook_id)

    async def _send(self, claim: Claim) -> None:
        cpu = time.thread_time()
        attempted_at = utcnow()
        headers = signature_headers(claim.secrets, claim.event_id, int(attempted_at.timestamp()), claim.body)
        if claim.headers:  # the merchant's own first: their names never clash with these (webhooks/rules.py)
            headers = {**claim.headers, **headers}
        self.steps["sign cpu"] += time.thread_time() - cpu
        self._on_wire[claim.delivery_id] = time.monotonic()
        try:
            result = await http.send(self._client, claim.url, claim.body, headers, self.settings)
        except Exception as exc:  # noqa: BLE001  a bug here must not lose the claim silently
            log.exception("attempt of delivery %s failed unexpectedly", claim.delivery_id)
            result = http.AttemptResult(error=f"internal error: {exc}")
        finally:
            self._on_wire.pop(claim.delivery_id, None)
        cpu = time.thread_time()
        request_headers = {"content-type": "application/json", "user-agent": http.USER_AGENT, **headers}
        self._finished.append(Finished(claim, request_headers, result, attempted_at))
        self.steps["sign cpu"] += time.thread_time() - cpu
        self._record_wakeup.set()

    # -------------------------------------------------- deliver now

    async def deliver(self, delivery_ids: list[int]) -> list[Outcome]:
        """Attempt these deliveries now, ahead of the queue but within the caps; wait for their outcomes.

        A delivery another dispatcher already holds is waited for, then read back.
        """
        loop = asyncio.get_running_loop()
        futures = {i: self._waiters.setdefault(i, loop.create_future()) for i in delivery_ids}
        claimed_at = time.monotonic()
        taken: Taken = await self._db(
            claim_deliveries,
            owner=self.owner,
            lease_seconds=self.settings.lease_seconds,
            limit=len(delivery_ids),
            ids=delivery_ids,
        )
        send_by = claimed_at + self.settings.lease_seconds - self.settings.attempt_timeout - RECORD_MARGIN_SECONDS
        # Fresh claims: checked at claim time, so `claimed_at` is when the wait for a slot starts.
        self._urgent.extend(dataclasses.replace(c, send_by=send_by, claimed_at=time.monotonic()) for c in taken.claims)
        self._start_ready()
        mine = {c.delivery_id for c in taken.claims}
        outcomes: dict[int, Outcome] = {}
        pending = dict(futures)
        # Waiting for a slot is bounded by the lease; the attempt itself by its timeout.
        deadline = loop.time() + self.settings.lease_seconds + 5
        while pending and loop.time() < deadline:
            await asyncio.wait(pending.values(), timeout=0.25)
            for delivery_id, future in list(pending.items()):
                if future.done():
                    pending.pop(delivery_id)
                    if future.result() is not None:
                        outcomes[delivery_id] = future.result()
                elif delivery_id not in mine:  # held by another dispatcher: read its record
                    outcome = await self._db(read_outcome, delivery_id=delivery_id)
                    if outcome is not None and outcome.attempt_number:
                        outcomes[delivery_id] = outcome
                        pending.pop(delivery_id)
        for delivery_id in delivery_ids:  # not sent by us, or still running: report where it stands
            self._waiters.pop(delivery_id, None)
            if delivery_id not in outcomes:
                outcome = await self._db(read_outcome, delivery_id=delivery_id)
                if outcome is not None:
                    outcomes[delivery_id] = outcome
        return [outcomes[i] for i in delivery_ids if i in outcomes]

    def _resolve_waiter(self, delivery_id: int, outcome: Outcome | None) -> None:
        waiter = self._waiters.pop(delivery_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(outcome)

    # -------------------------------------------------- recording

    async def _record_loop(self) -> None:
        gather = RECORD_GATHER_SECONDS
        while True:
            await self._record_wakeup.wait()
            # Gather a few more results: one transaction for many attempts is far cheaper.
            await asyncio.sleep(gather)
            self._record_wakeup.clear()
            busy = len(self._finished) > self.settings.max_in_flight_per_webhook
            gather = RECORD_GATHER_BUSY_SECONDS if busy else RECORD_GATHER_SECONDS
            await self._flush()

    async def _flush(self, tries: int = 3) -> bool:
        """Record the finished attempts; False if the database did not take them."""
        async with self._recording:
            return await self._record(tries)

    async def _record(self, tries: int) -> bool:
        batch, self._finished = self._finished, []
        if not batch:
            return True
        outcomes: list[Outcome] = []
        recorded = False
        for attempt in range(tries):
            try:
                started = time.monotonic()
                outcomes = await self._db(
                    record_attempts,
                    thread=self._records,
                    owner=self.owner,
                    finished=batch,
                    schedule=self.settings.retry_schedule,
                    now=utcnow(),
                    rng=self.rng,
                    after_record=self.hooks.after_record,
                )
                metrics.observe_record(time.monotonic() - started)
                recorded = True
                break
            except Exception:  # noqa: BLE001  the database is away: the leases expire and the attempts are made again
                log.exception("recording %d attempts failed (try %d of %d)", len(batch), attempt + 1, tries)
                if self._closing:  # a stop waits for this record: one try, as its own
                    break
                if attempt + 1 < tries:
                    await asyncio.sleep(0.5 * (attempt + 1))
        cpu = time.thread_time()
        self.attempts_recorded += len(outcomes)
        metrics.observe_attempts(
            [
                (metrics.outcome_of(o.http_code), o.duration_ms / 1000, o.status if o.next_attempt_at is None else None)
                for o in outcomes
            ]
        )
        for outcome in outcomes:
            self._resolve_waiter(outcome.delivery_id, outcome)
        if self.on_recorded is not None:
            self.on_recorded(outcomes)
        self.steps["record on the loop cpu"] += time.thread_time() - cpu
        return recorded


def _within(seconds: float, steps: collections.Counter, fn, /, *args, **kwargs):
    """`fn(*args, **kwargs)` on a database thread, as a step that must end within `seconds`; counted in `steps`."""
    cpu, wall = time.thread_time(), time.perf_counter()
    try:
        with deadline.within(seconds):
            return fn(*args, **kwargs)
    finally:
        steps[f"{fn.__name__} cpu"] += time.thread_time() - cpu
        steps[f"{fn.__name__} wall"] += time.perf_counter() - wall
