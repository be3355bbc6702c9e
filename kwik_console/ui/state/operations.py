"""Operating a webhook from the console: Pause / Resume (and Re-enable), "Recover failed since…" with its
progress, and the operational webhook on the Developers page.

The services (kwik_console/operations) check the rules and record the audit trail; these states only ask them.
"""

from __future__ import annotations

import logging

import reflex as rx
from sqlalchemy.exc import SQLAlchemyError

from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.events import catalog
from kwik_console.operations import health, notices, recovery
from kwik_console.store.db import session_scope
from kwik_console.store.tables import WebhookStatus
from kwik_console.team import access
from kwik_console.ui.state.common import forget, parse_local, read_secret, viewer_zone
from kwik_console.ui.state.webhook_page import WebhookPageState
from kwik_console.ui.state.webhooks import WebhooksState
from kwik_console.ui.views import RecoveryView
from kwik_console.webhooks import service as webhooks

log = logging.getLogger(__name__)
ALL = "all"
# The status filter of a recovery: which deliveries it sends again.
STATUS_CHOICES = {"failure": ["failure"], "retrying": ["retrying"], "both": ["failure", "retrying"]}
# "24 hours ago", as the browser's datetime-local input wants it, in the browser's own time zone.
DAY_AGO_JS = (
    "(() => { const d = new Date(Date.now() - 864e5); d.setMinutes(d.getMinutes() - d.getTimezoneOffset());"
    " return d.toISOString().slice(0, 16); })()"
)


def _first_error(exc: InvalidInput) -> str:
    return next(iter(exc.errors.values()), str(exc))


class HealthState(rx.State):
    """Pause, Resume and Re-enable, from the list's row menu, the webhook page and the auto-disable banners."""

    @rx.event
    def pause(self, webhook_id: int):
        try:
            with session_scope() as session:
                webhook = health.pause_webhook(session=session, webhook_id=webhook_id, actor=access.actor())
                name = webhook.name
        except InvalidInput as exc:
            return rx.toast.error(_first_error(exc))
        except NotFound as exc:
            return [rx.toast.error(str(exc)), WebhooksState.load]
        return [
            rx.toast.success(
                f"Webhook “{name}” paused: events are recorded and their deliveries wait until you resume it."
            ),
            WebhooksState.load,
            WebhookPageState.load,
        ]

    @rx.event
    def resume(self, webhook_id: int):
        """Live again, from Paused (Resume) or from Disabled (Re-enable)."""
        try:
            with session_scope() as session:
                was = webhooks.get_webhook(session=session, webhook_id=webhook_id).status
                name = health.resume_webhook(session=session, webhook_id=webhook_id, actor=access.actor()).name
        except InvalidInput as exc:
            return rx.toast.error(_first_error(exc))
        except NotFound as exc:
            return [rx.toast.error(str(exc)), WebhooksState.load]
        message = (
            f"Webhook “{name}” resumed: the deliveries that waited go out now, oldest first."
            if was == WebhookStatus.PAUSED
            else f"Webhook “{name}” re-enabled: it receives events again."
        )
        return [rx.toast.success(message), WebhooksState.load, WebhookPageState.load]


def _blank_errors() -> dict[str, str]:
    return {"since": "", "event_types": "", "statuses": "", "webhook": ""}


class RecoveryProgressState(rx.State):
    """The progress panel on the webhook page: anyone who may read the webhook sees it."""

    has_progress: bool = False
    progress: RecoveryView = RecoveryView()
    webhook_id: int = 0  # whose progress is shown
    # Finished recoveries this browser dismissed, " 12 15 ": their panels stay closed on every visit.
    dismissed: str = rx.LocalStorage("", name="kwik_dismissed_recoveries")

    @rx.var
    def panel_open(self) -> bool:
        return self.has_progress and (self.progress.running or f" {self.progress.id} " not in self.dismissed)

    @rx.event
    def dismiss(self):
        """Close a finished recovery's panel (a running one cannot be dismissed: it is cancelled instead)."""
        if self.has_progress and not self.progress.running:
            kept = self.dismissed.split()[-49:]  # the last fifty: the browser's storage stays small
            self.dismissed = " " + " ".join([*kept, str(self.progress.id)]) + " "

    def _show(self, webhook_id: int, progress) -> None:
        self.webhook_id, self.has_progress = webhook_id, progress is not None
        self.progress = RecoveryView.of(progress) if progress else RecoveryView()

    @rx.event
    async def load(self):
        """The webhook's running recovery, else its latest one; nothing if it never had one."""
        page = await self.get_state(WebhookPageState)
        if not page.webhook_id:
            self._show(0, None)
            return
        try:
            with session_scope() as session:
                latest = recovery.latest_recovery(session=session, webhook_id=page.webhook_id)
        except SQLAlchemyError:
            log.exception("loading the recovery of webhook %s failed", page.webhook_id)
            return
        self._show(page.webhook_id, latest)

    @rx.event
    def open_recover_when_asked(self):
        """ "Recover failed since…" on the list's banner links to the webhook's page with ?recover=1."""
        if self.router.url.query_parameters.get("recover") == "1" and access.may(
            access.member().role, access.Action.RECOVER
        ):
            return RecoverState.open_dialog

    @rx.event
    def refresh(self):
        """Every second while it runs (the panel's timer); the page's figures once it is done."""
        if not self.has_progress or not self.progress.id:
            return
        try:
            with session_scope() as session:
                latest = recovery.get_recovery(session=session, recovery_id=self.progress.id)
        except NotFound:
            self.has_progress = False
            return
        except SQLAlchemyError:
            log.exception("refreshing recovery %s failed", self.progress.id)
            return
        was_running = self.progress.running
        self.progress = RecoveryView.of(latest)
        if was_running and not latest.running:
            return WebhookPageState.load


class RecoverState(rx.State):
    """ "Recover failed since…" on the webhook page: the dialog, Start and Cancel."""

    open: bool = False
    since_local: str = ""  # the datetime-local input's value, in the viewer's time zone
    event_type: str = ALL
    statuses: str = "failure"  # a key of STATUS_CHOICES
    errors: dict[str, str] = _blank_errors()
    starting: bool = False

    async def _page(self) -> WebhookPageState:
        return await self.get_state(WebhookPageState)

    @rx.event
    def open_dialog(self):
        self.event_type, self.statuses, self.errors = ALL, "failure", _blank_errors()
        self.starting, self.open = False, True
        return rx.call_script(DAY_AGO_JS, callback=RecoverState.set_since)

    @rx.event
    def set_open(self, value: bool):
        if not self.starting:
            self.open = value

    @rx.event
    def set_since(self, value: str):
        self.since_local, self.errors["since"] = str(value or "")[:32], ""

    @rx.event
    def set_event_type(self, value: str):
        if value == ALL or catalog.is_event_type(value):
            self.event_type, self.errors["event_types"] = value, ""

    @rx.event
    def set_statuses(self, value: str):
        if value in STATUS_CHOICES:
            self.statuses, self.errors["statuses"] = value, ""

    @rx.event
    async def start(self):
        page = await self._page()
        since = parse_local(self.since_local, viewer_zone(page.time_zone))
        if since is None:
            self.errors = _blank_errors() | {"since": "Choose the date and time to recover from."}
            return
        self.starting = True
        try:
            with session_scope() as session:
                started = recovery.start_recovery(
                    session=session,
                    webhook_id=page.webhook_id,
                    since=since,
                    event_types=None if self.event_type == ALL else [self.event_type],
                    statuses=STATUS_CHOICES.get(self.statuses, ["failure"]),
                    actor=access.actor(),
                )
        except InvalidInput as exc:
            self.errors = _blank_errors() | exc.errors
            return
        except NotFound as exc:
            self.open = False
            return rx.toast.error(str(exc))
        finally:
            self.starting = False
        self.open = False
        (await self.get_state(RecoveryProgressState))._show(page.webhook_id, started)
        if started.total == 0:
            return rx.toast.info("Nothing to recover: no delivery matches since that time.")
        noun = "delivery" if started.total == 1 else "deliveries"
        return rx.toast.success(f"Recovery started: {started.total:,} {noun} to send again.")

    @rx.event
    async def cancel(self):
        shown = await self.get_state(RecoveryProgressState)
        if not shown.progress.id:
            return
        try:
            with session_scope() as session:
                cancelled = recovery.cancel_recovery(
                    session=session, recovery_id=shown.progress.id, actor=access.actor()
                )
        except InvalidInput as exc:
            return [rx.toast.error(_first_error(exc)), RecoveryProgressState.refresh]
        except NotFound as exc:
            return rx.toast.error(str(exc))
        shown._show(shown.webhook_id, cancelled)
        return [
            rx.toast.success("Recovery cancelled: what it queued and has not sent yet is taken back."),
            WebhookPageState.load,
        ]


class OperationalState(rx.State):
    """The operational webhook (admins only): where the console's notices about webhooks go."""

    webhook_id: int = 0
    current_url: str = ""
    url: str = ""
    error: str = ""
    saving: bool = False
    secret: str = ""
    shown: bool = False

    def _fill(self, webhook) -> None:
        self.webhook_id = webhook.id if webhook else 0
        self.current_url = webhook.url if webhook else ""
        self.url, self.error, self.secret, self.shown = self.current_url, "", "", False

    @rx.event
    def load(self):
        with session_scope() as session:
            self._fill(notices.operational_webhook(session=session))

    @rx.event
    def set_url(self, value: str):
        self.url, self.error = value[:2048], ""

    @rx.event
    def save(self):
        self.saving = True
        try:
            with session_scope() as session:
                created = notices.operational_webhook(session=session) is None
                webhook = notices.set_operational_webhook(session=session, url=self.url, actor=access.actor())
                self._fill(webhook)
        except InvalidInput as exc:
            self.error = exc.errors.get("url") or _first_error(exc)
            return
        finally:
            self.saving = False
        return rx.toast.success(
            "Operational webhook created: it receives the four operational events."
            if created
            else "Operational webhook URL saved."
        )

    @rx.event
    def remove(self):
        with session_scope() as session:
            removed = notices.remove_operational_webhook(session=session, actor=access.actor())
        self._fill(None)
        if removed:
            return rx.toast.success("Operational webhook removed: no notices are sent.")

    @rx.event
    def toggle_secret(self, showing: bool = False):
        """Reveal, or hide what the browser shows (`showing`: the server keeps no copy to tell)."""
        if showing:
            self.secret, self.shown = "", False
            return
        try:
            self.secret, self.shown = read_secret(self.webhook_id, "secret.revealed", operational=True), True
        except NotFound as exc:
            yield rx.toast.error(str(exc))
            return
        yield
        forget(self, "secret", "shown")

    @rx.event
    def copy_secret(self):
        try:
            secret = read_secret(self.webhook_id, "secret.copied", operational=True)
        except NotFound as exc:
            return rx.toast.error(str(exc))
        return [rx.set_clipboard(secret), rx.toast.success("Signing secret copied.")]
