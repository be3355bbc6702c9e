"""The webhook list, the Create / Edit dialog, the signing secret and Delete."""

from __future__ import annotations

import logging

import reflex as rx
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from kwik_console.core.clock import utcnow
from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.events import catalog, rollups
from kwik_console.store.db import get_engine, session_scope
from kwik_console.store.tables import Webhook, WebhookStatus
from kwik_console.team import access
from kwik_console.ui.state.common import forget, webhook_id_from
from kwik_console.ui.state.webhook_page import WebhookPageState
from kwik_console.ui.views import FiguresView, OverviewRow, WebhookRow
from kwik_console.webhooks import rules
from kwik_console.webhooks import service as webhooks

log = logging.getLogger(__name__)
UNAVAILABLE = "The webhooks could not be loaded: the database is unavailable. Try again in a moment."


class WebhooksState(rx.State):
    rows: list[WebhookRow] = []
    search: str = ""
    page: int = 1
    pages: int = 1
    total: int = 0
    # False only when there are no webhooks at all: the empty state, not "no match".
    any_webhooks: bool = True
    loading: bool = True
    error: str = ""
    # The overview: every webhook's last 24 h, and the webhooks with the most failed attempts first.
    overview: FiguresView = FiguresView()
    worst: list[OverviewRow] = []
    # Webhooks the console disabled by itself (on any page of the list): a banner each, above the list.
    auto_disabled: list[WebhookRow] = []

    @rx.event
    def load(self):
        try:
            with get_engine().connect() as conn:
                overall, worst = rollups.overview(conn, now=utcnow())
            with session_scope() as session:
                result = webhooks.list_webhooks(session=session, search=self.search, page=self.page)
                if result.page > result.pages:  # the last row of the last page was deleted
                    result = webhooks.list_webhooks(session=session, search=self.search, page=result.pages)
                any_webhooks = result.total > 0 or bool(
                    self.search and webhooks.list_webhooks(session=session, per_page=1).total
                )
                auto_disabled = session.exec(
                    select(Webhook)
                    .where(
                        Webhook.status == WebhookStatus.DISABLED,
                        col(Webhook.disabled_reason).is_not(None),
                        col(Webhook.operational).is_(False),
                    )
                    .order_by(col(Webhook.disabled_at).desc())
                    .limit(20)
                ).all()
                self.auto_disabled = [WebhookRow.of(w) for w in auto_disabled]
                worst_hooks = {
                    w.id: WebhookRow.of(w)
                    for w in session.exec(select(Webhook).where(col(Webhook.id).in_([w.webhook_id for w in worst])))
                }
        except SQLAlchemyError:
            log.exception("listing webhooks failed")
            self.error, self.loading = UNAVAILABLE, False
            return
        self.rows = [WebhookRow.of(w) for w in result.items]
        self.page, self.pages, self.total = result.page, result.pages, result.total
        self.any_webhooks = any_webhooks
        self.overview = FiguresView.of(overall)
        self.worst = [
            OverviewRow(
                w.webhook_id,
                w.name,
                WebhookStatus(w.status).label,
                FiguresView.of(w.figures),
                (row := worst_hooks.get(w.webhook_id, WebhookRow())).warn,
                row.failing_since,
            )
            for w in worst
        ]
        self.loading, self.error = False, ""

    @rx.event
    def set_search(self, value: str):
        self.search = value
        self.page = 1
        return WebhooksState.load

    @rx.event
    def clear_search(self):
        return WebhooksState.set_search("")

    @rx.event
    def next_page(self):
        if self.page < self.pages:
            self.page += 1
            return WebhooksState.load

    @rx.event
    def previous_page(self):
        if self.page > 1:
            self.page -= 1
            return WebhooksState.load


def _blank_errors() -> dict[str, str]:
    return {"name": "", "url": "", "events": "", "status": "", "max_per_second": "", "headers": "", "webhook": ""}


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


# Once the errors are drawn: the first field they name in focus and in view (not the last, at the bottom).
FOCUS_FIRST_INVALID = """
requestAnimationFrame(() => requestAnimationFrame(() => {
  const dialog = document.querySelector('[role=dialog]');
  const field = dialog && dialog.querySelector('[aria-invalid=true], [role=alert]');
  if (!field) return;
  field.scrollIntoView({block: 'center'});
  // A message without a field of its own (the events): the first control of its group.
  const control = field.matches('[role=alert]')
    ? field.parentElement.querySelector('input, button, textarea, [tabindex]') : field;
  if (control) control.focus({preventScroll: true});
}));
"""


class WebhookFormState(rx.State):
    """Create and Edit share one dialog; `webhook_id` is 0 when creating."""

    open: bool = False
    webhook_id: int = 0
    name: str = ""
    url: str = ""
    events: list[str] = []
    # "All events (including types added later)": the `events` ticked stay for a switch back to Selected.
    all_events: bool = False
    status: str = "live"
    max_per_second: str = ""  # "Max deliveries per second"; empty for no limit
    # Custom headers, a [name, value] row each; blank rows are dropped on save.
    headers: list[list[str]] = []
    errors: dict[str, str] = _blank_errors()
    saving: bool = False
    # The signing secret reaches the browser only once a member allowed to see it reveals it;
    # until then it stays in the database, not even in backend state, and the server forgets it once sent.
    secret: str = ""
    secret_shown: bool = False

    @rx.var
    def editing(self) -> bool:
        return self.webhook_id != 0

    @rx.var
    def events_mode(self) -> str:
        return "all" if self.all_events else "selected"

    @rx.var
    def can_add_header(self) -> bool:
        return len(self.headers) < rules.HEADERS_MAX

    @rx.event
    def open_create(self):
        self._fill(0, "", "", [], "live", "", {})

    @rx.event
    def open_edit(self, webhook_id: int):
        try:
            with session_scope() as session:
                webhook = webhooks.get_webhook(session=session, webhook_id=webhook_id)
                events = webhooks.webhook_events(session=session, webhook_id=webhook_id)
        except NotFound as exc:
            return [rx.toast.error(str(exc)), WebhooksState.load]
        rate = _rate(webhook.max_per_second)
        self._fill(webhook.id, webhook.name, webhook.url, events, webhook.status, rate, webhook.headers or {})

    def _fill(self, webhook_id, name, url, events, status, max_per_second, headers):
        self.all_events = events == [rules.ALL_EVENTS]
        if self.all_events:
            events = []
        self.webhook_id, self.name, self.url, self.events, self.status = webhook_id, name, url, events, status
        self.max_per_second = max_per_second
        self.headers = [[n, v] for n, v in headers.items()]
        self.secret, self.secret_shown = "", False
        self.errors, self.saving, self.open = _blank_errors(), False, True

    @rx.event
    def set_open(self, value: bool):
        if not self.saving:
            self.open = value
            if not value:
                self.secret, self.secret_shown = "", False

    @rx.event
    def set_name(self, value: str):
        self.name, self.errors["name"] = value, ""

    @rx.event
    def set_url(self, value: str):
        self.url, self.errors["url"] = value, ""

    @rx.event
    def set_status(self, value: str | list[str]):
        self.status = value if isinstance(value, str) else value[0]
        self.errors["status"] = ""

    @rx.event
    def set_max_per_second(self, value: str):
        self.max_per_second, self.errors["max_per_second"] = value[:20], ""

    @rx.event
    def toggle_event(self, name: str, checked: bool):
        chosen = set(self.events) | {name} if checked else set(self.events) - {name}
        self.events = [e for e in catalog.event_type_names() if e in chosen]
        self.errors["events"] = ""

    @rx.event
    def select_all(self):
        self.events, self.errors["events"] = catalog.event_type_names(), ""

    @rx.event
    def select_none(self):
        self.events = []

    @rx.event
    def set_events_mode(self, value: str | list[str]):
        self.all_events = (value if isinstance(value, str) else value[0]) == "all"
        self.errors["events"] = ""

    @rx.event
    def add_header(self):
        if len(self.headers) < rules.HEADERS_MAX:
            self.headers = [*self.headers, ["", ""]]

    @rx.event
    def remove_header(self, index: int):
        if isinstance(index, int) and 0 <= index < len(self.headers):
            self.headers = self.headers[:index] + self.headers[index + 1 :]
            self.errors["headers"] = ""

    @rx.event
    def set_header_name(self, index: int, value: str):
        self._set_header(index, 0, value)

    @rx.event
    def set_header_value(self, index: int, value: str):
        self._set_header(index, 1, value)

    def _set_header(self, index: int, part: int, value: str) -> None:
        if isinstance(index, int) and 0 <= index < len(self.headers) and isinstance(value, str):
            row = list(self.headers[index])
            row[part] = value[:65536]  # bounds what the state holds; the rule says the real limit, with the length
            self.headers = self.headers[:index] + [row] + self.headers[index + 1 :]
            self.errors["headers"] = ""

    @rx.event
    def save(self):
        self.saving = True
        yield
        # "" is no limit: on Edit it removes one (None would leave it unchanged).
        data = rules.WebhookInput(
            name=self.name,
            url=self.url,
            events=[rules.ALL_EVENTS] if self.all_events else self.events,
            status=self.status,
            max_per_second=self.max_per_second,
            headers=[(n, v) for n, v in self.headers if n.strip() or v.strip()],
        )
        try:
            with session_scope() as session:
                if self.editing:
                    webhook = webhooks.update_webhook(
                        session=session, webhook_id=self.webhook_id, data=data, actor=access.actor()
                    )
                else:
                    webhook = webhooks.create_webhook(session=session, data=data, actor=access.actor())
        except InvalidInput as exc:
            self.errors = _blank_errors() | exc.errors
            yield rx.call_script(FOCUS_FIRST_INVALID)
            return
        except NotFound as exc:
            self.saving, self.open = False, False
            yield [rx.toast.error(str(exc)), WebhooksState.load]
            return
        except SQLAlchemyError:
            log.exception("saving a webhook failed")
            self.saving = False
            yield rx.toast.error("The webhook could not be saved: the database is unavailable. Try again in a moment.")
            return
        finally:
            # Whatever went wrong, even an error not caught above, the dialog must not stay "Saving…".
            self.saving = False
        self.open = False
        if self.editing:
            yield [rx.toast.success(f"Webhook “{webhook.name}” saved."), WebhooksState.load, WebhookPageState.load]
            return
        # Its page is the next step: a test event is offered at the top.
        yield [rx.toast.success(f"Webhook “{webhook.name}” created."), rx.redirect(f"/webhooks/{webhook.id}?created=1")]

    def _read_secret(self, action: str) -> str:
        """The secret, read from the database for a member who asked for it, and recorded in the trail."""
        with session_scope() as session:
            return webhooks.reveal_secret(
                session=session, webhook_id=self.webhook_id, actor=access.actor(), copied=action == "secret.copied"
            ).secret

    @rx.event
    def toggle_secret(self, showing: bool = False):
        """Reveal, or hide what the browser shows (`showing`: the server keeps no copy to tell)."""
        if showing:
            self.secret, self.secret_shown = "", False
            return
        try:
            self.secret, self.secret_shown = self._read_secret("secret.revealed"), True
        except NotFound as exc:
            yield rx.toast.error(str(exc))
            return
        yield
        forget(self, "secret", "secret_shown")

    @rx.event
    def copy_secret(self):
        try:
            secret = self._read_secret("secret.copied")
        except NotFound as exc:
            return rx.toast.error(str(exc))
        return [rx.set_clipboard(secret), rx.toast.success("Signing secret copied.")]

    @rx.event
    def rotate_secret(self):
        try:
            with session_scope() as session:
                webhook = webhooks.rotate_secret(session=session, webhook_id=self.webhook_id, actor=access.actor())
        except NotFound as exc:
            yield rx.toast.error(str(exc))
            return
        self.secret, self.secret_shown = webhook.secret, True
        yield rx.toast.success("New signing secret created. The previous one keeps signing for 24 hours.")
        forget(self, "secret", "secret_shown")


class DeleteState(rx.State):
    open: bool = False
    webhook_id: int = 0
    name: str = ""
    deleting: bool = False

    @rx.event
    def ask(self, webhook_id: int, name: str):
        self.webhook_id, self.name, self.deleting, self.open = webhook_id, name, False, True

    @rx.event
    def set_open(self, value: bool):
        if not self.deleting:
            self.open = value

    @rx.event
    def confirm(self):
        self.deleting = True
        yield
        try:
            with session_scope() as session:
                webhooks.delete_webhook(session=session, webhook_id=self.webhook_id, actor=access.actor())
        except NotFound:
            pass  # already gone: the outcome the merchant wanted
        self.deleting, self.open = False, False
        done = [rx.toast.success(f"Webhook “{self.name}” deleted."), WebhooksState.load]
        if webhook_id_from(self.router.url.path):  # deleted from its own page, which is gone now
            done.append(rx.redirect("/"))
        yield done
