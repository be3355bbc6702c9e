"""Publishing: one event, stored once, fanned out into a delivery per subscribed Live webhook."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, insert, literal
from sqlmodel import Session, col, select

from kwik_console.core import doorbell
from kwik_console.core.clock import iso_millis, utcnow
from kwik_console.core.errors import InvalidInput, NotFound, check_id
from kwik_console.core.json_scan import INT_DIGITS_MAX
from kwik_console.events import catalog
from kwik_console.store.db import get_engine, session_scope
from kwik_console.store.db_clock import due_at
from kwik_console.store.tables import (
    Delivery,
    DeliveryStatus,
    Event,
    Subscription,
    UTCDateTime,
    Webhook,
    WebhookStatus,
)
from kwik_console.store.writes import one_writer

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32

# Limits on what one event may carry: deeper nesting or a bigger body is a
# mistake, not a payment, and receivers' JSON parsers have limits too.
DATA_MAX_DEPTH = 32
BODY_MAX_BYTES = 256 * 1024
DATA_MAX_DEPTH_MESSAGE = f"Event data must be nested at most {DATA_MAX_DEPTH} levels deep."
# JSON has no limit, but Python reads and writes whole numbers of at most this many digits, as do many receivers.
DATA_NUMBER_MESSAGE = f"Event data must not hold a whole number of more than {INT_DIGITS_MAX:,} digits."
_TOO_LONG = 10**INT_DIGITS_MAX


def new_event_id() -> str:
    """`evt_` + 26 characters; time-ordered, like a ULID."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_ALPHABET[index])
    return "evt_" + "".join(reversed(chars))


@dataclasses.dataclass(frozen=True)
class Published:
    event: Event
    delivery_ids: list[int]


def envelope(*, event_id: str, event_type: str, created_at, test: bool, data: dict[str, Any]) -> str:
    """The JSON body every attempt of this event sends, byte for byte.

    Strictly JSON: NaN and Infinity raise ValueError rather than being written as invalid JSON.
    """
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": iso_millis(created_at),
            "test": test,
            "data": data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def shape_error(data: Any) -> str | None:
    """Why `data` cannot be an event's data, or None: the depth limit and JSON's own number rules.

    Walks without recursion, so any depth is answered cleanly.
    """
    if not isinstance(data, dict):
        return "Event data must be a JSON object."
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > DATA_MAX_DEPTH:
            return DATA_MAX_DEPTH_MESSAGE
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, (dict, list, tuple)):
                stack.append((child, depth + 1))
            elif isinstance(child, float) and not math.isfinite(child):
                return "Event data must not contain NaN or Infinity: JSON has no such numbers."
            elif isinstance(child, int) and abs(child) >= _TOO_LONG:
                return DATA_NUMBER_MESSAGE
    return None


def _body(*, event_id: str, event_type: str, created_at, test: bool, data: dict[str, Any]) -> str:
    """The envelope, or InvalidInput naming what in `data` (checked by shape_error) still cannot be sent."""
    try:
        body = envelope(event_id=event_id, event_type=event_type, created_at=created_at, test=test, data=data)
        size = len(body.encode("utf-8"))
    except UnicodeEncodeError:
        error = "Event data must be valid Unicode text: it holds half of a UTF-16 surrogate pair (like \\ud800)."
    except (TypeError, ValueError):  # a value JSON has no form for, or an integer too long to print
        error = "Event data must hold only JSON values: objects, arrays, text, numbers, true, false and null."
    else:
        if size <= BODY_MAX_BYTES:
            return body
        error = f"Event data is too large: the event is {size:,} bytes; the limit is {BODY_MAX_BYTES:,}."
    raise InvalidInput({"data": error})


def publish(
    event_type: str,
    data: dict[str, Any],
    *,
    test: bool = False,
    webhook_id: int | None = None,
    session: Session | None = None,
    wake: bool = True,
) -> Published:
    """Store the event and its deliveries in one transaction, then wake the dispatcher.

    A test event goes to `webhook_id` only; otherwise every Live or Paused
    webhook subscribed to `event_type` gets a delivery (a Paused one's waits).
    """
    if session is None:
        with one_writer(get_engine()), session_scope() as own:
            published = _publish(own, event_type, data, test=test, webhook_id=webhook_id)
    else:
        published = _publish(session, event_type, data, test=test, webhook_id=webhook_id)
        session.commit()
    if wake and published.delivery_ids:
        doorbell.ring()
    return published


def _check(event_type: str, data, *, test: bool, webhook_id: int | None) -> None:
    errors = {}
    if not catalog.is_event_type(event_type):
        errors["type"] = f"Unknown event type {event_type!r}; see `kwik-console events types`."
    if data_error := shape_error(data):
        errors["data"] = data_error
    if test and webhook_id is None:
        errors["webhook"] = "A test event needs the webhook to send it to."
    if errors:
        raise InvalidInput(errors)


def publish_together(session: Session, events: list[tuple[str, dict[str, Any]]]) -> list[Published | InvalidInput]:
    """`publish` for several (type, data) in the session's transaction (api/batches.py): each event as it would
    be published alone, in one INSERT of the events and one of all their deliveries. An event that is refused
    gets its InvalidInput in its place, and the others are published. The caller commits, and wakes the
    dispatcher."""
    now = utcnow()
    out: list[Event | InvalidInput] = []
    for event_type, data in events:
        try:
            _check(event_type, data, test=False, webhook_id=None)
            event_id = new_event_id()
            out.append(
                Event(
                    id=event_id,
                    type=event_type,
                    test=False,
                    created_at=now,
                    body=_body(event_id=event_id, event_type=event_type, created_at=now, test=False, data=data),
                )
            )
        except InvalidInput as refused:
            out.append(refused)
    published = [e for e in out if isinstance(e, Event)]
    if not published:
        return out
    conn = session.connection()
    conn.execute(
        _INSERT_EVENT,
        [{"id": e.id, "type": e.type, "test": False, "body": e.body, "created_at": now} for e in published],
    )
    made: dict[str, list[int]] = {e.id: [] for e in published}
    for delivery_id, event_id in conn.execute(_FAN_OUT_TOGETHER, {"event_ids": list(made), "now": now}):
        made[event_id].append(delivery_id)
    if any(made.values()):
        doorbell.ring_on_commit(conn)
    return [Published(e, sorted(made[e.id])) if isinstance(e, Event) else e for e in out]


def _publish(session: Session, event_type: str, data, *, test: bool, webhook_id: int | None) -> Published:
    _check(event_type, data, test=test, webhook_id=webhook_id)
    if webhook_id is not None:
        webhook = session.get(Webhook, check_id("Webhook", webhook_id))
        if webhook is None:
            raise NotFound(f"Webhook {webhook_id} does not exist.")
        if webhook.status != WebhookStatus.LIVE:
            label = WebhookStatus(webhook.status).label
            raise InvalidInput({"webhook": f"Webhook {webhook.name!r} is {label}: set its Status to Live first."})

    now = utcnow()
    event = Event(id=new_event_id(), type=event_type, test=test, created_at=now, body="")
    event.body = _body(event_id=event.id, event_type=event_type, created_at=now, test=test, data=data)
    # Prebuilt Core statements on the session's connection: publishing is the hot path.
    conn = session.connection()
    conn.execute(
        _INSERT_EVENT, {"id": event.id, "type": event_type, "test": test, "body": event.body, "created_at": now}
    )
    if webhook_id is None:
        fan_out = _FAN_OUT_TO_SUBSCRIBERS
    else:
        fan_out = _FAN_OUT_TEST if test else _FAN_OUT_TO_ONE
    inserted = conn.execute(
        fan_out, {"event_id": event.id, "event_type": event_type, "test": test, "now": now, "webhook_id": webhook_id}
    )
    delivery_ids = sorted(inserted.scalars())
    if delivery_ids:
        doorbell.ring_on_commit(conn)
    return Published(event=event, delivery_ids=delivery_ids)


def publish_notice(conn, event_type: str, data: dict[str, Any], *, about_webhook_id: int | None) -> list[int]:
    """Publish an operational event on `conn`, in the caller's transaction.

    It goes to the operational webhook (subscribed to its type), never to the
    webhook it is about. Returns the new deliveries' ids.
    """
    if not catalog.is_operational_type(event_type):
        raise ValueError(f"{event_type!r} is not an operational event type")
    now = utcnow()
    event_id = new_event_id()
    body = _body(event_id=event_id, event_type=event_type, created_at=now, test=False, data=data)
    conn.execute(_INSERT_EVENT, {"id": event_id, "type": event_type, "test": False, "body": body, "created_at": now})
    inserted = conn.execute(
        _FAN_OUT_NOTICE,
        {"event_id": event_id, "event_type": event_type, "test": False, "now": now, "about": about_webhook_id or 0},
    )
    delivery_ids = sorted(inserted.scalars())
    if delivery_ids:
        doorbell.ring_on_commit(conn)
    return delivery_ids


# The columns a fan-out fills, in the order of its SELECT.
_FAN_OUT_COLUMNS = [
    "webhook_id",
    "event_id",
    "event_type",
    "test",
    "status",
    "attempt_count",
    "next_attempt_at",
    "created_at",
    "updated_at",
]


def _fan_out(targets) -> sa.Insert:
    """INSERT ... SELECT: one statement makes a delivery for every target webhook, however many."""
    when = UTCDateTime()
    rows = targets.subquery()
    values = select(
        rows.c[0],
        bindparam("event_id"),
        bindparam("event_type"),
        bindparam("test", type_=sa.Boolean()),
        literal(DeliveryStatus.PENDING.value),
        literal(0),
        due_at(bindparam("now", type_=when)),
        bindparam("now", type_=when),
        bindparam("now", type_=when),
    )
    return insert(Delivery).from_select(_FAN_OUT_COLUMNS, values).returning(Delivery.id)


_INSERT_EVENT = insert(Event)
# Who gets a delivery of a real event. Paused webhooks get theirs too: they wait, and go out on resume.
_SUBSCRIBED = Webhook.status.in_([WebhookStatus.LIVE.value, WebhookStatus.PAUSED.value])
# "All events" webhooks have no subscription rows: they match every type published here, which is always a
# merchant's type (`_check`); operational notices go out by _FAN_OUT_NOTICE alone, so never to them.
_ALL_EVENTS = col(Webhook.all_events) == sa.true()  # the form ix_webhook_all_events is made for
_FAN_OUT_TO_SUBSCRIBERS = _fan_out(
    select(Subscription.webhook_id)
    .join(Webhook, col(Webhook.id) == Subscription.webhook_id)
    .where(Subscription.event_type == bindparam("event_type"), _SUBSCRIBED)
    .union_all(select(Webhook.id).where(_ALL_EVENTS, _SUBSCRIBED))
)


def _fan_out_together() -> sa.Insert:
    """_FAN_OUT_TO_SUBSCRIBERS for several events at once: a delivery for each event's subscribers."""
    when = UTCDateTime()

    def columns(webhook_id):
        return (
            webhook_id,
            Event.id,
            Event.type,
            Event.test,
            literal(DeliveryStatus.PENDING.value),
            literal(0),
            due_at(bindparam("now", type_=when)),  # due at once, by the clock the claims read
            bindparam("now", type_=when),
            bindparam("now", type_=when),
        )

    published = col(Event.id).in_(bindparam("event_ids", expanding=True))
    chosen = (
        select(*columns(Subscription.webhook_id))
        .select_from(Event)
        .join(Subscription, Subscription.event_type == Event.type)
        .join(Webhook, col(Webhook.id) == Subscription.webhook_id)
        .where(published, _SUBSCRIBED)
    )
    everything = (
        select(*columns(Webhook.id))
        .select_from(Event)
        .join(Webhook, sa.true())
        .where(published, _ALL_EVENTS, _SUBSCRIBED)
    )
    values = chosen.union_all(everything)
    return insert(Delivery).from_select(_FAN_OUT_COLUMNS, values).returning(Delivery.id, Delivery.event_id)


_FAN_OUT_TOGETHER = _fan_out_together()
# A test goes to its one webhook, subscribed or not; a real event to one webhook needs the subscription.
_FAN_OUT_TEST = _fan_out(select(bindparam("webhook_id", type_=sa.Integer())))
_FAN_OUT_TO_ONE = _fan_out(
    select(Subscription.webhook_id)
    .where(Subscription.webhook_id == bindparam("webhook_id"), Subscription.event_type == bindparam("event_type"))
    .union_all(select(Webhook.id).where(Webhook.id == bindparam("webhook_id"), _ALL_EVENTS))
)
_FAN_OUT_NOTICE = _fan_out(
    select(Subscription.webhook_id)
    .join(Webhook, col(Webhook.id) == Subscription.webhook_id)
    .where(
        Subscription.event_type == bindparam("event_type"),
        Webhook.status.in_([WebhookStatus.LIVE.value, WebhookStatus.PAUSED.value]),
        col(Webhook.operational).is_(True),
        Webhook.id != bindparam("about", type_=sa.Integer()),
    )
)
