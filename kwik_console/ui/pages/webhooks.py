"""The Webhooks page: the list, search, pagination, empty state and each row's actions."""

from __future__ import annotations

import reflex as rx

from kwik_console.ui.components.common import (
    SR_ONLY,
    error_callout,
    loading_rows,
    page,
    status_badge,
    table_name,
)
from kwik_console.ui.components.dates import when
from kwik_console.ui.components.dialogs import delete_dialog, test_dialog
from kwik_console.ui.components.operations import disabled_banner, failing_badge
from kwik_console.ui.components.webhook_form import webhook_form_dialog
from kwik_console.ui.pages.webhook_page import figures_row
from kwik_console.ui.state.operations import HealthState
from kwik_console.ui.state.session import SessionState
from kwik_console.ui.state.webhook_tester import TestWebhookState
from kwik_console.ui.state.webhooks import DeleteState, WebhookFormState
from kwik_console.ui.state.webhooks import WebhooksState as List
from kwik_console.ui.views import OverviewRow, WebhookRow

INTRO = "Receive real-time notifications from Kwik when events occur on your account."


def _actions(row: WebhookRow) -> rx.Component:
    return rx.dropdown_menu.root(
        rx.dropdown_menu.trigger(
            rx.icon_button(
                rx.icon("ellipsis", size=16), variant="ghost", color_scheme="gray", aria_label="Actions for " + row.name
            ),
        ),
        rx.dropdown_menu.content(
            # Only what the member's role allows; the guard refuses the rest anyway.
            rx.cond(
                SessionState.can_test,
                rx.dropdown_menu.item("Test Webhook", on_click=TestWebhookState.start(row.id, row.name)),
            ),
            rx.dropdown_menu.item("View Events", on_click=rx.redirect("/webhooks/" + row.id.to_string() + "/events")),
            rx.cond(
                SessionState.can_pause,
                rx.match(
                    row.status,
                    ("Live", rx.dropdown_menu.item("Pause", on_click=HealthState.pause(row.id))),
                    ("Paused", rx.dropdown_menu.item("Resume", on_click=HealthState.resume(row.id))),
                    rx.fragment(),
                ),
            ),
            rx.cond(
                SessionState.can_write,
                rx.fragment(
                    rx.dropdown_menu.item("Edit", on_click=WebhookFormState.open_edit(row.id)),
                    rx.dropdown_menu.separator(),
                    rx.dropdown_menu.item("Delete", color_scheme="red", on_click=DeleteState.ask(row.id, row.name)),
                ),
            ),
            align="end",
        ),
    )


def webhook_href(webhook_id) -> rx.Var:
    return "/webhooks/" + webhook_id.to_string()


def _row(row: WebhookRow) -> rx.Component:
    # The whole row opens the webhook (as Stripe and Svix do); its name is the link keyboards and readers use.
    return rx.table.row(
        rx.table.cell(
            when(row.created_at, "minutes"),
            white_space="nowrap",
            display=["none", "none", "table-cell"],
        ),
        rx.table.cell(
            rx.link(
                row.name, href=webhook_href(row.id), weight="medium", high_contrast=True, on_click=rx.stop_propagation
            ),
            rx.cond(row.all_events, rx.badge("All events", variant="soft", color_scheme="gray", margin_left="6px")),
            # On a phone the URL goes under the name instead of in a column of its own.
            rx.text(
                row.url, color_scheme="gray", size="1", style={"word_break": "break-all"}, display=["block", "none"]
            ),
        ),
        rx.table.cell(
            rx.text(row.url, color_scheme="gray", style={"word_break": "break-all"}, size="2"),
            display=["none", "table-cell"],
        ),
        rx.table.cell(
            rx.flex(
                status_badge(row.status),
                rx.cond(row.warn, failing_badge(row.failing_since)),
                gap="6px",
                wrap="wrap",
                align="center",
            )
        ),
        rx.table.cell(_actions(row), text_align="right", on_click=rx.stop_propagation),
        align="center",
        cursor="pointer",
        on_click=rx.redirect(webhook_href(row.id)),
        style={"_hover": {"background": rx.color("accent", 2)}},
    )


def _table() -> rx.Component:
    return rx.table.root(
        table_name("Webhooks"),
        rx.table.header(
            rx.table.row(
                rx.table.column_header_cell("Created", display=["none", "none", "table-cell"]),
                rx.table.column_header_cell("Name"),
                rx.table.column_header_cell("Webhook URL", display=["none", "table-cell"]),
                rx.table.column_header_cell("Status"),
                rx.table.column_header_cell(rx.el.span("Actions", style=SR_ONLY), width="56px"),
            )
        ),
        rx.table.body(
            rx.cond(
                List.loading,
                loading_rows(5),
                rx.foreach(List.rows, _row),
            )
        ),
        variant="surface",
        width="100%",
        size="2",
    )


def _no_match() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.icon("search-x", size=28, color=rx.color("gray", 9)),
            rx.text("No webhooks match “", List.search, "”.", weight="medium"),
            rx.button("Clear search", variant="soft", on_click=List.clear_search),
            align="center",
            spacing="3",
            padding="24px",
        ),
        width="100%",
    )


def _pagination() -> rx.Component:
    return rx.hstack(
        rx.text(
            List.total.to_string() + rx.cond(List.total == 1, " webhook", " webhooks"), size="2", color_scheme="gray"
        ),
        rx.spacer(),
        rx.cond(
            List.pages > 1,
            rx.hstack(
                rx.button("Previous", size="1", variant="soft", on_click=List.previous_page, disabled=List.page <= 1),
                rx.text("Page " + List.page.to_string() + " of " + List.pages.to_string(), size="2"),
                rx.button("Next", size="1", variant="soft", on_click=List.next_page, disabled=List.page >= List.pages),
                align="center",
                spacing="3",
            ),
        ),
        width="100%",
        align="center",
        padding_top="12px",
    )


# The README's five minutes, on this machine (local mode: loopback receivers are allowed).
QUICKSTART_RECEIVER = "http://127.0.0.1:4242/hook"


def _command(text: str) -> rx.Component:
    return rx.code(text, variant="ghost", size="2", style={"overflow_wrap": "anywhere"})


def _quickstart() -> rx.Component:
    return rx.box(
        rx.heading("Try it in five minutes", size="3", as_="h2"),
        rx.el.ol(
            rx.el.li("Run a receiver that prints what it gets: ", _command(".venv/bin/python examples/receiver.py")),
            rx.el.li("Create a webhook to ", _command(QUICKSTART_RECEIVER), " for ", _command("payment.created"), "."),
            rx.el.li("Send an event: ", _command(".venv/bin/kwik-console trigger payment.created")),
            rx.el.li("Watch it arrive: the receiver prints it, and the webhook's View Events shows the delivery."),
            style={
                "list_style": "decimal",
                "padding_left": "1.5em",
                "margin": "8px 0 0",
                "display": "grid",
                "gap": "6px",
            },
        ),
        font_size="var(--font-size-2)",
        max_width="520px",
        width="100%",
        text_align="left",
    )


def _empty_state() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.box(
                rx.icon("webhook", size=32, color=rx.color("accent", 11)),
                background=rx.color("accent", 3),
                border_radius="999px",
                padding="14px",
            ),
            rx.heading("No webhooks yet", size="5"),
            rx.text(
                "Webhooks let Kwik tell your application the moment something happens on your account: a payment "
                "is confirmed, a customer is created, a payout is paid. Instead of polling the API, your endpoint "
                "receives a signed notification and reacts at once.",
                align="center",
                color_scheme="gray",
                max_width="520px",
            ),
            rx.cond(SessionState.can_write & ~SessionState.hosted, _quickstart()),
            rx.cond(
                SessionState.can_write,
                rx.button(rx.icon("plus", size=16), "Create", size="3", on_click=WebhookFormState.open_create),
                rx.text("Ask a developer or an admin of this console to create one.", size="2", color_scheme="gray"),
            ),
            align="center",
            spacing="4",
            padding_y="48px",
            padding_x="16px",
        ),
        width="100%",
    )


def _overview_row(row: OverviewRow) -> rx.Component:
    f = row.figures
    return rx.table.row(
        rx.table.cell(
            rx.flex(
                rx.link(row.name, href=webhook_href(row.webhook_id), weight="medium", high_contrast=True),
                rx.cond(row.warn, failing_badge(row.failing_since)),
                gap="2",
                align="center",
                wrap="wrap",
            )
        ),
        rx.table.cell(f.attempts, display=["none", "table-cell"]),
        rx.table.cell(
            rx.text(
                f.delivery_rate,
                color_scheme=rx.cond(f.delivered_healthy, "green", "red"),
                high_contrast=True,
                weight="medium",
            )
        ),
        rx.table.cell(
            rx.text(
                f.success_rate, color_scheme=rx.cond(f.healthy, "green", "red"), high_contrast=True, weight="medium"
            )
        ),
        rx.table.cell(f.failures, display=["none", "table-cell"]),
        rx.table.cell(f.p95, display=["none", "table-cell"]),
        rx.table.cell(f.retrying, display=["none", "table-cell"]),
        align="center",
    )


def _overview() -> rx.Component:
    o = List.overview
    return rx.card(
        rx.vstack(
            rx.hstack(rx.heading("Last 24 hours, all webhooks", size="3", as_="h2"), align="center", width="100%"),
            figures_row(o),
            rx.cond(
                List.worst.length() > 0,
                rx.box(
                    rx.table.root(
                        table_name("Webhooks, failing first"),
                        rx.table.header(
                            rx.table.row(
                                rx.table.column_header_cell("Webhook"),
                                rx.table.column_header_cell("Attempts", display=["none", "table-cell"]),
                                rx.table.column_header_cell("Delivered"),
                                rx.table.column_header_cell("Attempt success"),
                                rx.table.column_header_cell("Failed", display=["none", "table-cell"]),
                                rx.table.column_header_cell("p95", display=["none", "table-cell"]),
                                # On a phone: the two rates only (the summary above says what is retrying).
                                rx.table.column_header_cell("Retrying now", display=["none", "table-cell"]),
                            )
                        ),
                        rx.table.body(rx.foreach(List.worst, _overview_row)),
                        size="1",
                        variant="ghost",
                        width="100%",
                    ),
                    width="100%",
                    overflow_x="auto",
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def webhooks_page() -> rx.Component:
    return page(
        rx.vstack(
            rx.hstack(
                rx.vstack(
                    rx.heading("Webhooks", size="7"),
                    rx.text(INTRO, color_scheme="gray", size="2"),
                    spacing="1",
                ),
                rx.spacer(),
                rx.cond(
                    SessionState.can_write,
                    rx.button(rx.icon("plus", size=16), "Create", size="2", on_click=WebhookFormState.open_create),
                ),
                width="100%",
                align="end",
                spacing="4",
            ),
            rx.cond(List.error != "", error_callout(List.error, List.load)),
            rx.foreach(
                List.auto_disabled,
                lambda w: disabled_banner(
                    w.id,
                    w.name,
                    w.disabled_at,
                    w.disabled_reason,
                    rx.redirect("/webhooks/" + w.id.to_string() + "?recover=1"),
                    w.failing_since,
                ),
            ),
            rx.cond(List.any_webhooks & ~List.loading, _overview()),
            rx.cond(
                List.any_webhooks | List.loading,
                rx.vstack(
                    rx.input(
                        rx.input.slot(rx.icon("search", size=16)),
                        placeholder="Search by name or URL",
                        value=List.search,
                        on_change=List.set_search,
                        debounce_timeout=300,
                        aria_label="Search webhooks",
                        width="100%",
                        max_width="420px",
                        size="2",
                    ),
                    rx.cond(
                        (List.total == 0) & ~List.loading & (List.search != ""),
                        _no_match(),
                        rx.box(_table(), width="100%", overflow_x="auto"),
                    ),
                    _pagination(),
                    width="100%",
                    spacing="3",
                ),
                _empty_state(),
            ),
            spacing="5",
            width="100%",
        ),
        rx.cond(SessionState.can_write, rx.fragment(webhook_form_dialog(), delete_dialog())),
        rx.cond(SessionState.can_test, test_dialog()),
    )
