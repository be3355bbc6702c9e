"""A webhook's own page (/webhooks/[id]): settings, secret, actions, 24 h / 7 d summary, charts, the event log."""

from __future__ import annotations

import reflex as rx

from kwik_console.ui.components.common import (
    code_block,
    copy_button,
    error_callout,
    page,
    status_badge,
    table_name,
)
from kwik_console.ui.components.dates import when
from kwik_console.ui.components.dialogs import delete_dialog, test_dialog
from kwik_console.ui.components.operations import (
    RECOVER_LABEL,
    disabled_banner,
    failing_badge,
    recover_dialog,
    recovery_panel,
)
from kwik_console.ui.components.webhook_form import VERIFY_EXAMPLE, webhook_form_dialog
from kwik_console.ui.pages.event_log import delivery_drawer, details_button, opens_details
from kwik_console.ui.state.operations import HealthState, RecoverState
from kwik_console.ui.state.operations import RecoveryProgressState as Shown
from kwik_console.ui.state.session import SessionState
from kwik_console.ui.state.webhook_page import RANGE_LABELS, SecretState
from kwik_console.ui.state.webhook_page import WebhookPageState as P
from kwik_console.ui.state.webhook_tester import TestWebhookState
from kwik_console.ui.state.webhooks import DeleteState, WebhookFormState
from kwik_console.ui.views import DeliveryRow, FiguresView

SUCCESS_COLOR, FAILURE_COLOR = "var(--green-9)", "var(--red-9)"


def events_href() -> rx.Var:
    return "/webhooks/" + P.webhook_id.to_string() + "/events"


def _actions() -> rx.Component:
    return rx.hstack(
        rx.link(rx.button(rx.icon("list", size=14), "View Events", variant="soft", size="2"), href=events_href()),
        rx.cond(
            SessionState.can_test,
            rx.button(
                rx.icon("send", size=14),
                "Test Webhook",
                variant="soft",
                size="2",
                on_click=TestWebhookState.start(P.webhook_id, P.name),
            ),
        ),
        rx.cond(
            SessionState.can_pause,
            rx.match(
                P.status,
                (
                    "Live",
                    rx.button(
                        rx.icon("pause", size=14),
                        "Pause",
                        variant="soft",
                        size="2",
                        on_click=HealthState.pause(P.webhook_id),
                    ),
                ),
                (
                    "Paused",
                    rx.button(
                        rx.icon("play", size=14),
                        "Resume",
                        variant="soft",
                        size="2",
                        on_click=HealthState.resume(P.webhook_id),
                    ),
                ),
                rx.fragment(),
            ),
        ),
        rx.cond(
            SessionState.can_recover,
            rx.button(
                rx.icon("rotate-ccw", size=14),
                RECOVER_LABEL,
                variant="soft",
                size="2",
                on_click=RecoverState.open_dialog,
            ),
        ),
        # The operational webhook is changed on the Developers page only (the services refuse it here).
        rx.cond(
            SessionState.can_write & ~P.operational,
            rx.fragment(
                rx.button(
                    rx.icon("pencil", size=14),
                    "Edit",
                    variant="soft",
                    size="2",
                    on_click=WebhookFormState.open_edit(P.webhook_id),
                ),
                rx.button(
                    rx.icon("trash-2", size=14),
                    "Delete",
                    variant="soft",
                    color_scheme="red",
                    size="2",
                    high_contrast=True,
                    on_click=DeleteState.ask(P.webhook_id, P.name),
                ),
            ),
        ),
        spacing="2",
        wrap="wrap",
    )


def _stat(label: str, value: rx.Var, tone: rx.Var | str = "gray", note: rx.Var | str = "") -> rx.Component:
    return rx.vstack(
        rx.text(label, size="1", color_scheme="gray", weight="medium"),
        rx.text(value, size="4", weight="bold", color_scheme=tone, high_contrast=True, white_space="nowrap"),
        rx.cond(note != "", rx.text(note, size="1", color_scheme="gray")),
        spacing="0",
        min_width="0",
    )


def figures_row(f: FiguresView) -> rx.Component:
    # Five columns from a tablet up (one row in each half of the page at 1280 px), two on a phone.
    return rx.grid(
        _stat("Delivered", f.delivery_rate, rx.cond(f.delivered_healthy, "green", "red"), "of finished deliveries"),
        _stat("Attempt success", f.success_rate, rx.cond(f.healthy, "green", "red"), f.attempts + " attempts"),
        _stat("p50 duration", f.p50),
        _stat("p95 duration", f.p95),
        _stat("Retrying now", f.retrying, rx.cond(f.retrying == "0", "gray", "amber")),
        columns=rx.breakpoints(initial="2", sm="5"),
        gap="12px",
        width="100%",
    )


def _summary() -> rx.Component:
    return rx.grid(
        rx.card(
            rx.vstack(rx.heading("Last 24 hours", size="3", as_="h2"), figures_row(P.day), spacing="3"),
            aria_label="Last 24 hours",
        ),
        rx.card(
            rx.vstack(rx.heading("Last 7 days", size="3", as_="h2"), figures_row(P.week), spacing="3"),
            aria_label="Last 7 days",
        ),
        columns=rx.breakpoints(initial="1", md="2"),
        spacing="4",
        width="100%",
    )


def _range_picker() -> rx.Component:
    return rx.hstack(
        *[
            rx.button(
                label,
                size="1",
                on_click=P.set_range(key),
                aria_pressed=rx.cond(P.range_key == key, "true", "false"),
                variant=rx.cond(P.range_key == key, "solid", "soft"),
                color_scheme=rx.cond(P.range_key == key, "indigo", "gray"),
            )
            for key, label in RANGE_LABELS.items()
        ],
        spacing="1",
        role="group",
        aria_label="Time range",
    )


def _charts() -> rx.Component:
    axis = {"tick": {"fontSize": 11}, "stroke": "var(--gray-11)"}
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.heading("Deliveries over time", size="3", as_="h2"),
                rx.spacer(),
                _range_picker(),
                width="100%",
                align="center",
                wrap="wrap",
                gap="8px",
            ),
            rx.text(
                P.chart_attempts.to_string() + " attempts in this range · times in your time zone",
                size="1",
                color_scheme="gray",
            ),
            rx.box(
                rx.recharts.bar_chart(
                    rx.recharts.cartesian_grid(stroke_dasharray="3 3", vertical=False, stroke="var(--gray-5)"),
                    rx.recharts.x_axis(data_key="time", min_tick_gap=24, **axis),
                    rx.recharts.y_axis(allow_decimals=False, width=40, **axis),
                    rx.recharts.graphing_tooltip(),
                    rx.recharts.legend(),
                    rx.recharts.bar(
                        data_key="Successes", stack_id="outcome", fill=SUCCESS_COLOR, is_animation_active=False
                    ),
                    rx.recharts.bar(
                        data_key="Failures", stack_id="outcome", fill=FAILURE_COLOR, is_animation_active=False
                    ),
                    data=P.counts,
                    height=240,
                    width="100%",
                ),
                width="100%",
                role="img",
                aria_label="Successful and failed attempts over time",
                class_name="kwik-chart-outcomes",
            ),
            rx.text("Attempt duration (ms)", size="2", weight="medium", padding_top="8px"),
            rx.box(
                rx.recharts.line_chart(
                    rx.recharts.cartesian_grid(stroke_dasharray="3 3", vertical=False, stroke="var(--gray-5)"),
                    rx.recharts.x_axis(data_key="time", min_tick_gap=24, **axis),
                    rx.recharts.y_axis(width=48, **axis),
                    rx.recharts.graphing_tooltip(),
                    rx.recharts.legend(),
                    # A bucket without attempts has no duration: the line joins the buckets that have one, and
                    # each of those gets a dot, so a lone bucket (one burst of traffic) still shows.
                    rx.recharts.line(
                        data_key="p50",
                        stroke="var(--indigo-9)",
                        stroke_width=2,
                        type_="monotone",
                        dot={"r": 2.5, "fill": "var(--indigo-9)"},
                        connect_nulls=True,
                        is_animation_active=False,
                    ),
                    rx.recharts.line(
                        data_key="p95",
                        stroke="var(--orange-9)",
                        stroke_width=2,
                        type_="monotone",
                        dot={"r": 2.5, "fill": "var(--orange-9)"},
                        connect_nulls=True,
                        is_animation_active=False,
                    ),
                    data=P.durations,
                    height=220,
                    width="100%",
                ),
                width="100%",
                role="img",
                aria_label="Attempt duration percentiles, p50 and p95, over time",
                class_name="kwik-chart-durations",
            ),
            spacing="2",
            width="100%",
        ),
        width="100%",
    )


def _settings() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Settings", size="3", as_="h2"),
            rx.data_list.root(
                rx.data_list.item(
                    rx.data_list.label("Webhook URL"),
                    rx.data_list.value(rx.code(P.url, variant="ghost", style={"word_break": "break-all"})),
                ),
                rx.data_list.item(rx.data_list.label("Status"), rx.data_list.value(status_badge(P.status))),
                rx.data_list.item(
                    rx.data_list.label("Max deliveries per second"),
                    rx.data_list.value(
                        rx.cond(
                            P.max_per_second != "",
                            rx.text(P.max_per_second, size="2"),
                            rx.text("No limit", size="2", color_scheme="gray"),
                        )
                    ),
                ),
                rx.data_list.item(rx.data_list.label("Created"), rx.data_list.value(when(P.created_at, "minutes"))),
                rx.data_list.item(
                    rx.data_list.label("Events"),
                    rx.data_list.value(
                        rx.cond(
                            P.all_events,
                            rx.text("All events (including types added later)", size="2"),
                            rx.flex(
                                rx.foreach(P.events, lambda e: rx.badge(e, variant="surface", high_contrast=True)),
                                wrap="wrap",
                                gap="4px",
                            ),
                        )
                    ),
                ),
                rx.data_list.item(
                    rx.data_list.label("Custom headers"),
                    rx.data_list.value(
                        rx.cond(
                            P.headers.length() > 0,
                            rx.vstack(
                                rx.foreach(
                                    P.headers,
                                    lambda h: rx.code(
                                        h[0] + ": " + h[1], variant="ghost", style={"word_break": "break-all"}
                                    ),
                                ),
                                spacing="1",
                            ),
                            rx.text("None", size="2", color_scheme="gray"),
                        )
                    ),
                ),
                orientation=rx.breakpoints(initial="vertical", sm="horizontal"),
                size="2",
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _secret() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Signing secret", size="3", as_="h2"),
            rx.cond(
                SessionState.can_see_secrets,
                rx.vstack(
                    rx.hstack(
                        rx.code(
                            rx.cond(SecretState.shown, SecretState.secret, "whsec_" + "•" * 24),
                            size="2",
                            variant="soft",
                            aria_label="Signing secret",
                            style={"word_break": "break-all", "flex": "1", "padding": "6px 8px"},
                        ),
                        rx.button(
                            rx.cond(SecretState.shown, "Hide", "Reveal"),
                            size="1",
                            variant="soft",
                            on_click=SecretState.toggle(SecretState.shown),
                        ),
                        rx.button("Copy", size="1", variant="soft", on_click=SecretState.copy),
                        rx.alert_dialog.root(
                            rx.alert_dialog.trigger(
                                rx.button("Rotate", size="1", variant="soft", color_scheme="orange", high_contrast=True)
                            ),
                            rx.alert_dialog.content(
                                rx.alert_dialog.title("Rotate the signing secret?"),
                                rx.alert_dialog.description(
                                    "A new secret signs every request from now on. The current one also keeps "
                                    "signing for 24 hours, so you can update your endpoint without missing events."
                                ),
                                rx.hstack(
                                    rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray")),
                                    rx.alert_dialog.action(
                                        rx.button(
                                            "Rotate secret",
                                            color_scheme="orange",
                                            high_contrast=True,
                                            on_click=SecretState.rotate,
                                        )
                                    ),
                                    justify="end",
                                    spacing="3",
                                    margin_top="16px",
                                ),
                            ),
                        ),
                        width="100%",
                        align="center",
                        spacing="2",
                        wrap="wrap",
                    ),
                    code_block(VERIFY_EXAMPLE, max_height="none"),
                    rx.link(
                        "Check a signature, and code for Node, Go and PHP →",
                        href="/developers?webhook=" + P.webhook_id.to_string(),
                        size="2",
                    ),
                    spacing="2",
                    width="100%",
                ),
                rx.text(
                    "Your role cannot see signing secrets. Ask a developer or an admin of this console.",
                    size="2",
                    color_scheme="gray",
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _recent_row(row: DeliveryRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(
            details_button(row),
            rx.text(
                when(row.created_at),
                size="1",
                color_scheme="gray",
                display=["block", "none"],
            ),
        ),
        rx.table.cell(when(row.created_at), white_space="nowrap", display=["none", "table-cell"]),
        rx.table.cell(status_badge(row.status)),
        rx.table.cell(rx.text(row.http_code, font_family="var(--code-font-family)"), display=["none", "table-cell"]),
        **opens_details(row),
    )


def _recent() -> rx.Component:
    """Its last deliveries, live: a row opens the same details as the event log."""
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.heading("Recent deliveries", size="3", as_="h2"),
                rx.spacer(),
                rx.link("All in the event log", href=events_href(), size="2"),
                width="100%",
                align="center",
            ),
            rx.cond(
                P.recent.length() > 0,
                rx.table.root(
                    table_name("Recent deliveries"),
                    rx.table.header(
                        rx.table.row(
                            rx.table.column_header_cell("Event"),
                            rx.table.column_header_cell("Time", display=["none", "table-cell"]),
                            rx.table.column_header_cell("Status"),
                            rx.table.column_header_cell("HTTP Code", display=["none", "table-cell"]),
                        )
                    ),
                    rx.table.body(rx.foreach(P.recent, _recent_row)),
                    variant="ghost",
                    size="1",
                    width="100%",
                ),
                rx.text("No deliveries yet. Send a test to see one here.", size="2", color_scheme="gray"),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _next_step() -> rx.Component:
    """Right after Create: the next step is a test event."""
    return rx.callout.root(
        rx.callout.icon(rx.icon("circle-check")),
        rx.flex(
            rx.callout.text(
                "Webhook created. Send a test event to check that your endpoint answers with a 2xx.", flex="1"
            ),
            rx.button(
                rx.icon("send", size=14),
                "Send a test",
                size="2",
                on_click=TestWebhookState.start(P.webhook_id, P.name),
            ),
            gap="12px",
            align="center",
            wrap="wrap",
            width="100%",
        ),
        color_scheme="green",
        width="100%",
        aria_label="Webhook created",
    )


def webhook_page() -> rx.Component:
    return page(
        rx.vstack(
            rx.link(
                rx.hstack(rx.icon("arrow-left", size=14), rx.text("Webhooks"), align="center", spacing="1"),
                href="/",
                size="2",
            ),
            rx.cond(
                P.missing,
                rx.callout.root(
                    rx.callout.text("This webhook does not exist. It may have been deleted."), color_scheme="amber"
                ),
                rx.fragment(
                    rx.hstack(
                        rx.vstack(
                            rx.hstack(
                                rx.heading(P.name, size="7"),
                                status_badge(P.status),
                                rx.cond(P.warn, failing_badge(P.failing_since)),
                                align="center",
                                spacing="3",
                                wrap="wrap",
                            ),
                            rx.flex(
                                rx.text(P.url, size="2", color_scheme="gray", style={"word_break": "break-all"}),
                                copy_button("Copy URL", P.url),
                                gap="8px",
                                align="center",
                                wrap="wrap",
                            ),
                            spacing="1",
                        ),
                        rx.spacer(),
                        _actions(),
                        width="100%",
                        align="end",
                        wrap="wrap",
                        gap="12px",
                    ),
                    rx.cond(P.error != "", error_callout(P.error, P.load)),
                    rx.cond(P.just_created & SessionState.can_test & (P.status == "Live"), _next_step()),
                    rx.cond(
                        P.disabled_reason != "",
                        disabled_banner(
                            P.webhook_id,
                            None,
                            P.disabled_at,
                            P.disabled_reason,
                            RecoverState.open_dialog,
                            P.failing_since,
                        ),
                    ),
                    rx.cond(
                        P.operational,
                        rx.callout.root(
                            rx.callout.icon(rx.icon("info")),
                            rx.callout.text(
                                "This is the operational webhook: it receives the console's notices about "
                                "your other webhooks. An admin changes it on the ",
                                rx.link("Developers page", href="/developers"),
                                ".",
                            ),
                            color_scheme="blue",
                            width="100%",
                        ),
                    ),
                    rx.cond(Shown.panel_open & (Shown.webhook_id == P.webhook_id), recovery_panel()),
                    _summary(),
                    _recent(),
                    _charts(),
                    rx.grid(
                        _settings(), _secret(), columns=rx.breakpoints(initial="1", md="2"), spacing="4", width="100%"
                    ),
                ),
            ),
            spacing="4",
            width="100%",
        ),
        rx.cond(SessionState.can_write, rx.fragment(webhook_form_dialog(), delete_dialog())),
        rx.cond(SessionState.can_test, test_dialog()),
        rx.cond(SessionState.can_recover, recover_dialog()),
        delivery_drawer(),
        rx.box(display="none", on_unmount=P.stop_following),
    )
