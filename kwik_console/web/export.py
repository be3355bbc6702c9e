"""Export a webhook's event log, filtered as on screen, as CSV or JSON Lines: streamed, a page at a time.

GET /export/webhooks/{id}/events.csv?status=…&event_type=…&test=yes|no|all&q=…&since=…&until=…
GET /export/webhooks/{id}/events.jsonl?…  (each line also carries the event's payload)

The rows are read in keyset pages of EXPORT_PAGE deliveries, each in its own
short session, and written out as they come: memory stays flat whatever the
number of rows. Access is the event log's own rule (access.decide on
EventLogState.refresh), for the member the session cookie names.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from collections.abc import Iterator

from sqlmodel import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from kwik_console.core.clock import iso
from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.core.settings import get_settings
from kwik_console.events import deliveries
from kwik_console.store.db import session_scope
from kwik_console.store.tables import Event
from kwik_console.team import access, sessions

log = logging.getLogger(__name__)
EXPORT_PAGE = 500
# The event log's own rule: whoever may read the log may export it.
RULE = "kwik_console.ui.state.event_log.EventLogState.refresh"
CSV_COLUMNS = [
    "time",
    "event_id",
    "event",
    "status",
    "http_code",
    "test_event",
    "retry_timestamp",
    "retry_counter",
    "delivery_id",
]
ALL = "all"


def signed_in_from(request: Request) -> access.SignedIn | None:
    if get_settings().local_mode:
        return access.LOCAL_ADMIN
    return sessions.check_now(sessions.token_from_cookie_header(request.headers.get("cookie")))


def filters_from(params) -> dict:
    test = params.get("test", ALL)
    if test not in (ALL, "yes", "no"):
        raise InvalidInput({"test": "Test Event must be yes, no or all."})
    status, event_type = params.get("status", ALL), params.get("event_type", ALL)
    return {
        "status": None if status in (ALL, "") else status,
        "event_type": None if event_type in (ALL, "") else event_type,
        "test": None if test == ALL else test == "yes",
        "search": params.get("q", "") or None,
        "since": _instant(params, "since"),
        "until": _instant(params, "until"),
    }


def _instant(params, name: str) -> dt.datetime | None:
    """An ISO 8601 time (the console sends UTC with an offset); empty means no bound."""
    value = params.get(name, "")
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput({name: f"{name} must be an ISO 8601 date and time."}) from None


def _record(d) -> dict:
    return {
        "time": (iso(d.created_at) or ""),
        "event_id": d.event_id,
        "event": d.event_type,
        "status": d.status.capitalize(),
        "http_code": "" if d.last_http_code is None else d.last_http_code,
        "test_event": "yes" if d.test else "no",
        "retry_timestamp": (iso(d.retry_at) or ""),
        "retry_counter": d.retry_counter,
        "delivery_id": d.id,
    }


def pages(webhook_id: int, filters: dict) -> Iterator[list]:
    """Every matching delivery, newest first, EXPORT_PAGE at a time, each page from a fresh session."""
    before = None
    while True:
        with session_scope() as session:
            page = deliveries.list_deliveries(
                session=session, webhook_id=webhook_id, before_id=before, limit=EXPORT_PAGE, **filters
            )
            yield page.items
        if page.next_before_id is None:
            return
        before = page.next_before_id


def csv_lines(webhook_id: int, filters: dict) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS)
    writer.writeheader()
    for items in pages(webhook_id, filters):
        writer.writerows(_record(d) for d in items)
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()


def jsonl_lines(webhook_id: int, filters: dict) -> Iterator[str]:
    for items in pages(webhook_id, filters):
        with session_scope() as session:
            bodies = dict(
                session.exec(select(Event.id, Event.body).where(Event.id.in_([d.event_id for d in items]))).all()
            )
        yield "".join(
            json.dumps({**_record(d), "payload": json.loads(bodies[d.event_id])}) + "\n"
            for d in items
            if d.event_id in bodies
        )


async def export(request: Request) -> Response:
    signed_in = signed_in_from(request)
    decision = access.decide(RULE, signed_in)
    if decision == access.Decision.SIGN_IN:
        return PlainTextResponse("Sign in to export the event log.", status_code=401)
    if decision != access.Decision.ALLOW:
        return PlainTextResponse("Your role does not allow this.", status_code=403)
    webhook_id, fmt = request.path_params["webhook_id"], request.path_params["fmt"]
    if fmt not in ("csv", "jsonl"):
        return PlainTextResponse("Export as .csv or .jsonl.", status_code=404)
    try:
        filters = filters_from(request.query_params)
        with session_scope() as session:  # a bad filter or a missing webhook answers now, not mid-stream
            deliveries.list_deliveries(session=session, webhook_id=webhook_id, limit=1, **filters)
    except InvalidInput as exc:
        return PlainTextResponse(exc.message, status_code=400)
    except NotFound as exc:
        return PlainTextResponse(str(exc), status_code=404)
    lines = csv_lines if fmt == "csv" else jsonl_lines
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    name = f"kwik-webhook-{webhook_id}-events.{fmt}"
    log.info("%s exports the event log of webhook %s as %s", signed_in.email, webhook_id, fmt)
    return StreamingResponse(
        lines(webhook_id, filters),
        media_type=media,
        headers={"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"},
    )


def app() -> Starlette:
    return Starlette(routes=[Route("/export/webhooks/{webhook_id:int}/events.{fmt}", export, methods=["GET"])])
