"""The event log of one webhook: filters, keyset pages, live refresh, and a delivery's details."""

from __future__ import annotations

import datetime as dt
import logging
import urllib.parse

import reflex as rx
from sqlalchemy.exc import SQLAlchemyError

from kwik_console.core.clock import iso
from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.core.settings import get_settings
from kwik_console.delivery import resend as resending
from kwik_console.events import deliveries, search
from kwik_console.store.db import session_scope
from kwik_console.store.tables import DeliveryStatus
from kwik_console.team import access
from kwik_console.ui.state.common import follow_deliveries, parse_local, sees_secrets, viewer_zone
from kwik_console.ui.views import DeliveryDetailView, DeliveryRow
from kwik_console.webhooks import service as webhooks

log = logging.getLogger(__name__)
ALL = "all"
PAGE_SIZE = 25


class EventLogState(rx.State):
    webhook_id_shown: int = 0
    webhook_name: str = ""
    webhook_url: str = ""
    rows: list[DeliveryRow] = []
    status: str = ALL
    event_type: str = ALL
    test: str = ALL  # all | yes | no
    search: str = ""  # an event id or a value in the payload (kwik_console/search.py)
    # The date range: datetime-local values, wall time in the viewer's zone (`time_zone`, from the browser).
    since_local: str = ""
    until_local: str = ""
    time_zone: str = ""
    range_error: str = ""
    # Keyset pages: the `before_id` of each page visited, newest first.
    cursors: list[int] = []
    next_before: int = 0
    loading: bool = True
    error: str = ""
    missing: bool = False
    detail_open: bool = False
    detail: DeliveryDetailView = DeliveryDetailView()
    retention: str = ""  # what the page says of KWIK_RETENTION_DAYS
    _following: str = ""  # the mark of the tab's one live follow (follow_deliveries)

    @rx.var
    def page_number(self) -> int:
        return len(self.cursors) + 1

    def _webhook_id(self) -> int:
        try:
            return int(self.router.url.path.rstrip("/").split("/")[-2])
        except (ValueError, IndexError):
            return 0

    @rx.event
    def open_page(self):
        """On arrival: fresh filters for a different webhook, then load."""
        webhook_id = self._webhook_id()
        if webhook_id != self.webhook_id_shown:
            self._clear()
            self.rows, self.detail_open = [], False
        self.webhook_id_shown, self.cursors, self.loading = webhook_id, [], True
        self.retention = retention_text(get_settings().retention_days)
        return [
            rx.call_script("Intl.DateTimeFormat().resolvedOptions().timeZone", callback=EventLogState.set_time_zone),
            EventLogState.refresh,
            EventLogState.follow,
        ]

    @rx.event(background=True)
    async def follow(self):
        """While the page is open: refresh as soon as this webhook's deliveries change."""
        async with self:
            webhook_id = self.webhook_id_shown
        async for event in follow_deliveries(self, webhook_id, EventLogState.refresh):
            yield event

    @rx.event
    def stop_following(self):
        self._following = ""

    @rx.event
    def set_time_zone(self, name: str):
        if isinstance(name, str) and name[:64] != self.time_zone:
            self.time_zone = name[:64]
            if self.since_local or self.until_local:
                return self._filter()

    def _clear(self):
        self.status, self.event_type, self.test, self.search = ALL, ALL, ALL, ""
        self.since_local, self.until_local, self.range_error = "", "", ""

    def _window(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The date range as instants: each end read in the viewer's zone; a blank or unreadable end is no bound."""
        zone = viewer_zone(self.time_zone)
        return parse_local(self.since_local, zone), parse_local(self.until_local, zone)

    @rx.event
    def refresh(self):
        """Reload the current page, keeping filters and page; `follow` calls this at each change too."""
        webhook_id = self.webhook_id_shown
        since, until = self._window()
        try:
            with session_scope() as session:
                webhook = webhooks.get_webhook(session=session, webhook_id=webhook_id)
                page = deliveries.list_deliveries(
                    session=session,
                    webhook_id=webhook_id,
                    status=None if self.status == ALL else self.status,
                    event_type=None if self.event_type == ALL else self.event_type,
                    test=None if self.test == ALL else self.test == "yes",
                    before_id=self.cursors[-1] if self.cursors else None,
                    limit=PAGE_SIZE,
                    search=self.search,
                    since=since,
                    until=until,
                )
                if self.detail_open:
                    self.detail = DeliveryDetailView.of(
                        deliveries.get_delivery(session=session, delivery_id=self.detail.row.id),
                        sees_secrets=sees_secrets(),
                    )
        except NotFound:
            self.missing, self.loading, self.rows = True, False, []
            return
        except InvalidInput as exc:
            if set(exc.errors) != {"until"}:
                log.exception("loading the event log failed")
                self.error, self.loading = f"The event log could not be loaded: {exc}", False
                return
            self.range_error, self.rows, self.next_before, self.loading = exc.errors["until"], [], 0, False
            return
        except SQLAlchemyError as exc:
            log.exception("loading the event log failed")
            self.error, self.loading = f"The event log could not be loaded: {exc}", False
            return
        self.webhook_name, self.webhook_url = webhook.name, webhook.url
        self.rows = [DeliveryRow.of(d) for d in page.items]
        self.next_before = page.next_before_id or 0
        self.loading, self.error, self.missing, self.range_error = False, "", False, ""

    def _filter(self, **changes):
        for key, value in changes.items():
            setattr(self, key, value)
        self.cursors = []
        return EventLogState.refresh

    @rx.event
    def set_status(self, value: str):
        return self._filter(status=value)

    @rx.event
    def set_event_type(self, value: str):
        return self._filter(event_type=value)

    @rx.event
    def set_test(self, value: str):
        return self._filter(test=value)

    @rx.event
    def set_search(self, value: str):
        return self._filter(search=value[: search.MAX_QUERY])

    @rx.event
    def set_since(self, value: str):
        return self._filter(since_local=str(value or "")[:32])

    @rx.event
    def set_until(self, value: str):
        return self._filter(until_local=str(value or "")[:32])

    @rx.event
    def clear_filters(self):
        self._clear()
        return self._filter()

    @rx.var
    def export_query(self) -> str:
        """The filters as the export route reads them; the date range as UTC instants."""
        since, until = self._window()
        return urllib.parse.urlencode(
            {
                "status": self.status,
                "event_type": self.event_type,
                "test": self.test,
                "q": self.search,
                "since": iso(since) or "",
                "until": iso(until) or "",
            }
        )

    @rx.var
    def filtered(self) -> bool:
        chosen = (self.status, self.event_type, self.test, self.search, self.since_local, self.until_local)
        return chosen != (ALL, ALL, ALL, "", "", "")

    @rx.event
    def older(self):
        if self.next_before:
            self.cursors = [*self.cursors, self.next_before]
            return EventLogState.refresh

    @rx.event
    def newer(self):
        if self.cursors:
            self.cursors = self.cursors[:-1]
            return EventLogState.refresh

    @rx.event
    def show(self, delivery_id: int):
        try:
            with session_scope() as session:
                self.detail = DeliveryDetailView.of(
                    deliveries.get_delivery(session=session, delivery_id=delivery_id), sees_secrets=sees_secrets()
                )
        except NotFound as exc:
            return rx.toast.error(str(exc))
        self.detail_open = True

    @rx.event
    def set_detail_open(self, value: bool):
        self.detail_open = value


class ResendState(rx.State):
    """Resend, in the details drawer and on each Failure or Retrying row (members who may resend)."""

    resending: int = 0  # the delivery a Resend is on its way for

    @rx.event(background=True)
    async def resend(self, delivery_id: int):
        """Send the delivery again now (the drawer's and the Failure / Retrying rows' Resend), then show it."""
        # Background, like Test Webhook: the attempt may take up to its timeout, and the page stays usable.
        async with self:
            if self.resending:
                return
            self.resending = delivery_id
        actor = access.actor()  # the guard set it for this task, before the handler began
        try:
            outcome = await resending.resend(delivery_id, actor=actor)
        except InvalidInput as exc:
            notice = rx.toast.error(exc.errors.get("delivery") or exc.message)
        except NotFound as exc:
            notice = rx.toast.error(str(exc))
        else:
            notice = resent_notice(outcome)
        async with self:
            self.resending = 0
        yield [notice, EventLogState.refresh]


def retention_text(days: float) -> str:
    if days <= 0:
        return "Deliveries are kept until deleted."
    if days < 1:
        hours = days * 24
        return f"Deliveries are kept for {hours:g} hour{'' if hours == 1 else 's'}."
    return f"Deliveries are kept for {days:g} day{'' if days == 1 else 's'}."


def resent_notice(outcome):
    if outcome is None:
        return rx.toast.info("Resent: the attempt's outcome shows here in a moment.")
    code = f"HTTP {outcome.http_code}" if outcome.http_code is not None else (outcome.error or "no response")
    label = DeliveryStatus(outcome.status).label
    if outcome.status == DeliveryStatus.SUCCESS:
        return rx.toast.success(f"Resent: {code}, {label}.")
    return rx.toast.warning(f"Resent: {code}, {label}.")
