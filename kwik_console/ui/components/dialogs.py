"""Delete confirmation and the Test Webhook dialog."""

from __future__ import annotations

import reflex as rx

from kwik_console.events import catalog
from kwik_console.ui.components.common import code_block, local_time, status_badge
from kwik_console.ui.state.webhook_tester import TestWebhookState as Test
from kwik_console.ui.state.webhooks import DeleteState


def delete_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete webhook"),
            rx.alert_dialog.description(
                rx.text(
                    "Permanently delete “",
                    rx.text.strong(DeleteState.name),
                    "”? Its delivery history and any scheduled retries are removed too. This cannot be undone.",
                ),
            ),
            rx.hstack(
                rx.alert_dialog.cancel(
                    rx.button("Cancel", variant="soft", color_scheme="gray", disabled=DeleteState.deleting)
                ),
                # High contrast: white on red-9 is 4.0:1, under the 4.5:1 text needs.
                rx.button(
                    "Delete",
                    color_scheme="red",
                    high_contrast=True,
                    loading=DeleteState.deleting,
                    on_click=DeleteState.confirm,
                ),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
            max_width="460px",
        ),
        open=DeleteState.open,
        on_open_change=DeleteState.set_open,
    )


def _outcome() -> rx.Component:
    o = Test.outcome
    return rx.cond(
        Test.error != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("triangle-alert")), rx.callout.text(Test.error), color_scheme="red", role="alert"
        ),
        rx.card(
            rx.vstack(
                rx.hstack(
                    status_badge(o.status),
                    rx.text("HTTP ", rx.cond(o.http_code != "", o.http_code, "—"), size="2", weight="medium"),
                    rx.text(o.duration_ms.to_string() + " ms", size="2", color_scheme="gray"),
                    rx.spacer(),
                    rx.link("View in event log", href="/webhooks/" + Test.webhook_id.to_string() + "/events", size="2"),
                    align="center",
                    width="100%",
                    spacing="3",
                    wrap="wrap",
                ),
                rx.cond(o.error != "", rx.text(o.error, color_scheme="red", size="2")),
                rx.cond(o.response != "", code_block(o.response, max_height="140px")),
                rx.cond(
                    o.retry_at != "",
                    rx.text("Kwik will retry at ", local_time(o.retry_at), ".", size="1", color_scheme="gray"),
                ),
                spacing="2",
                width="100%",
            ),
            width="100%",
            role="status",
            aria_label="Test outcome",
        ),
    )


def _payload_field() -> rx.Component:
    """The event's `data`, editable; checked against the type's schema on Send, the reason shown under it."""
    invalid = Test.payload_error != ""
    return rx.vstack(
        rx.hstack(
            rx.el.label(rx.text("Payload (data)", size="2", weight="medium"), html_for="test-payload"),
            rx.spacer(),
            rx.button("Reset to sample", variant="ghost", size="1", on_click=Test.reset_payload),
            align="center",
            width="100%",
        ),
        rx.text_area(
            id="test-payload",
            value=Test.payload,
            on_change=Test.set_payload,
            debounce_timeout=250,
            rows="12",
            width="100%",
            spell_check=False,
            aria_invalid=rx.cond(invalid, "true", "false"),
            aria_describedby="test-payload-help test-payload-error",
            color_scheme=rx.cond(invalid, "red", "gray"),
            # Outlined in red while refused, as the webhook form's fields are.
            box_shadow=rx.cond(invalid, "inset 0 0 0 1px var(--red-8)", "inset 0 0 0 1px var(--gray-a7)"),
            # Long ids wrap rather than push the dialog wider than a phone.
            style={
                "font_family": "var(--code-font-family)",
                "font_size": "12.5px",
                "white_space": "pre-wrap",
                "overflow_wrap": "anywhere",
                "resize": "vertical",
            },
        ),
        rx.text(
            'Sent as the event\'s data; Kwik adds id, type, created_at and "test": true around it.',
            id="test-payload-help",
            size="1",
            color_scheme="gray",
        ),
        rx.cond(
            invalid,
            rx.text(Test.payload_error, id="test-payload-error", size="2", color_scheme="red", role="alert"),
        ),
        spacing="1",
        width="100%",
        padding_top="4px",
    )


def test_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Test webhook"),
            rx.dialog.description(
                rx.text(
                    "Send a test event to “",
                    rx.text.strong(Test.webhook_name),
                    "” now, with the payload below. It is marked as a test event and retried like any other "
                    "delivery if it fails.",
                ),
                size="2",
                color_scheme="gray",
                margin_bottom="16px",
            ),
            rx.vstack(
                rx.el.label(rx.text("Event type", size="2", weight="medium"), html_for="test-event-type"),
                rx.select(
                    catalog.event_type_names(),
                    value=Test.event_type,
                    on_change=Test.set_event_type,
                    id="test-event-type",
                    width="100%",
                ),
                rx.text(Test.description, size="1", color_scheme="gray"),
                _payload_field(),
                rx.cond(Test.sent, _outcome()),
                rx.hstack(
                    rx.dialog.close(rx.button("Close", variant="soft", color_scheme="gray")),
                    rx.button("Send", loading=Test.sending, on_click=Test.send),
                    justify="end",
                    spacing="3",
                    width="100%",
                    padding_top="8px",
                ),
                spacing="2",
                width="100%",
            ),
            max_width="620px",
        ),
        open=Test.open,
        on_open_change=Test.set_open,
    )
