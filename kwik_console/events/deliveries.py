"""Reading the event log: a webhook's deliveries, newest first, and one delivery's attempts."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlmodel import Session, col, select

from kwik_console.core.errors import ID_MAX, InvalidInput, NotFound, check_id
from kwik_console.events import catalog
from kwik_console.events.search import restrict as restrict_to_search
from kwik_console.store.tables import Attempt, Delivery, DeliveryStatus, Event, Webhook

PAGE_SIZE = 50


@dataclasses.dataclass(frozen=True)
class DeliveryPage:
    items: list[Delivery]
    # Pass as `before_id` for the next page; None on the last page.
    next_before_id: int | None


@dataclasses.dataclass(frozen=True)
class DeliveryDetail:
    delivery: Delivery
    event: Event
    webhook: Webhook
    attempts: list[Attempt]


def parse_status(status: str | None) -> str | None:
    if status is None or status == "":
        return None
    value = status.strip().lower()
    if value not in {s.value for s in DeliveryStatus}:
        raise InvalidInput({"status": "Status must be one of Pending, Success, Retrying or Failure."})
    return value


def check_window(since: dt.datetime | None, until: dt.datetime | None) -> None:
    """A date range reads both ends as instants (a time without an offset is UTC); `until` may not precede `since`."""
    if since is not None and until is not None and _utc(until) < _utc(since):
        raise InvalidInput({"until": "The end of the date range is before its start."})


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def list_deliveries(
    *,
    session: Session,
    webhook_id: int | None = None,
    status: str | None = None,
    event_type: str | None = None,
    test: bool | None = None,
    before_id: int | None = None,
    limit: int = PAGE_SIZE,
    search: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> DeliveryPage:
    """Deliveries newest first, paged by keyset (`before_id`) so every page costs the same.

    `search` finds deliveries by event id or a value in the payload (kwik_console/search.py).
    `since` and `until` keep deliveries created in [since, until] (check_window).

    A `webhook_id` that names no webhook raises NotFound.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
        raise InvalidInput({"limit": "Page size must be between 1 and 500."})
    status = parse_status(status)
    check_window(since, until)
    if event_type and not catalog.is_known_type(event_type):
        raise InvalidInput({"event_type": f"Unknown event type {event_type!r}."})
    if webhook_id is not None and session.get(Webhook, check_id("Webhook", webhook_id)) is None:
        raise NotFound(f"Webhook {webhook_id} does not exist.")
    if before_id is not None and before_id < 1:
        return DeliveryPage(items=[], next_before_id=None)  # no id is below 1
    if before_id is not None and before_id > ID_MAX:
        before_id = None  # every id is below it
    query = select(Delivery)
    if webhook_id is not None:
        query = query.where(Delivery.webhook_id == webhook_id)
    if status:
        query = query.where(Delivery.status == status)
    if event_type:
        query = query.where(Delivery.event_type == event_type)
    if test is not None:
        query = query.where(Delivery.test == test)
    if before_id is not None:
        query = query.where(col(Delivery.id) < before_id)
    if since is not None:
        query = query.where(col(Delivery.created_at) >= _utc(since))
    if until is not None:
        query = query.where(col(Delivery.created_at) <= _utc(until))
    if search:
        query = restrict_to_search(query, session.connection(), search)
    rows = list(session.exec(query.order_by(col(Delivery.id).desc()).limit(limit + 1)))
    more = len(rows) > limit
    items = rows[:limit]
    return DeliveryPage(items=items, next_before_id=items[-1].id if more else None)


def get_delivery(*, session: Session, delivery_id: int) -> DeliveryDetail:
    delivery = session.get(Delivery, check_id("Delivery", delivery_id))
    if delivery is None:
        raise NotFound(f"Delivery {delivery_id} does not exist.")
    attempts = session.exec(
        select(Attempt).where(Attempt.delivery_id == delivery_id).order_by(col(Attempt.number))
    ).all()
    return DeliveryDetail(
        delivery=delivery,
        event=session.get(Event, delivery.event_id),
        webhook=session.get(Webhook, delivery.webhook_id),
        attempts=list(attempts),
    )
