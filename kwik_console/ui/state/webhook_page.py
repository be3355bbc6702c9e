"""A webhook's own page (/webhooks/[id]): its settings, summary, charts; and its signing secret."""

from __future__ import annotations

import datetime as dt
import logging

import reflex as rx
from sqlalchemy.exc import SQLAlchemyError

from kwik_console.core.clock import iso, utcnow
from kwik_console.core.errors import NotFound
from kwik_console.events import deliveries, rollups
from kwik_console.operations.health import health_of
from kwik_console.store.db import get_engine, session_scope
from kwik_console.store.tables import WebhookStatus
from kwik_console.team import access
from kwik_console.ui.state.common import (
    follow_deliveries,
    forget,
    read_secret,
    sees_secrets,
    viewer_zone,
    webhook_id_from,
)
from kwik_console.ui.views import DeliveryRow, FiguresView
from kwik_console.webhooks import rules
from kwik_console.webhooks import service as webhooks

log = logging.getLogger(__name__)
# The webhook's page shows this many of its latest deliveries.
RECENT = 10
RANGE_LABELS = {"1h": "1 h", "24h": "24 h", "7d": "7 d", "30d": "30 d"}
# How a chart point is labelled, by range, in the viewer's time zone.
_LABEL_FORMATS = {"1h": "%H:%M", "24h": "%H:%M", "7d": "%a %H:%M", "30d": "%d %b"}


def chart_points(points, range_key: str, zone: dt.tzinfo) -> tuple[list[dict], list[dict]]:
    fmt = _LABEL_FORMATS[range_key]
    counts, durations = [], []
    for p in points:
        label = p.start.astimezone(zone).strftime(fmt)
        counts.append({"time": label, "Successes": p.successes, "Failures": p.failures})
        durations.append(
            {
                "time": label,
                "p50": None if p.p50_ms is None else round(p.p50_ms),
                "p95": None if p.p95_ms is None else round(p.p95_ms),
            }
        )
    return counts, durations


class WebhookPageState(rx.State):
    webhook_id: int = 0
    name: str = ""
    url: str = ""
    status: str = ""
    created_at: str = ""
    events: list[str] = []
    all_events: bool = False  # "All events", including types added later
    # Custom headers, [name, value]; a value reaches only members who may see signing secrets (it is often one).
    headers: list[list[str]] = []
    day: FiguresView = FiguresView()
    week: FiguresView = FiguresView()
    range_key: str = "24h"
    counts: list[dict] = []
    durations: list[dict] = []
    chart_attempts: int = 0
    time_zone: str = ""  # the viewer's, from the browser; chart labels use it
    max_per_second: str = ""  # "" for no limit
    warn: bool = False  # every attempt failed for health.failing_after: the failing badge
    failing_since: str = ""
    disabled_reason: str = ""  # why the console disabled it by itself
    disabled_at: str = ""
    operational: bool = False  # the operational webhook: changed on the Developers page only
    loading: bool = True
    missing: bool = False
    error: str = ""
    just_created: bool = False  # opened right after Create: the next step, a test, is offered at the top
    recent: list[DeliveryRow] = []  # its last deliveries, newest first, kept up to date while the page is open
    _following: str = ""  # the mark of the tab's one live follow (follow_deliveries)

    @rx.event
    async def open_page(self):
        webhook_id = webhook_id_from(self.router.url.path)
        if webhook_id != self.webhook_id:
            self.range_key, self.counts, self.durations = "24h", [], []
        # A secret revealed on another visit leaves the browser (viewers never had one: this only clears).
        secret = await self.get_state(SecretState)
        secret.secret, secret.shown = "", False
        self.webhook_id, self.loading, self.missing = webhook_id, True, False
        self.just_created = self.router.url.query_parameters.get("created") == "1"
        return [
            rx.call_script("Intl.DateTimeFormat().resolvedOptions().timeZone", callback=WebhookPageState.set_time_zone),
            WebhookPageState.load,
            WebhookPageState.follow,
        ]

    @rx.event(background=True)
    async def follow(self):
        """While the page is open: its recent deliveries again as soon as they change."""
        async with self:
            webhook_id = self.webhook_id
        async for event in follow_deliveries(self, webhook_id, WebhookPageState.refresh_recent):
            yield event

    @rx.event
    def stop_following(self):
        self._following = ""

    def _read_recent(self, session) -> None:
        page = deliveries.list_deliveries(session=session, webhook_id=self.webhook_id, limit=RECENT)
        self.recent = [DeliveryRow.of(d) for d in page.items]

    @rx.event
    def refresh_recent(self):
        """The page's last deliveries, as they are now (`follow` calls this at each change)."""
        if not self.webhook_id or self.missing:
            return
        try:
            with session_scope() as session:
                self._read_recent(session)
        except (NotFound, SQLAlchemyError):
            return  # the next full load says what is wrong

    @rx.event
    def set_time_zone(self, name: str):
        if isinstance(name, str) and name != self.time_zone:
            self.time_zone = name[:64]
            return WebhookPageState.load_charts

    @rx.event
    def load(self):
        """Settings and summary; then the charts. After an Edit or a Test elsewhere on the page, too."""
        if not self.webhook_id:
            return
        now = utcnow()
        try:
            with session_scope() as session:
                webhook = webhooks.get_webhook(session=session, webhook_id=self.webhook_id)
                self.events = webhooks.webhook_events(session=session, webhook_id=self.webhook_id)
                self._read_recent(session)
            with get_engine().connect() as conn:
                figures = rollups.summary(conn, self.webhook_id, now=now)
        except NotFound:
            self.missing, self.loading = True, False
            return
        except SQLAlchemyError:
            log.exception("loading webhook %s failed", self.webhook_id)
            self.error, self.loading = "The webhook could not be loaded: the database is unavailable.", False
            return
        self.name, self.url, self.status = webhook.name, webhook.url, WebhookStatus(webhook.status).label
        self.all_events = self.events == [rules.ALL_EVENTS]
        shown = rules.headers_shown(webhook.headers or {}, sees_secrets=sees_secrets())
        self.headers = [[n, v] for n, v in shown.items()]
        self.max_per_second = "" if webhook.max_per_second is None else f"{webhook.max_per_second:g}"
        state = health_of(webhook)
        self.warn, self.failing_since = state.warn, (iso(state.failing_since) or "")
        self.disabled_reason, self.disabled_at = state.disabled_reason or "", (iso(state.disabled_at) or "")
        self.operational = bool(webhook.operational)
        self.created_at = iso(webhook.created_at) or ""
        self.day, self.week = FiguresView.of(figures["24h"]), FiguresView.of(figures["7d"])
        self.error, self.missing = "", False
        return WebhookPageState.load_charts

    @rx.event
    def load_charts(self):
        if not self.webhook_id or self.missing:
            return
        try:
            with get_engine().connect() as conn:
                points = rollups.series(conn, self.webhook_id, self.range_key, now=utcnow())
        except SQLAlchemyError:
            log.exception("loading the charts of webhook %s failed", self.webhook_id)
            self.error = "The charts could not be loaded: the database is unavailable."
            return
        self.counts, self.durations = chart_points(points, self.range_key, viewer_zone(self.time_zone))
        self.chart_attempts = sum(p.successes + p.failures for p in points)
        self.loading = False

    @rx.event
    def set_range(self, key: str):
        if key in rollups.RANGES:
            self.range_key = key
            return WebhookPageState.load_charts


class SecretState(rx.State):
    """The signing secret on the webhook page; only members whose role allows it reach these handlers.

    Shown once: the server forgets the secret (and that it is shown) as soon as the browser has it.
    """

    secret: str = ""
    shown: bool = False

    async def _webhook_id(self) -> int:
        page = await self.get_state(WebhookPageState)
        return page.webhook_id

    @rx.event
    async def toggle(self, showing: bool = False):
        """Reveal, or hide what the browser shows (`showing`: the server keeps no copy to tell)."""
        if showing:
            self.secret, self.shown = "", False
            return
        try:
            self.secret, self.shown = read_secret(await self._webhook_id(), "secret.revealed"), True
        except NotFound as exc:
            yield rx.toast.error(str(exc))
            return
        yield
        forget(self, "secret", "shown")

    @rx.event
    async def copy(self):
        try:
            secret = read_secret(await self._webhook_id(), "secret.copied")
        except NotFound as exc:
            return rx.toast.error(str(exc))
        return [rx.set_clipboard(secret), rx.toast.success("Signing secret copied.")]

    @rx.event
    async def rotate(self):
        webhook_id = await self._webhook_id()
        try:
            with session_scope() as session:
                webhook = webhooks.rotate_secret(session=session, webhook_id=webhook_id, actor=access.actor())
        except NotFound as exc:
            yield rx.toast.error(str(exc))
            return
        self.secret, self.shown = webhook.secret, True
        yield rx.toast.success("New signing secret created. The previous one keeps signing for 24 hours.")
        forget(self, "secret", "shown")
