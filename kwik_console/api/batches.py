"""Publishes that arrive together share one write transaction (group commit).

Alone, each POST /events pays for a whole transaction: a connection, BEGIN and
COMMIT, the token's look-up and its rate-limit count, and on PostgreSQL a round
trip for each statement. Requests that reach the event loop while another
transaction runs wait for it to end (as they would for the database's writer),
then go together: each token is looked up once and counted once by its number
of requests, every use gets its audit entry in one INSERT, and the events are
published in one INSERT and their deliveries in another. Nothing waits for a
batch to fill: a request that finds no transaction running goes at once.

Each request keeps its own answer. A refused token, or one over its limit, gets
its refusal, and a refused event its 422, written as they would be alone
(auth.admit_together, events.publish_together). A count that goes past the
limit, or an error from the database before the commit, rolls the whole batch
back, and each of its requests runs in a transaction of its own, which answers
it as ever (`auth.transaction`). An error at the commit, which may have
committed, is each request's answer: running them again could publish twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref
from typing import Any

from sqlmodel import Session

from kwik_console.api import auth
from kwik_console.events import publishing as events
from kwik_console.store.db import get_engine
from kwik_console.store.writes import run_short_write, short_write

log = logging.getLogger(__name__)

# At most this many requests in one transaction: it holds SQLite's writer (or PostgreSQL's count of the
# token) for as long as their publishes take.
MOST = 64
# Transactions under way at once. On PostgreSQL a second one works while the first waits for its round
# trips; on SQLite the writer lock takes them one at a time anyway.
AT_ONCE = 2


@dataclasses.dataclass(eq=False)
class _Request:
    caller: auth.Caller
    event_type: str
    data: dict[str, Any]
    answer: asyncio.Future


@dataclasses.dataclass(eq=False)
class _Queue:
    waiting: list[_Request] = dataclasses.field(default_factory=list)
    draining: set[asyncio.Task] = dataclasses.field(default_factory=set)


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()


async def run(caller: auth.Caller, event_type: str, data: dict[str, Any]) -> events.Published | None:
    """The event published, in a transaction shared with the requests that wait with this one; None when the
    request must run alone. Raises the event's InvalidInput."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = _Queue()
    answer = loop.create_future()
    queue.waiting.append(_Request(caller, event_type, data, answer))
    if len(queue.draining) < AT_ONCE:
        queue.draining.add(loop.create_task(_drain(queue)))
    return await answer


async def _drain(queue: _Queue) -> None:

    batch: list[_Request] = []
    try:
        while queue.waiting:
            waiting = [request for request in queue.waiting if not request.answer.done()]  # not a client gone
            batch, queue.waiting = waiting[:MOST], waiting[MOST:]
            if not batch:
                continue
            attempt = _Attempt()
            try:
                answers = await run_short_write(lambda: _together(batch, attempt))
            except auth.Alone:
                answers = [None] * len(batch)
            except Exception as error:
                if attempt.committing:  # it may have committed: each request gets the error, as alone
                    answers = [error] * len(batch)
                else:  # rolled back: each request meets the error (or not) alone
                    log.warning("%d publishes sharing a transaction failed; each runs alone", len(batch), exc_info=True)
                    answers = [None] * len(batch)
            for request, answer in zip(batch, answers, strict=True):
                if request.answer.done():  # its client went away
                    continue
                if isinstance(answer, Exception):
                    request.answer.set_exception(answer)
                else:
                    request.answer.set_result(answer)
            batch = []
    finally:
        queue.draining.discard(asyncio.current_task())  # now, not in a callback: no request may find it full
        for request in batch:  # cancelled mid-transaction: whether it committed is unknown, so no answer
            request.answer.cancel()
        for request in queue.waiting:  # never tried
            if not request.answer.done():
                request.answer.set_result(None)
        queue.waiting = []


@dataclasses.dataclass(eq=False)
class _Attempt:
    committing: bool = False


def _together(batch: list[_Request], attempt: _Attempt) -> list[events.Published | Exception]:

    callers = [request.caller for request in batch]
    attempt.committing = False  # run_short_write may run it again, on a thread
    with short_write(get_engine()) as connection:
        checked = auth.admit_together(connection, callers)  # a refusal is its request's answer
        admitted = [i for i, c in enumerate(checked) if isinstance(c, auth.Caller)]
        with Session(bind=connection, expire_on_commit=False) as session:  # joins the transaction
            published = events.publish_together(session, [(batch[i].event_type, batch[i].data) for i in admitted])
        answers: list = list(checked)
        for i, answer in zip(admitted, published, strict=True):
            answers[i] = answer
        auth.count_together(connection, [callers[i] for i in admitted], [checked[i] for i in admitted])
        attempt.committing = True
    return answers
