"""Plain shapes the states hand to the browser, built from the service results."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from kwik_console.core.clock import iso
from kwik_console.delivery.types import Outcome
from kwik_console.events.deliveries import DeliveryDetail
from kwik_console.operations.health import health_of
from kwik_console.store.tables import Attempt, Delivery, DeliveryStatus, RecoveryState, Webhook, WebhookStatus
from kwik_console.team.audit import describe
from kwik_console.webhooks import rules


@dataclasses.dataclass
class WebhookRow:
    id: int = 0
    name: str = ""
    url: str = ""
    status: str = ""  # Live | Paused | Disabled
    created_at: str = ""
    warn: bool = False  # every attempt has failed for health.failing_after: the row's failing badge
    failing_since: str = ""
    disabled_reason: str = ""  # set when the console disabled it by itself (auto-disable)
    disabled_at: str = ""
    all_events: bool = False  # "All events": a badge beside the name in the list

    @classmethod
    def of(cls, webhook: Webhook) -> WebhookRow:

        health = health_of(webhook)
        return cls(
            webhook.id,
            webhook.name,
            webhook.url,
            WebhookStatus(webhook.status).label,
            (iso(webhook.created_at) or ""),
            health.warn,
            (iso(health.failing_since) or ""),
            health.disabled_reason or "",
            (iso(health.disabled_at) or ""),
            bool(webhook.all_events),
        )


@dataclasses.dataclass
class RecoveryView:
    """A "Recover failed since" job, as its progress panel shows it."""

    id: int = 0
    state: str = ""  # Running | Finished | Cancelled
    running: bool = False
    since: str = ""
    filters: str = ""  # "Failure · all event types"
    total: int = 0
    queued: int = 0
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    percent: int = 0
    created_by: str = ""
    created_at: str = ""
    finished_at: str = ""

    @classmethod
    def of(cls, p) -> RecoveryView:

        statuses = " and ".join(DeliveryStatus(s).label for s in p.statuses) or "Failure"
        types = ", ".join(p.event_types) if p.event_types else "all event types"
        return cls(
            p.id,
            RecoveryState(p.state).label,
            p.running,
            (iso(p.since) or ""),
            f"{statuses} deliveries, {types}",
            p.total,
            p.queued,
            p.sent,
            p.succeeded,
            p.failed,
            p.percent,
            p.created_by,
            (iso(p.created_at) or ""),
            (iso(p.finished_at) or ""),
        )


@dataclasses.dataclass
class DeliveryRow:
    id: int = 0
    event_type: str = ""
    event_id: str = ""
    status: str = ""  # Pending | Success | Retrying | Failure
    http_code: str = ""
    test: bool = False
    retry_at: str = ""  # when the next retry runs, if one is scheduled
    retry_counter: int = 0
    created_at: str = ""  # when the event occurred (the delivery was made)

    @classmethod
    def of(cls, d: Delivery) -> DeliveryRow:
        return cls(
            d.id,
            d.event_type,
            d.event_id,
            DeliveryStatus(d.status).label,
            "" if d.last_http_code is None else str(d.last_http_code),
            d.test,
            (iso(d.retry_at) or ""),
            d.retry_counter,
            (iso(d.created_at) or ""),
        )


@dataclasses.dataclass
class Header:
    name: str = ""
    value: str = ""


def headers_of(mapping: dict[str, str]) -> list[Header]:
    return [Header(k, v) for k, v in mapping.items()]


@dataclasses.dataclass
class AttemptView:
    number: int = 0
    attempted_at: str = ""
    http_code: str = ""
    duration_ms: int = 0
    response_headers: list[Header] = dataclasses.field(default_factory=list)
    response_body: str = ""
    error: str = ""

    @classmethod
    def of(cls, a: Attempt) -> AttemptView:
        return cls(
            a.number,
            (iso(a.attempted_at) or ""),
            "" if a.http_code is None else str(a.http_code),
            a.duration_ms,
            headers_of(a.response_headers),
            a.response_body,
            a.error or "",
        )


@dataclasses.dataclass
class DeliveryDetailView:
    row: DeliveryRow = dataclasses.field(default_factory=DeliveryRow)
    created_at: str = ""
    payload: str = ""
    request_headers: list[Header] = dataclasses.field(default_factory=list)
    attempts: list[AttemptView] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, detail: DeliveryDetail, *, sees_secrets: bool) -> DeliveryDetailView:
        attempts = [AttemptView.of(a) for a in detail.attempts]
        # The headers of the latest attempt: the signature changes on every attempt.
        request = detail.attempts[-1].request_headers if detail.attempts else {}
        return cls(
            DeliveryRow.of(detail.delivery),
            (iso(detail.delivery.created_at) or ""),
            json.dumps(json.loads(detail.event.body), indent=2),
            headers_of(rules.headers_shown(request, sees_secrets=sees_secrets)),
            list(reversed(attempts)),
        )


@dataclasses.dataclass
class TestOutcome:
    status: str = ""
    http_code: str = ""
    duration_ms: int = 0
    response: str = ""
    error: str = ""
    retry_at: str = ""

    @classmethod
    def of(cls, o: Outcome) -> TestOutcome:
        return cls(
            DeliveryStatus(o.status).label,
            "" if o.http_code is None else str(o.http_code),
            o.duration_ms,
            o.response_body[:2000],
            o.error or "",
            (iso(o.next_attempt_at) or ""),
        )


@dataclasses.dataclass
class MemberRow:
    id: int = 0
    email: str = ""
    role: str = ""
    status: str = ""  # Active | Invited
    last_sign_in_at: str = ""
    is_me: bool = False


@dataclasses.dataclass
class AuditRow:
    id: int = 0
    at: str = ""
    actor: str = ""
    action: str = ""  # the words the page shows
    target: str = ""
    detail: list[AuditDetailLine] = dataclasses.field(default_factory=list)
    client_address: str = ""


@dataclasses.dataclass
class AuditDetailLine:
    """team.audit.DetailLine for the page: a time goes as ISO text (`*_at`), shown in the viewer's zone."""

    label: str = ""
    value: str = ""
    value_at: str = ""
    change: bool = False
    was: str = ""
    was_at: str = ""


def audit_detail(detail: dict) -> list[AuditDetailLine]:
    def split(value) -> tuple[str, str]:
        return ("", iso(value) or "") if isinstance(value, dt.datetime) else (str(value), "")

    out = []
    for line in describe(detail):
        change = line.was is not None
        out.append(AuditDetailLine(line.label, *split(line.value), change, *split(line.was if change else "")))
    return out


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f} ms" if value < 1000 else f"{value / 1000:,.2f} s"


# One failed attempt in 150, retried and delivered, is not an alarm: red is for a rate a merchant must look at.
HEALTHY_RATE = 0.99


@dataclasses.dataclass
class FiguresView:
    """A summary's headline figures, as the page shows them."""

    attempts: str = "0"
    success_rate: str = "—"
    failures: str = "0"
    p50: str = "—"
    p95: str = "—"
    retrying: str = "0"
    healthy: bool = True  # success rate at or above HEALTHY_RATE (or nothing attempted): shown green, else red
    delivery_rate: str = "—"  # deliveries that ended in Success, of those finished
    delivered_healthy: bool = True

    @classmethod
    def of(cls, f) -> FiguresView:
        rate, delivered = f.success_rate, f.delivery_rate
        return cls(
            f"{f.attempts:,}",
            _percent(rate),
            f"{f.failures:,}",
            _ms(f.p50_ms),
            _ms(f.p95_ms),
            f"{f.retrying:,}",
            rate is None or rate >= HEALTHY_RATE,
            _percent(delivered),
            delivered is None or delivered >= HEALTHY_RATE,
        )


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


@dataclasses.dataclass
class OverviewRow:
    webhook_id: int = 0
    name: str = ""
    status: str = ""
    figures: FiguresView = dataclasses.field(default_factory=FiguresView)
    warn: bool = False  # the failing badge, as in the list
    failing_since: str = ""
