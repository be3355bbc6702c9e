"""The event log of one webhook (/webhooks/[id]/events): filters, pages, live refresh and the details drawer."""

from __future__ import annotations

import reflex as rx

from kwik_console.events import catalog
from kwik_console.events.search import SEARCHED
from kwik_console.ui.components.common import (
    SR_ONLY,
    code_block,
    copy_button,
    error_callout,
    loading_rows,
    local_time,
    page,
    status_badge,
)
from kwik_console.ui.state.event_log import ALL, ResendState
from kwik_console.ui.state.event_log import EventLogState as Log
from kwik_console.ui.state.session import SessionState
from kwik_console.ui.views import AttemptView, DeliveryRow

COLUMNS = ("Time", "Event", "Status", "HTTP Code", "Test Event", "Retry Timestamp", "Retry Counter")


def _select(label: str, value, on_change, options: list[tuple[str, str]]) -> rx.Component:
    return rx.select.root(
        rx.select.trigger(aria_label=label, min_width="150px"),
        rx.select.content(*[rx.select.item(text, value=v) for v, text in options]),
        value=value,
        on_change=on_change,
    )


def _filters() -> rx.Component:
    return rx.hstack(
        _select(
            "Status",
            Log.status,
            Log.set_status,
            [
                (ALL, "All statuses"),
                ("pending", "Pending"),
                ("success", "Success"),
                ("retrying", "Retrying"),
                ("failure", "Failure"),
            ],
        ),
        _select(
            "Event type",
            Log.event_type,
            Log.set_event_type,
            [(ALL, "All event types"), *[(n, n) for n in catalog.event_type_names()]],
        ),
        _select(
            "Test Event",
            Log.test,
            Log.set_test,
            [(ALL, "Test and live events"), ("yes", "Test events only"), ("no", "Live events only")],
        ),
        _date("From", "event-since", Log.since_local, Log.set_since),
        _date("To", "event-until", Log.until_local, Log.set_until),
        rx.cond(
            Log.filtered,
            rx.button(rx.icon("x", size=14), "Clear filters", variant="ghost", size="2", on_click=Log.clear_filters),
        ),
        spacing="3",
        wrap="wrap",
        align="end",
    )


def _date(label: str, id_: str, value, on_change) -> rx.Component:
    """One end of the date range: wall time in the viewer's own time zone, as the browser's picker shows it."""
    return rx.vstack(
        rx.el.label(label, html_for=id_, class_name="rt-Text rt-r-size-1"),
        rx.input(
            id=id_,
            type="datetime-local",
            value=value,
            on_change=on_change.debounce(400),
            size="2",
            aria_invalid=rx.cond((id_ == "event-until") & (Log.range_error != ""), "true", "false"),
            aria_describedby="event-range-error",
        ),
        spacing="1",
    )


def _search() -> rx.Component:
    return rx.vstack(
        rx.input(
            rx.input.slot(rx.icon("search", size=16)),
            placeholder="Event id, or a value in the payload: pay_01JDX…, jane@example.com",
            value=Log.search,
            on_change=Log.set_search,
            debounce_timeout=400,
            aria_label="Search deliveries",
            aria_describedby="event-search-help",
            width="100%",
            max_width="520px",
            size="2",
        ),
        rx.text(SEARCHED, id="event-search-help", size="1", color_scheme="gray"),
        spacing="1",
        width="100%",
    )


def _export() -> rx.Component:
    base = "/export/webhooks/" + Log.webhook_id_shown.to_string() + "/events"
    return rx.hstack(
        rx.text(
            rx.cond(Log.filtered, "Export these deliveries:", "Export all deliveries:"), size="1", color_scheme="gray"
        ),
        # rx.el.a is React Router's <Link>, which would route the click inside the app (to its 404 page):
        # reload_document leaves it to the browser, which downloads the same-origin file, cookie and all.
        rx.el.a(
            "CSV",
            href=base + ".csv?" + Log.export_query,
            download="",
            reload_document=True,
            class_name="rt-Text rt-r-size-1 rt-Link",
        ),
        rx.el.a(
            "JSON Lines",
            href=base + ".jsonl?" + Log.export_query,
            download="",
            reload_document=True,
            class_name="rt-Text rt-r-size-1 rt-Link",
        ),
        spacing="2",
        align="center",
    )


_ROW_BUTTON = {
    "cursor": "pointer",
    "text_align": "left",
    "border_radius": "4px",
    "_focus_visible": {"outline": "2px solid var(--focus-8)", "outline_offset": "2px"},
}


def _resend_button(delivery_id, size: str) -> rx.Component:
    return rx.button(
        rx.icon("send", size=12 if size == "1" else 14),
        "Resend",
        size=size,
        variant="soft",
        loading=ResendState.resending == delivery_id,
        disabled=ResendState.resending != 0,
        on_click=ResendState.resend(delivery_id).stop_propagation,
    )


# On a phone the event log is one stacked column: the Event cell carries the others' values.
WIDE = ["none", "table-cell"]
PHONE_ONLY = ["flex", "none"]


def _test_mark(row: DeliveryRow) -> rx.Component:
    return rx.cond(
        row.test,
        rx.badge("Test", color_scheme="violet", variant="soft"),
        rx.text("—", color_scheme="gray", size="2", aria_label="No"),
    )


# The absolute time on hover, as the console writes times elsewhere: day, month, year, 24-hour clock.
ABSOLUTE = (
    "{day: 'numeric', month: 'short', year: 'numeric',"
    " hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23'}"
)


def _retry(row: DeliveryRow) -> rx.Component:
    """When the next retry goes: relative ("in 2 minutes"), with the absolute time, in the viewer's zone, on hover."""
    absolute = rx.Var(
        _js_expr=f"new Date({row.retry_at._js_expr}).toLocaleString(undefined, {ABSOLUTE})", _var_type=str
    )
    return rx.cond(
        row.retry_at != "",
        rx.el.span(rx.moment(row.retry_at, from_now=True, interval=1000), title=absolute),
        rx.text(""),
    )


def _stacked(row: DeliveryRow) -> rx.Component:
    """What the other columns say, under the event, on a phone."""
    return rx.flex(
        rx.text(local_time(row.created_at), size="2", color_scheme="gray"),
        status_badge(row.status),
        rx.cond(row.http_code != "", rx.text(row.http_code, font_family="var(--code-font-family)", size="2")),
        rx.cond(row.test, rx.badge("Test", color_scheme="violet", variant="soft")),
        rx.cond(
            row.retry_at != "",
            rx.text(
                "Next retry ", _retry(row), " · retries so far: ", row.retry_counter, size="1", color_scheme="gray"
            ),
        ),
        display=PHONE_ONLY,
        wrap="wrap",
        gap="2",
        align="center",
        padding_top="4px",
    )


def _row(row: DeliveryRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(local_time(row.created_at), white_space="nowrap", display=WIDE),
        rx.table.cell(
            rx.vstack(
                details_button(row),
                rx.text(
                    row.event_id,
                    size="1",
                    color_scheme="gray",
                    font_family="var(--code-font-family)",
                    style={"word_break": "break-all"},
                ),
                _stacked(row),
                spacing="0",
            )
        ),
        rx.table.cell(status_badge(row.status), display=WIDE),
        rx.table.cell(rx.text(row.http_code, font_family="var(--code-font-family)"), display=WIDE),
        rx.table.cell(_test_mark(row), display=WIDE),
        rx.table.cell(_retry(row), white_space="nowrap", display=WIDE),
        rx.table.cell(row.retry_counter, display=WIDE),
        rx.table.cell(
            rx.cond(
                SessionState.can_resend & ((row.status == "Failure") | (row.status == "Retrying")),
                _resend_button(row.id, "1"),
            ),
            on_click=rx.stop_propagation,
        ),
        **opens_details(row),
    )


def details_button(row: DeliveryRow) -> rx.Component:
    """The event type, as a button: the row opens the details on a click, and this does it for keyboards and
    readers too."""
    return rx.el.button(
        rx.text(row.event_type, weight="medium", size="2"),
        type="button",
        on_click=Log.show(row.id).stop_propagation,
        class_name="rt-reset kwik-row-open",
        aria_haspopup="dialog",
        style=_ROW_BUTTON,
    )


def opens_details(row: DeliveryRow) -> dict:
    """A delivery's table row that opens its details drawer, here and on the webhook's page."""
    return {
        "on_click": Log.show(row.id),
        "cursor": "pointer",
        "style": {"_hover": {"background": rx.color("accent", 2)}},
        "aria_label": "Delivery " + row.id.to_string() + ": " + row.event_type,
        "align": "center",
    }


def _table() -> rx.Component:
    return rx.box(
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    *[
                        rx.table.column_header_cell(c, white_space="nowrap", display=None if c == "Event" else WIDE)
                        for c in COLUMNS
                    ],
                    rx.table.column_header_cell(rx.el.span("Actions", style=SR_ONLY)),
                )
            ),
            rx.table.body(rx.cond(Log.loading, loading_rows(len(COLUMNS) + 1), rx.foreach(Log.rows, _row))),
            variant="surface",
            width="100%",
            size="2",
        ),
        width="100%",
        overflow_x="auto",
    )


def _empty() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.icon("inbox", size=28, color=rx.color("gray", 9)),
            rx.cond(
                Log.filtered,
                rx.fragment(
                    rx.text("No deliveries match these filters", weight="medium"),
                    rx.button("Clear filters", variant="soft", size="2", on_click=Log.clear_filters),
                ),
                rx.fragment(
                    rx.text("No deliveries yet", weight="medium"),
                    rx.text(
                        "Deliveries appear here as events occur. Use Test Webhook to send one now.",
                        size="2",
                        color_scheme="gray",
                        align="center",
                    ),
                ),
            ),
            align="center",
            spacing="2",
            padding="32px",
        ),
        width="100%",
    )


def _pager() -> rx.Component:
    return rx.hstack(
        rx.text("Newest first · live", size="1", color_scheme="gray", display=["none", "block"]),
        rx.spacer(),
        rx.button("Newer", size="1", variant="soft", on_click=Log.newer, disabled=Log.cursors.length() == 0),
        rx.text("Page " + Log.page_number.to_string(), size="2", white_space="nowrap"),
        rx.button("Older", size="1", variant="soft", on_click=Log.older, disabled=Log.next_before == 0),
        width="100%",
        align="center",
        spacing="3",
        padding_top="12px",
    )


def _headers(headers) -> rx.Component:
    return rx.box(
        rx.foreach(
            headers,
            lambda h: rx.hstack(
                rx.text(h.name, size="1", weight="medium", min_width="150px", font_family="var(--code-font-family)"),
                rx.text(h.value, size="1", style={"word_break": "break-all"}, font_family="var(--code-font-family)"),
                spacing="3",
                align="start",
            ),
        ),
        width="100%",
    )


def _attempt(a: AttemptView) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.text("Attempt " + a.number.to_string(), weight="bold", size="2"),
                rx.text(local_time(a.attempted_at), size="1", color_scheme="gray"),
                rx.spacer(),
                rx.badge(
                    "HTTP " + rx.cond(a.http_code != "", a.http_code, "—"),
                    color_scheme=rx.cond(a.http_code.startswith("2"), "green", "red"),
                    variant="soft",
                ),
                rx.text(a.duration_ms.to_string() + " ms", size="1", color_scheme="gray"),
                width="100%",
                align="center",
                spacing="2",
                wrap="wrap",
            ),
            rx.cond(a.error != "", rx.text("Error: " + a.error, color_scheme="red", size="2")),
            rx.cond(
                a.response_headers.length() > 0,
                rx.vstack(
                    rx.text("Response headers", size="1", weight="bold", color_scheme="gray"),
                    _headers(a.response_headers),
                    spacing="1",
                    width="100%",
                ),
            ),
            rx.cond(
                a.response_body != "",
                rx.vstack(
                    rx.text("Response body (first 20 KB)", size="1", weight="bold", color_scheme="gray"),
                    code_block(a.response_body, max_height="160px"),
                    spacing="1",
                    width="100%",
                ),
            ),
            spacing="2",
            width="100%",
        ),
        width="100%",
    )


def delivery_drawer() -> rx.Component:
    """A delivery's details, from the event log or the webhook's page: payload, headers, every attempt."""
    d = Log.detail
    return rx.drawer.root(
        rx.drawer.overlay(z_index="50"),
        rx.drawer.portal(
            rx.drawer.content(
                rx.vstack(
                    rx.hstack(
                        rx.drawer.title(d.row.event_type, size="5"),
                        rx.spacer(),
                        rx.drawer.close(
                            rx.icon_button(
                                rx.icon("x", size=16), variant="ghost", color_scheme="gray", aria_label="Close details"
                            )
                        ),
                        width="100%",
                        align="center",
                    ),
                    rx.drawer.description(
                        d.row.event_id, size="1", color_scheme="gray", font_family="var(--code-font-family)"
                    ),
                    rx.hstack(
                        status_badge(d.row.status),
                        rx.cond(SessionState.can_resend, _resend_button(d.row.id, "2")),
                        rx.cond(d.row.test, rx.badge("Test event", color_scheme="violet", variant="soft")),
                        rx.text("Retry Counter: " + d.row.retry_counter.to_string(), size="1", color_scheme="gray"),
                        rx.cond(
                            d.row.retry_at != "",
                            rx.text("Next retry ", local_time(d.row.retry_at), size="1", color_scheme="gray"),
                        ),
                        spacing="3",
                        align="center",
                        wrap="wrap",
                    ),
                    rx.flex(
                        rx.link(
                            rx.button(rx.icon("shield-check", size=14), "Check signature", size="1", variant="soft"),
                            href="/developers?delivery=" + d.row.id.to_string(),
                        ),
                        copy_button("Copy event id", d.row.event_id),
                        copy_button("Copy payload", d.payload),
                        gap="8px",
                        wrap="wrap",
                    ),
                    rx.text("Payload", size="2", weight="bold", padding_top="8px"),
                    code_block(d.payload, max_height="260px"),
                    rx.text("Request headers", size="2", weight="bold", padding_top="8px"),
                    rx.cond(
                        d.request_headers.length() > 0,
                        _headers(d.request_headers),
                        rx.text("Not attempted yet.", size="2", color_scheme="gray"),
                    ),
                    rx.text("Attempts", size="2", weight="bold", padding_top="8px"),
                    rx.cond(
                        d.attempts.length() > 0,
                        rx.vstack(rx.foreach(d.attempts, _attempt), width="100%"),
                        rx.text("Not attempted yet.", size="2", color_scheme="gray"),
                    ),
                    spacing="2",
                    width="100%",
                    padding="20px",
                ),
                role="dialog",
                aria_label="Delivery details",
                top="0",
                right="0",
                left="auto",
                height="100%",
                width=["100%", "100%", "560px"],
                z_index="60",
                overflow_y="auto",
                # Never sideways: the drawer's own backdrop (a pseudo-element past its edge) made it scroll.
                overflow_x="hidden",
                background=rx.color("gray", 1),
                position="fixed",
            ),
        ),
        open=Log.detail_open,
        on_open_change=Log.set_detail_open,
        direction="right",
    )


def event_log_page() -> rx.Component:
    return page(
        rx.box(display="none", on_unmount=Log.stop_following),
        rx.vstack(
            rx.link(
                rx.hstack(rx.icon("arrow-left", size=14), rx.text("Webhooks"), align="center", spacing="1"),
                href="/",
                size="2",
            ),
            rx.cond(
                Log.missing,
                rx.callout.root(
                    rx.callout.text("This webhook does not exist. It may have been deleted."), color_scheme="amber"
                ),
                rx.fragment(
                    rx.vstack(
                        rx.heading("Events · " + Log.webhook_name, size="6"),
                        rx.text(Log.webhook_url, size="2", color_scheme="gray", style={"word_break": "break-all"}),
                        rx.text(Log.retention, size="1", color_scheme="gray"),
                        spacing="1",
                    ),
                    rx.cond(Log.error != "", error_callout(Log.error, Log.refresh)),
                    _search(),
                    rx.hstack(_filters(), rx.spacer(), _export(), width="100%", align="end", wrap="wrap", gap="8px"),
                    rx.cond(
                        Log.range_error != "",
                        rx.text(Log.range_error, id="event-range-error", color_scheme="red", size="2", role="alert"),
                    ),
                    rx.cond(~Log.loading & (Log.rows.length() == 0), _empty(), _table()),
                    _pager(),
                ),
            ),
            spacing="4",
            width="100%",
        ),
        delivery_drawer(),
    )
