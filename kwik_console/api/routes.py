"""The resources of /api/v1: parse, call the services, shape the answer. No rules live here."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request, Response
from pydantic import ValidationError
from sqlmodel import Session
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from kwik_console.api import auth, batches, idempotency
from kwik_console.api.auth import CallerDep
from kwik_console.api.problems import invalid_input
from kwik_console.api.schemas import (
    DateText,
    DeliveryDetailOut,
    DeliveryOut,
    DeliveryPage,
    EventPublish,
    EventPublished,
    EventTypeList,
    EventTypeOut,
    SecretOut,
    TestOutcome,
    TestRequest,
    WebhookCreate,
    WebhookOut,
    WebhookPage,
    WebhookUpdate,
    webhook_out,
)
from kwik_console.core.errors import InvalidInput
from kwik_console.delivery import scheduler
from kwik_console.delivery.test_webhook import send_test
from kwik_console.events import catalog, deliveries
from kwik_console.events import publishing as events
from kwik_console.events import schemas as event_schemas
from kwik_console.store.db import session_scope
from kwik_console.store.writes import run_short_write
from kwik_console.team import access
from kwik_console.webhooks import rules
from kwik_console.webhooks import service as webhooks

router = APIRouter(prefix=access.API_PREFIX)
# Page sizes: the services' own bounds (webhooks.list_webhooks, deliveries.list_deliveries), shown in the schema.
WEBHOOKS_MAX_LIMIT = 100
DELIVERIES_MAX_LIMIT = 500


# ---------------------------------------------------------------- cursors: opaque to callers


def _cursor(kind: str, *values: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{'.'.join(map(str, values))}".encode()).decode().rstrip("=")


def _from_cursor(kind: str, cursor: str | None, parts: int = 1) -> list[int] | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        found, _, value = text.partition(":")
        numbers = value.split(".")
        if found == kind and len(numbers) == parts and all(n.isdigit() and len(n) <= 18 for n in numbers):
            return [int(n) for n in numbers]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise invalid_input({"cursor": "This cursor is not one this API gave out for this list; start without one."})


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def _delivery_before(cursor: str | None) -> int | None:
    found = _from_cursor("d", cursor)
    return found[0] if found else None


def _webhook_cursor(keyset: tuple[dt.datetime, int]) -> str:
    created_at, webhook_id = keyset  # exact to the microsecond: integers, never a float
    return _cursor("w", (created_at.replace(tzinfo=dt.UTC) - _EPOCH) // _MICROSECOND, webhook_id)


def _webhook_after(cursor: str | None) -> tuple[dt.datetime, int] | None:
    found = _from_cursor("w", cursor, parts=2)
    if found is None:
        return None
    micros, webhook_id = found
    try:
        return _EPOCH + micros * _MICROSECOND, webhook_id
    except OverflowError:
        raise invalid_input(
            {"cursor": "This cursor is not one this API gave out for this list; start without one."}
        ) from None


# ---------------------------------------------------------------- event types


@router.get(
    "/event-types",
    response_model=EventTypeList,
    tags=["event types"],
    summary="The event catalogue, with samples and JSON Schemas",
)
def list_event_types(caller: CallerDep) -> EventTypeList:
    return EventTypeList(
        items=[
            EventTypeOut(
                type=t.name,
                group=t.resource,
                description=t.description,
                sample=t.sample,
                schema=event_schemas.data_schema(t.name),
            )
            for t in catalog.EVENT_TYPES.values()
        ]
    )


# ---------------------------------------------------------------- webhooks


@router.get("/webhooks", response_model=WebhookPage, tags=["webhooks"], summary="Webhooks, newest first")
def list_webhooks(
    caller: CallerDep,
    search: Annotated[str | None, Query(max_length=2200, description="Matches name or URL, ignoring case.")] = None,
    limit: Annotated[int, Query(ge=1, le=WEBHOOKS_MAX_LIMIT)] = webhooks.PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> WebhookPage:
    after = _webhook_after(cursor)
    with session_scope() as session:
        try:
            result = webhooks.list_webhooks(session=session, search=search, per_page=limit, after=after)
        except InvalidInput as exc:
            raise invalid_input({"limit" if k == "per_page" else k: v for k, v in exc.errors.items()}) from None
        shown = auth.sees_secrets(caller)
        items = [webhook_out(session, w, sees_secrets=shown) for w in result.items]
    return WebhookPage(
        items=items, total=result.total, next_cursor=_webhook_cursor(result.next_after) if result.next_after else None
    )


@router.post("/webhooks", response_model=WebhookOut, status_code=201, tags=["webhooks"], summary="Create a webhook")
def create_webhook(caller: CallerDep, body: WebhookCreate) -> WebhookOut:
    data = rules.WebhookInput(
        name=body.name,
        url=body.url,
        events=body.events,
        status=body.status,
        max_per_second=body.max_per_second,
        headers=body.headers,
    )
    with session_scope() as session:
        out = webhook_out(
            session,
            webhooks.create_webhook(session=session, data=data, actor=caller.actor, client_address=caller.address),
            sees_secrets=auth.sees_secrets(caller),
        )
    return out


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut, tags=["webhooks"], summary="One webhook")
def get_webhook(caller: CallerDep, webhook_id: int) -> WebhookOut:
    with session_scope() as session:
        webhook = webhooks.get_webhook(session=session, webhook_id=webhook_id)
        return webhook_out(session, webhook, sees_secrets=auth.sees_secrets(caller))


@router.patch(
    "/webhooks/{webhook_id}",
    response_model=WebhookOut,
    tags=["webhooks"],
    summary="Change a webhook: only the fields sent",
)
def update_webhook(caller: CallerDep, webhook_id: int, body: WebhookUpdate) -> WebhookOut:
    # max_per_second: null removes the limit ("" to the service), absent leaves it (None).
    rate = (
        body.max_per_second
        if body.max_per_second is not None
        else ("" if "max_per_second" in body.model_fields_set else None)
    )
    # headers: null removes them all ({} to the service), absent leaves them (None).
    headers = body.headers if body.headers is not None else ({} if "headers" in body.model_fields_set else None)
    data = rules.WebhookInput(
        name=body.name, url=body.url, events=body.events, status=body.status, max_per_second=rate, headers=headers
    )
    with session_scope() as session:
        out = webhook_out(
            session,
            webhooks.update_webhook(
                session=session, webhook_id=webhook_id, data=data, actor=caller.actor, client_address=caller.address
            ),
            sees_secrets=auth.sees_secrets(caller),
        )
    return out


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    response_class=Response,
    tags=["webhooks"],
    summary="Delete a webhook, its deliveries and scheduled retries",
)
def delete_webhook(caller: CallerDep, webhook_id: int) -> Response:
    with session_scope() as session:
        webhooks.delete_webhook(
            session=session, webhook_id=webhook_id, actor=caller.actor, client_address=caller.address
        )
    return Response(status_code=204)


@router.get(
    "/webhooks/{webhook_id}/secret", response_model=SecretOut, tags=["webhooks"], summary="Reveal the signing secret"
)
def get_secret(caller: CallerDep, webhook_id: int) -> SecretOut:
    with session_scope() as session:
        webhook = webhooks.reveal_secret(
            session=session, webhook_id=webhook_id, actor=caller.actor, client_address=caller.address
        )
        still_signing = webhooks.previous_secrets(session=session, webhook_id=webhook_id)
        return SecretOut(secret=webhook.secret, previous_secrets_expire_at=[p.expires_at for p in still_signing])


@router.post(
    "/webhooks/{webhook_id}/secret/rotate",
    response_model=SecretOut,
    tags=["webhooks"],
    summary="A new signing secret; the replaced one keeps signing for 24 h",
)
def rotate_secret(caller: CallerDep, webhook_id: int) -> SecretOut:
    with session_scope() as session:
        webhook = webhooks.rotate_secret(
            session=session, webhook_id=webhook_id, actor=caller.actor, client_address=caller.address
        )
        still_signing = webhooks.previous_secrets(session=session, webhook_id=webhook_id)
        return SecretOut(secret=webhook.secret, previous_secrets_expire_at=[p.expires_at for p in still_signing])


@router.post(
    "/webhooks/{webhook_id}/test",
    response_model=TestOutcome,
    tags=["webhooks"],
    summary="Send a test event to this webhook now; answers with the outcome",
)
async def test_webhook(caller: CallerDep, webhook_id: int, body: TestRequest) -> TestOutcome:
    if not catalog.is_event_type(body.event_type):
        raise invalid_input({"event_type": f"Unknown event type {body.event_type!r}; see GET /api/v1/event-types."})
    published, outcome = await send_test(
        webhook_id=webhook_id,
        event_type=body.event_type,
        data=body.data,
        actor=caller.actor,
        client_address=caller.address,
    )
    return TestOutcome(
        event_id=published.event.id,
        delivery_id=outcome.delivery_id,
        status=outcome.status,
        http_code=outcome.http_code,
        duration_ms=outcome.duration_ms,
        response_body=outcome.response_body[:2000],
        error=outcome.error,
        retry_at=outcome.next_attempt_at,
    )


# ---------------------------------------------------------------- deliveries


SINCE_HELP = "Only deliveries created at or after this time (ISO 8601; without an offset, UTC)."
UNTIL_HELP = "Only deliveries created at or before this time (ISO 8601; without an offset, UTC); not before `since`."


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    tags=["deliveries"],
    summary="A webhook's event log, newest first",
)
def list_deliveries(
    caller: CallerDep,
    webhook_id: int,
    status: Annotated[str | None, Query(max_length=20, description="pending, success, retrying or failure")] = None,
    event_type: Annotated[str | None, Query(max_length=64)] = None,
    test: Annotated[bool | None, Query(description="Only test events (true) or only real ones (false).")] = None,
    limit: Annotated[int, Query(ge=1, le=DELIVERIES_MAX_LIMIT)] = deliveries.PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[DateText | None, Query(description=SINCE_HELP)] = None,
    until: Annotated[DateText | None, Query(description=UNTIL_HELP)] = None,
) -> DeliveryPage:
    with session_scope() as session:
        page = deliveries.list_deliveries(
            session=session,
            webhook_id=webhook_id,
            status=status,
            event_type=event_type,
            test=test,
            before_id=_delivery_before(cursor),
            limit=limit,
            since=since,
            until=until,
        )
    return DeliveryPage(
        items=[DeliveryOut.of(d) for d in page.items],
        next_cursor=_cursor("d", page.next_before_id) if page.next_before_id else None,
    )


@router.get(
    "/deliveries/{delivery_id}",
    response_model=DeliveryDetailOut,
    tags=["deliveries"],
    summary="A delivery with its payload and every attempt",
)
def get_delivery(caller: CallerDep, delivery_id: int) -> DeliveryDetailOut:
    with session_scope() as session:
        detail = deliveries.get_delivery(session=session, delivery_id=delivery_id)
        return DeliveryDetailOut.of_detail(detail, sees_secrets=auth.sees_secrets(caller))


# ---------------------------------------------------------------- publishing


def _published(p: events.Published) -> dict:
    return EventPublished(
        id=p.event.id, type=p.event.type, created_at=p.event.created_at, deliveries=len(p.delivery_ids)
    ).model_dump(mode="json")


@router.post(
    "/events",
    response_model=EventPublished,
    status_code=202,
    tags=["events"],
    summary="Publish an event: a delivery to every Live webhook subscribed to its type",
    responses={
        202: {
            "headers": {
                "Idempotent-Replayed": {
                    "description": "true when this is the stored result of an earlier request with the same key",
                    "schema": {"type": "string"},
                }
            }
        }
    },
)
@auth.checks_in_own_transaction  # one transaction for the token's checks and the publish
async def publish_event(
    caller: CallerDep,
    request: Request,
    body: Annotated[EventPublish, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=idempotency.HEADER,
            max_length=idempotency.KEY_MAX,
            description="Any unique string, such as a UUID: a repeat "
            "within 24 h returns the first result and "
            "publishes nothing.",
        ),
    ] = None,
) -> JSONResponse:
    return await _publish(caller, request, body, idempotency_key)


async def _publish(
    caller: auth.Caller, request: Request, body: EventPublish, idempotency_key: str | None
) -> JSONResponse:
    """POST /events once its parameters are parsed, by FastAPI (`publish_event`) or by `publish_directly`."""

    def publish(session) -> tuple[int, dict]:
        return 202, _published(events.publish(body.type, body.data, session=session, wake=False))

    def in_transaction() -> idempotency.Result:
        with auth.transaction(caller) as (admitted, connection):
            if idempotency_key is None:
                with Session(bind=connection, expire_on_commit=False) as session:
                    return idempotency.Result(*publish(session), replayed=False)
            return idempotency.run_once(
                connection,
                owner=admitted.owner,
                key=idempotency.check_key(idempotency_key),
                fingerprint=idempotency.request_hash(request.method, request.url.path, body.model_dump(mode="json")),
                action=publish,
            )

    if idempotency_key is None and (shared := await batches.run(caller, body.type, body.data)) is not None:
        result = idempotency.Result(202, _published(shared), replayed=False)
    else:
        result = await run_short_write(in_transaction)
    if not result.replayed and result.body.get("deliveries"):
        scheduler.wake()
    if idempotency_key is None:
        return JSONResponse(result.body, status_code=result.status_code)
    return JSONResponse(
        result.body,
        status_code=result.status_code,
        headers={"Idempotent-Replayed": "true" if result.replayed else "false"},
    )


PUBLISH_PATH = f"{access.API_PREFIX}/events"


async def publish_directly(scope: Scope, body: bytes, receive: Receive, send: Send) -> bool:
    """POST /events without FastAPI's routing, parameter solving and the middleware inside `_Gate`: about 40 %
    of the API worker's GIL time per publish (bench/api.py under py-spy --gil). Only for a request that FastAPI would
    hand to `publish_event` as it is, its parameters parsed; anything else returns False untouched, for
    FastAPI to answer (and word its errors) as ever. The same guard, service and answer as the route;
    errors go to the app's own exception handlers. tests/test_api_access.py sends requests both ways."""
    headers = Headers(scope=scope)
    idempotency_key = headers.get(idempotency.HEADER)
    if idempotency_key is not None and len(idempotency_key) > idempotency.KEY_MAX:
        return False
    try:
        parsed = EventPublish.model_validate(json.loads(body))  # as FastAPI: json.loads, then the model
    except (ValueError, ValidationError):  # bad JSON (or none), or a body the model refuses
        return False
    scope["route"], scope["endpoint"] = _PUBLISH_ROUTE, publish_event  # as FastAPI's match sets; the guard reads it
    request = Request(scope, receive)
    try:
        response = await _publish(await auth.authorize(request), request, parsed, idempotency_key)
    except Exception as exc:
        handler = next((h for c in type(exc).__mro__ if (h := scope["app"].exception_handlers.get(c))), None)
        if handler is None:
            raise
        response = await handler(request, exc)
    await response(scope, receive, send)
    return True


# Routes are matched in order, and POST /events is the one called most: it goes first.
router.routes.insert(0, router.routes.pop(next(i for i, r in enumerate(router.routes) if r.endpoint is publish_event)))
_PUBLISH_ROUTE = router.routes[0]
