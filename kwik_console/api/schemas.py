"""The API's request and response shapes. Requests refuse unknown fields; the services check the values."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kwik_console.deliveries import DeliveryDetail
from kwik_console.models import Attempt, Delivery, Webhook


class _Request(BaseModel):
    # Unknown fields are refused by name, so a typo ("event" for "events") is never silently ignored.
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- webhooks


class WebhookCreate(_Request):
    name: str = Field(description="1–100 characters.", examples=["Orders service"])
    url: str = Field(description="An absolute https:// URL (http:// only to localhost, in local mode).",
                     examples=["https://example.com/webhooks/kwik"])
    events: list[str] = Field(description="Event types from GET /event-types; at least one.",
                              examples=[["payment.created", "payment.updated"]])
    status: str | None = Field(default=None, description="`live` (the default) or `disabled`.", examples=["live"])


class WebhookUpdate(_Request):
    name: str | None = None
    url: str | None = None
    events: list[str] | None = None
    status: str | None = Field(default=None, description="`live` or `disabled`.")


class WebhookOut(BaseModel):
    id: int
    name: str
    url: str
    status: str = Field(description="`live` or `disabled`.")
    events: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, webhook: Webhook, events: list[str]) -> WebhookOut:
        return cls(id=webhook.id, name=webhook.name, url=webhook.url, status=webhook.status, events=events,
                   created_at=webhook.created_at, updated_at=webhook.updated_at)


class WebhookPage(BaseModel):
    items: list[WebhookOut]
    total: int = Field(description="Webhooks matching the search, on every page.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class SecretOut(BaseModel):
    secret: str = Field(description="whsec_ + base64 of 32 bytes: the key receivers verify signatures with.")
    previous_secrets_expire_at: list[dt.datetime] = Field(
        description="Replaced secrets that still sign alongside this one, until these times.")


class TestRequest(_Request):
    event_type: str = Field(examples=["payment.created"])


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
    data_schema: dict[str, Any] = Field(alias="schema", serialization_alias="schema",
                                        description="JSON Schema (2020-12) of the event's `data`.")

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
        return cls(id=d.id, webhook_id=d.webhook_id, event_id=d.event_id, event_type=d.event_type, status=d.status,
                   http_code=d.last_http_code, test=d.test, retry_at=d.retry_at, retry_counter=d.retry_counter,
                   created_at=d.created_at)


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
    def of(cls, a: Attempt) -> AttemptOut:
        return cls(number=a.number, attempted_at=a.attempted_at, http_code=a.http_code, duration_ms=a.duration_ms,
                   request_headers={str(k): str(v) for k, v in a.request_headers.items()},
                   response_headers={str(k): str(v) for k, v in a.response_headers.items()},
                   response_body=a.response_body, error=a.error)


class DeliveryDetailOut(DeliveryOut):
    payload: dict[str, Any] = Field(description="The JSON envelope every attempt sends.")
    attempts: list[AttemptOut]

    @classmethod
    def of_detail(cls, detail: DeliveryDetail) -> DeliveryDetailOut:
        base = DeliveryOut.of(detail.delivery).model_dump()
        return cls(**base, payload=json.loads(detail.event.body), attempts=[AttemptOut.of(a) for a in detail.attempts])
