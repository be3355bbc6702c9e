"""GET /api/v1/stream: published events as Server-Sent Events, for `kwik-console listen`; and the secret
listen signs its forwards with (/listen/secret), the same across its restarts.

The stream reads the event table in id order (event ids are time-ordered), so a
client that reconnects with `Last-Event-ID` resumes exactly after the last event
it saw, with no gap and no repeat, whichever replica it reaches. An event is sent
once it is `SETTLE` old: a publish whose id was made just before another's may
commit just after it, and waiting that long lets it land in its place first.
Test events (sent to one webhook by Test Webhook) are not streamed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse

from kwik_console.api.auth import CallerDep
from kwik_console.api.problems import invalid_input
from kwik_console.core.clock import utcnow
from kwik_console.events import catalog
from kwik_console.store.db import get_engine, session_scope
from kwik_console.store.tables import Event
from kwik_console.team import access
from kwik_console.webhooks import console_secrets

router = APIRouter(prefix=access.API_PREFIX)
SETTLE = dt.timedelta(seconds=1)
POLL_SECONDS = 0.2
HEARTBEAT_SECONDS = 15.0
BATCH = 200
_EVENT_ID = re.compile(r"^evt_[0-9a-z]{26}$")
EMPTY_START = "evt_" + "0" * 26  # below every event id: where a stream over an empty event table starts


class EventEnvelope(BaseModel):
    """The JSON body every attempt of an event sends, as webhooks receive it."""

    id: str = Field(description="The event id, evt_…; the webhook-id header of its deliveries.")
    type: str
    created_at: dt.datetime
    test: bool
    data: dict[str, Any] = Field(description="The event's data; see its type's schema in GET /event-types.")


class StreamEvent(BaseModel):
    """One Server-Sent Event of the stream, as its fields: `id:`, `event:` and `data:` lines."""

    id: str = Field(description="The event id: send it as Last-Event-ID to resume after it.")
    event: str = Field(description="The event type.")
    data: EventEnvelope


def openapi_components() -> dict[str, Any]:
    """The StreamEvent schema and what it refers to, for the stream's response to refer to."""
    schema = StreamEvent.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"StreamEvent": schema, **schema.pop("$defs", {})}


def _types(text: str | None) -> list[str] | None:
    if not text:
        return None
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = sorted({t for t in chosen if not catalog.is_event_type(t)})
    if unknown:
        raise invalid_input({"types": f"Unknown event type: {', '.join(unknown)}."})
    return chosen or None


def _start_after(now: dt.datetime) -> str:
    """Where a fresh stream starts: after the newest event already settled, so it sends only what comes next."""

    with get_engine().connect() as connection:
        newest = connection.execute(sa.select(sa.func.max(Event.id)).where(Event.created_at <= now - SETTLE)).scalar()
    return newest or EMPTY_START


def _batch(after: str, types: list[str] | None) -> list[tuple[str, str, str]]:

    query = (
        sa.select(Event.id, Event.type, Event.body)
        .where(Event.id > after, Event.test.is_(False), Event.created_at <= utcnow() - SETTLE)
        .order_by(Event.id)
        .limit(BATCH)
    )
    if types:
        query = query.where(Event.type.in_(types))
    with get_engine().connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


@router.get(
    "/stream",
    tags=["events"],
    summary="Published events as Server-Sent Events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`text/event-stream`: each event of the stream is a StreamEvent: `id` the event id, "
            "`event` its type, `data` the JSON envelope webhooks receive (an object, on one line).",
            "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/StreamEvent"}}},
        }
    },
)
async def stream(
    caller: CallerDep,
    types: Annotated[
        str | None, Query(max_length=2000, description="Event types, comma-separated; all if omitted.")
    ] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=40, description="Resume after this event id.")
    ] = None,
) -> StreamingResponse:
    chosen = _types(types)
    if last_event_id is not None and not _EVENT_ID.match(last_event_id):
        raise invalid_input({"Last-Event-ID": "Last-Event-ID must be an event id, like evt_01j…."})
    after = last_event_id or await run_in_threadpool(_start_after, utcnow())

    async def events():
        nonlocal after
        # The start position as an id: a client cut off before the first event resumes from here, not from "now".
        yield f"id: {after}\n: kwik stream\n\n"
        quiet = 0.0
        while True:  # Starlette ends the response, and this, when the client goes: a second reader would race it
            rows = await run_in_threadpool(_batch, after, chosen)
            for event_id, event_type, body in rows:
                yield f"id: {event_id}\nevent: {event_type}\ndata: {body}\n\n"
                after = event_id
            if rows:
                quiet = 0.0
                continue
            quiet += POLL_SECONDS
            if quiet >= HEARTBEAT_SECONDS:  # keeps proxies from closing an idle stream
                quiet = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


# ---------------------------------------------------------------- listen's signing secret


class ListenSecretOut(BaseModel):
    secret: str = Field(
        description="whsec_ + base64 of 32 bytes: what `kwik-console listen` signs each forward with, "
        "the same across its restarts until rotated."
    )


@router.get(
    "/listen/secret",
    response_model=ListenSecretOut,
    tags=["events"],
    summary="The signing secret of `kwik-console listen` (made on first use)",
)
def get_listen_secret(caller: CallerDep) -> ListenSecretOut:
    with session_scope() as session:
        secret = console_secrets.reveal(session=session, actor=caller.actor, client_address=caller.address)
    return ListenSecretOut(secret=secret)


@router.post(
    "/listen/secret/rotate",
    response_model=ListenSecretOut,
    tags=["events"],
    summary="A new signing secret for `kwik-console listen`; the old one stops at once",
)
def rotate_listen_secret(caller: CallerDep) -> ListenSecretOut:
    with session_scope() as session:
        secret = console_secrets.rotate(session=session, actor=caller.actor, client_address=caller.address)
    return ListenSecretOut(secret=secret)
