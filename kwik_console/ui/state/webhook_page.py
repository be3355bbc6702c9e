"""A webhook's own page (/webhooks/[id]): its settings, summary, charts; and its signing secret."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

import reflex as rx
from sqlalchemy.exc import SQLAlchemyError

from kwik_console.team import access, audit
from kwik_console.events import rollups
from kwik_console.webhooks import service as webhooks
from kwik_console.store.db import get_engine, session_scope
from kwik_console.core.errors import NotFound
from kwik_console.store.tables import WebhookStatus, utcnow
from kwik_console.operations import notices
from kwik_console.operations.health import health_of
from kwik_console.ui.views import FiguresView, iso

log = logging.getLogger(__name__)
RANGE_LABELS = {"1h": "1 h", "24h": "24 h", "7d": "7 d", "30d": "30 d"}
# How a chart point is labelled, by range, in the viewer's time zone.
_LABEL_FORMATS = {"1h": "%H:%M", "24h": "%H:%M", "7d": "%a %H:%M", "30d": "%d %b"}


def webhook_id_from(path: str) -> int:
    """/webhooks/12 -> 12 (0 when it is not a webhook page)."""
    parts = path.rstrip("/").split("/")
    try:
        return int(parts[2]) if len(parts) == 3 and parts[1] == "webhooks" else 0
    except ValueError:
        return 0


def viewer_zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name) if name else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def chart_points(points, range_key: str, zone: dt.tzinfo) -> tuple[list[dict], list[dict]]:
    fmt = _LABEL_FORMATS[range_key]
    counts, durations = [], []
    for p in points:
        label = p.start.astimezone(zone).strftime(fmt)
        counts.append({"time": label, "Successes": p.successes, "Failures": p.failures})
        durations.append({"time": label, "p50": None if p.p50_ms is None else round(p.p50_ms),
                          "p95": None if p.p95_ms is None else round(p.p95_ms)})
    return counts, durations


class WebhookPageState(rx.State):
    webhook_id: int = 0
    name: str = ""
    url: str = ""
    status: str = ""
    created_at: str = ""
    events: list[str] = []
    day: FiguresView = FiguresView()
    week: FiguresView = FiguresView()
    range_key: str = "24h"
    counts: list[dict] = []
    durations: list[dict] = []
    chart_attempts: int = 0
    time_zone: str = ""  # the viewer's, from the browser; chart labels use it
    max_per_second: str = ""  # "" for no limit
    warn: bool = False  # every attempt failed for 24 h or more
    failing_since: str = ""
    disabled_reason: str = ""  # why the console disabled it by itself
    disabled_at: str = ""
    operational: bool = False  # the operational webhook: changed on the Developers page only
    loading: bool = True
    missing: bool = False
    error: str = ""

    @rx.event
    async def open_page(self):
        webhook_id = webhook_id_from(self.router.url.path)
        if webhook_id != self.webhook_id:
            self.range_key, self.counts, self.durations = "24h", [], []
        # A secret revealed on another visit leaves the browser (viewers never had one: this only clears).
        secret = await self.get_state(SecretState)
        secret.secret, secret.shown = "", False
        self.webhook_id, self.loading, self.missing = webhook_id, True, False
        from kwik_console.ui.state.operations import RecoverState, RecoveryProgressState

        then = [rx.call_script("Intl.DateTimeFormat().resolvedOptions().timeZone",
                               callback=WebhookPageState.set_time_zone), WebhookPageState.load,
                RecoveryProgressState.load]
        # "Recover failed since…" on the list's banner comes here with ?recover=1 and opens the dialog.
        if self.router.url.query_parameters.get("recover") == "1" and access.may(access.member().role,
                                                                                 access.Action.RECOVER):
            then.append(RecoverState.open_dialog)
        return then

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
        self.max_per_second = "" if webhook.max_per_second is None else f"{webhook.max_per_second:g}"
        state = health_of(webhook)
        self.warn, self.failing_since = state.warn, iso(state.failing_since)
        self.disabled_reason, self.disabled_at = state.disabled_reason or "", iso(state.disabled_at)
        self.operational = bool(webhook.operational)
        self.created_at = iso(webhook.created_at)
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


def read_secret(webhook_id: int, action: str, *, operational: bool = False) -> str:
    """A webhook's secret, read for a member allowed to see it, and recorded in the audit trail.

    The operational webhook's only through its admin card (`operational=True`, a handler that needs OPERATIONAL).
    """
    with session_scope() as session:
        if operational:
            webhook = notices.operational_webhook(session=session)
            if webhook is None or webhook.id != webhook_id:
                raise NotFound("No operational webhook is set.")
        else:
            webhook = webhooks.webhook_to_change(session=session, webhook_id=webhook_id)
        audit.record(session=session, actor=access.actor(), action=action,
                     target=f"webhook {webhook.id} ({webhook.name})")
        return webhook.secret


class SecretState(rx.State):
    """The signing secret on the webhook page; only members whose role allows it reach these handlers."""

    secret: str = ""
    shown: bool = False

    async def _webhook_id(self) -> int:
        page = await self.get_state(WebhookPageState)
        return page.webhook_id

    @rx.event
    async def toggle(self):
        if self.shown:
            self.secret, self.shown = "", False
            return
        try:
            self.secret, self.shown = read_secret(await self._webhook_id(), "secret.revealed"), True
        except NotFound as exc:
            return rx.toast.error(str(exc))

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
                webhook = webhooks.rotate_secret(session=session, webhook_id=webhook_id)
                audit.record(session=session, actor=access.actor(), action="secret.rotated",
                             target=f"webhook {webhook.id} ({webhook.name})",
                             detail={"previous_secret_expires_at": str(webhooks.previous_secrets(
                                 session=session, webhook_id=webhook.id)[0].expires_at)})
        except NotFound as exc:
            return rx.toast.error(str(exc))
        self.secret, self.shown = webhook.secret, True
        return rx.toast.success("New signing secret created. The previous one keeps signing for 24 hours.")
