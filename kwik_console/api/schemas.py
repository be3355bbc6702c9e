"""The API's request and response shapes. Requests refuse unknown fields; the services check the values."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from kwik_console.events import catalog
from kwik_console.events.deliveries import DeliveryDetail
from kwik_console.store.tables import Attempt, Delivery, Webhook, WebhookStatus
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import HEADER_VALUE_MAX, HEADERS_MAX, RATE_MAX, RATE_MIN, headers_shown

EVENTS_DESCRIPTION = (
    'Event types from GET /event-types, at least one; or ["*"] for all events, including types added later '
    "(never the operational ones)."
)
HEADERS_DESCRIPTION = (
    f"Custom headers sent with each delivery, at most {HEADERS_MAX}: names are HTTP tokens, unique ignoring "
    "case, and not webhook-*, content-*, proxy-*, host, user-agent, accept-encoding, expect or a hop-by-hop "
    f"header; values printable ASCII, at most {HEADER_VALUE_MAX:,} characters."
)


class _Request(BaseModel):
    # Unknown fields are refused by name, so a typo ("event" for "events") is never silently ignored.
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- webhooks


class WebhookCreate(_Request):
    name: str = Field(description="1–100 characters.", examples=["Orders service"])
    url: str = Field(
        description="An absolute https:// URL (http:// only to localhost, in local mode).",
        examples=["https://shop.example.invalid/webhooks/kwik"],
    )
    events: list[str] = Field(description=EVENTS_DESCRIPTION, examples=[["payment.created", "payment.updated"]])
    status: str | None = Field(
        default=None, description="`live` (the default), `paused` or `disabled`.", examples=["live"]
    )
    # Strict: "5" (text) or true is refused by name rather than read as a number.
    max_per_second: float | None = Field(
        default=None,
        strict=True,
        description=f"Max deliveries per second, {RATE_MIN:g} to {RATE_MAX:,.0f}; null or absent for no limit.",
        examples=[10],
    )
    headers: dict[str, str] | None = Field(
        default=None, description=HEADERS_DESCRIPTION + " Absent or null for none.", examples=[{"X-Team": "orders"}]
    )


class WebhookUpdate(_Request):
    name: str | None = None
    url: str | None = None
    events: list[str] | None = Field(default=None, description=EVENTS_DESCRIPTION)
    status: str | None = Field(default=None, description="`live`, `paused` or `disabled`.")
    max_per_second: float | None = Field(
        default=None,
        strict=True,
        description=f"Max deliveries per second, {RATE_MIN:g} to {RATE_MAX:,.0f}; "
        "null removes the limit; absent leaves it as it is.",
    )
    headers: dict[str, str] | None = Field(
        default=None,
        description=HEADERS_DESCRIPTION + " They replace the webhook's headers; {} or null removes them all; "
        "absent leaves them as they are.",
    )


class WebhookOut(BaseModel):
    id: int
    name: str
    url: str
    status: str = Field(description="`live`, `paused` (deliveries wait) or `disabled`.")
    events: list[str] = Field(description='The event types it receives; ["*"] for all events.')
    max_per_second: float | None = Field(description="Max deliveries per second; null for no limit.")
    headers: dict[str, str] = Field(
        description="Custom headers sent with each delivery. A value is often a secret: a token without the "
        "`write` scope sees •••••••• instead."
    )
    failing_since: dt.datetime | None = Field(
        description="When its attempts started failing (the first failure after a success); null while they succeed."
    )
    disabled_reason: str | None = Field(
        description="Why the console disabled it by itself (after long failure); null otherwise."
    )
    disabled_at: dt.datetime | None = Field(description="When it was disabled; null unless it is Disabled.")
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, webhook: Webhook, events: list[str], *, sees_secrets: bool) -> WebhookOut:
        disabled = webhook.status == WebhookStatus.DISABLED
        return cls(
            id=webhook.id,
            name=webhook.name,
            url=webhook.url,
            status=webhook.status,
            events=events,
            max_per_second=webhook.max_per_second,
            headers=headers_shown(webhook.headers or {}, sees_secrets=sees_secrets),
            failing_since=webhook.failing_since,
            disabled_reason=webhook.disabled_reason if disabled else None,
            disabled_at=webhook.disabled_at if disabled else None,
            created_at=webhook.created_at,
            updated_at=webhook.updated_at,
        )


class WebhookPage(BaseModel):
    items: list[WebhookOut]
    total: int = Field(description="Webhooks matching the search, on every page.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class SecretOut(BaseModel):
    secret: str = Field(description="whsec_ + base64 of 32 bytes: the key receivers verify signatures with.")
    previous_secrets_expire_at: list[dt.datetime] = Field(
        description="Replaced secrets that still sign alongside this one, until these times."
    )


class TestRequest(_Request):
    event_type: str = Field(examples=["payment.created"])
    data: dict[str, Any] | None = Field(
        default=None,
        description="The event's `data` (not the envelope): it must fit the type's schema from GET /event-types. "
        "Absent or null: the type's sample.",
        examples=[{**catalog.sample_data("payment.created"), "amount": 5000}],
    )


class TestOutcome(BaseModel):
    event_id: str
    delivery_id: int
    status: str = Field(description="pending, success, retrying or failure.")
    http_code: int | None
    duration_ms: int
    response_body: str = Field(description="The endpoint's response, up to 2,000 characters.")
    error: str | None
    retry_at: dt.datetime | None


# ---------------------------------------------------------------- events


class EventPublish(_Request):
    type: str = Field(description="An event type from GET /event-types.", examples=["payment.created"])
    data: dict[str, Any] = Field(description="The event's data: a JSON object; see the type's schema.")


class EventPublished(BaseModel):
    id: str = Field(description="The event id, evt_…; the webhook-id header of its deliveries.")
    type: str
    created_at: dt.datetime
    deliveries: int = Field(description="How many deliveries it made: one per Live webhook subscribed to the type.")


class EventTypeOut(BaseModel):
    type: str
    group: str
    description: str
    sample: dict[str, Any] = Field(description="Realistic `data`, as Test Webhook sends it.")
    data_schema: dict[str, Any] = Field(
        alias="schema", serialization_alias="schema", description="JSON Schema (2020-12) of the event's `data`."
    )

    model_config = ConfigDict(populate_by_name=True)


class EventTypeList(BaseModel):
    items: list[EventTypeOut]


# ---------------------------------------------------------------- deliveries


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int
    event_id: str
    event_type: str
    status: str = Field(description="pending, success, retrying or failure.")
    http_code: int | None = Field(description="The latest attempt's HTTP code; null if none was received.")
    test: bool
    retry_at: dt.datetime | None = Field(description="When the next retry runs, if one is scheduled.")
    retry_counter: int = Field(description="Retries attempted so far (attempts − 1).")
    created_at: dt.datetime

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            webhook_id=d.webhook_id,
            event_id=d.event_id,
            event_type=d.event_type,
            status=d.status,
            http_code=d.last_http_code,
            test=d.test,
            retry_at=d.retry_at,
            retry_counter=d.retry_counter,
            created_at=d.created_at,
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for older deliveries; null on the last page.")


class AttemptOut(BaseModel):
    number: int
    attempted_at: dt.datetime
    http_code: int | None
    duration_ms: int
    request_headers: dict[str, str]
    response_headers: dict[str, str]
    response_body: str
    error: str | None

    @classmethod
    def of(cls, a: Attempt, *, sees_secrets: bool) -> AttemptOut:
        return cls(
            number=a.number,
            attempted_at=a.attempted_at,
            http_code=a.http_code,
            duration_ms=a.duration_ms,
            request_headers=headers_shown(a.request_headers, sees_secrets=sees_secrets),
            response_headers={str(k): str(v) for k, v in a.response_headers.items()},
            response_body=a.response_body,
            error=a.error,
        )


def webhook_out(session, webhook: Webhook, *, sees_secrets: bool) -> WebhookOut:
    return WebhookOut.of(
        webhook, webhooks.webhook_events(session=session, webhook_id=webhook.id), sees_secrets=sees_secrets
    )


class DeliveryDetailOut(DeliveryOut):
    payload: dict[str, Any] = Field(description="The JSON envelope every attempt sends.")
    attempts: list[AttemptOut]

    @classmethod
    def of_detail(cls, detail: DeliveryDetail, *, sees_secrets: bool) -> DeliveryDetailOut:
        base = DeliveryOut.of(detail.delivery).model_dump()
        attempts = [AttemptOut.of(a, sees_secrets=sees_secrets) for a in detail.attempts]
        return cls(**base, payload=json.loads(detail.event.body), attempts=attempts)


# ---------------------------------------------------------------- operating deliveries


class ResendOutcome(BaseModel):
    delivery_id: int
    attempt: int | None = Field(
        description="The attempt's number in the delivery's history; null if it had not "
        "come back in time (it is queued: GET the delivery for its outcome)."
    )
    status: str = Field(
        description="Where the attempt left the delivery: success, retrying or failure "
        "(pending if it had not come back in time)."
    )
    http_code: int | None
    duration_ms: int | None
    response_body: str = Field(description="The endpoint's response, up to 2,000 characters.")
    error: str | None
    retry_at: dt.datetime | None = Field(description="When the next retry runs, if one is scheduled.")


# A date or a date-time, as text only: pydantic would also read a number, or digits, as seconds since 1970.
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?")


def _date_text(value: Any) -> Any:
    if not isinstance(value, str) or not _DATE_TEXT.fullmatch(value):
        raise PydanticCustomError("datetime_type", "Input should be a date or date-time")
    return value


DateText = Annotated[
    dt.datetime,
    BeforeValidator(_date_text),
    WithJsonSchema({"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}]}),
]


class RecoveryStart(_Request):
    since: DateText = Field(
        description="Recover deliveries created since: a date (midnight UTC) or a "
        "date-time (UTC unless it has an offset); in the past.",
        examples=["2025-06-01T00:00:00Z"],
    )
    event_types: list[str] | None = Field(
        default=None, description="Only these event types; absent for all.", examples=[["payment.created"]]
    )
    statuses: list[str] | None = Field(
        default=None,
        description="Delivery statuses to queue again: `failure` (the default) and/or `retrying`.",
        examples=[["failure"]],
    )


class RecoveryOut(BaseModel):
    id: int
    webhook_id: int
    state: str = Field(description="running, finished or cancelled.")
    since: dt.datetime
    event_types: list[str] = Field(description="The event types it recovers; empty for all.")
    statuses: list[str]
    total: int = Field(description="Deliveries it matched.")
    queued: int = Field(description="Deliveries queued for an attempt so far.")
    sent: int = Field(description="Queued deliveries whose attempt has been made.")
    succeeded: int
    failed: int
    queuing_done: bool = Field(description="Every matched delivery has been queued.")
    percent: int = Field(description="Sent of total, 0–100; 100 once finished.")
    created_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None = Field(description="When it finished or was cancelled.")

    @classmethod
    def of(cls, progress) -> RecoveryOut:
        return cls(**{k: getattr(progress, k) for k in cls.model_fields})


class RecoveryList(BaseModel):
    items: list[RecoveryOut] = Field(description="The webhook's recoveries, newest first (the last 20).")


class OperationalWebhookSet(_Request):
    url: str = Field(
        description="Where the console sends its notices: an absolute https:// URL (http:// only "
        "to localhost, in local mode).",
        examples=["https://ops.example.invalid/kwik"],
    )


class OperationalWebhookOut(BaseModel):
    id: int
    url: str
    status: str
    events: list[str] = Field(description="The operational event types it receives: all of them.")
    failing_since: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, webhook: Webhook, events: list[str]) -> OperationalWebhookOut:
        return cls(
            id=webhook.id,
            url=webhook.url,
            status=webhook.status,
            events=events,
            failing_since=webhook.failing_since,
            created_at=webhook.created_at,
            updated_at=webhook.updated_at,
        )


class OperationalWebhookSaved(OperationalWebhookOut):
    secret: str = Field(description="Its signing secret, to verify the notices; GET never shows it.")
