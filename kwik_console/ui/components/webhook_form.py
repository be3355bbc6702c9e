"""The Create / Edit dialog: Name, Webhook URL, Events (all, or chosen by resource), rate limit, custom headers,
Status, and the signing secret."""

from __future__ import annotations

import reflex as rx
from reflex_components_radix.themes.components.checkbox import Checkbox

from kwik_console.events import catalog
from kwik_console.ui.components.common import code_block, field_error
from kwik_console.ui.state.session import SessionState
from kwik_console.ui.state.webhooks import WebhookFormState as Form
from kwik_console.webhooks import rules
from kwik_console.webhooks.signature_check import SECRET_ENV

VERIFY_EXAMPLE = f"""import os
from standardwebhooks.webhooks import Webhook

# raises WebhookVerificationError unless Kwik signed it
event = Webhook(os.environ["{SECRET_ENV}"]).verify(request.body, request.headers)"""


def _label(text: str, html_for: str) -> rx.Component:
    return rx.el.label(rx.text(text, size="2", weight="medium"), html_for=html_for)


def _invalid_when(error: rx.Var) -> dict:
    """A red outline and aria-invalid while the field has an error."""
    invalid = error != ""
    return {
        "color_scheme": rx.cond(invalid, "red", "gray"),
        "aria_invalid": rx.cond(invalid, "true", "false"),
        "box_shadow": rx.cond(invalid, "inset 0 0 0 1px var(--red-8)", "inset 0 0 0 1px var(--gray-a7)"),
    }


def _event_checkbox(event_type: catalog.EventType) -> rx.Component:
    # One label around the bare checkbox (rx.checkbox would add a second, empty one inside, and no name).
    return rx.el.label(
        rx.hstack(
            Checkbox.create(
                checked=Form.events.contains(event_type.name),
                on_change=lambda checked: Form.toggle_event(event_type.name, checked),
                margin_top="2px",
                aria_label=event_type.name,
            ),
            rx.vstack(
                rx.code(event_type.name, size="2", variant="ghost"),
                rx.text(event_type.description, size="1", color_scheme="gray"),
                spacing="0",
            ),
            align="start",
            spacing="2",
        ),
        cursor="pointer",
    )


def _events_field() -> rx.Component:
    groups = [
        rx.box(
            rx.text(
                resource.replace("_", " ").title() + "s",
                size="1",
                weight="bold",
                color_scheme="gray",
                text_transform="uppercase",
                letter_spacing="0.04em",
            ),
            rx.vstack(*[_event_checkbox(t) for t in types], spacing="2", padding_top="6px"),
        )
        for resource, types in catalog.grouped().items()
    ]
    chosen = rx.vstack(
        rx.hstack(
            rx.spacer(),
            rx.text(
                Form.events.length().to_string() + f" of {len(catalog.EVENT_TYPES)} selected",
                size="1",
                color_scheme="gray",
            ),
            rx.button("Select all", size="1", variant="ghost", type="button", on_click=Form.select_all),
            rx.button("Select none", size="1", variant="ghost", type="button", on_click=Form.select_none),
            align="center",
            width="100%",
            spacing="3",
            wrap="wrap",
        ),
        # The chosen events, always in view; the list below is part of the dialog's one scroll, not a second one.
        rx.cond(
            Form.events.length() > 0,
            rx.flex(
                rx.foreach(Form.events, lambda e: rx.badge(e, variant="surface", high_contrast=True)),
                wrap="wrap",
                gap="4px",
                aria_label="Chosen events",
            ),
            rx.text("No events selected.", size="1", color_scheme="gray"),
        ),
        rx.box(
            rx.grid(*groups, columns=rx.breakpoints(initial="1", sm="2"), spacing="4", padding="12px"),
            style={"border": f"1px solid {rx.color('gray', 6)}", "border_radius": "8px"},
            width="100%",
        ),
        spacing="2",
        width="100%",
    )

    def mode(value: str, label: str) -> rx.Component:
        return rx.el.label(
            rx.hstack(rx.radio_group.item(value=value), rx.text(label, size="2"), spacing="2", align="center"),
            cursor="pointer",
        )

    return rx.vstack(
        rx.text("Events", size="2", weight="medium", id="webhook-events-label"),
        rx.radio_group.root(
            rx.flex(
                mode("all", "All events (including types added later)"),
                mode("selected", "Selected events"),
                direction=rx.breakpoints(initial="column", sm="row"),
                gap=rx.breakpoints(initial="6px", sm="16px"),
            ),
            value=Form.events_mode,
            on_change=Form.set_events_mode,
            aria_labelledby="webhook-events-label",
        ),
        rx.cond(
            Form.all_events,
            rx.text(
                "Every event type in the catalogue, and any type added to it later, without an edit. "
                "Operational events go only to the operational webhook.",
                size="1",
                color_scheme="gray",
            ),
            chosen,
        ),
        field_error(Form.errors["events"]),
        spacing="2",
        width="100%",
    )


def _header_row(row: rx.Var, index: rx.Var) -> rx.Component:
    number = (index + 1).to_string()
    # Name and value side by side, one above the other on a phone; the remove button stays on the right.
    return rx.hstack(
        rx.flex(
            rx.input(
                value=row[0],
                on_change=lambda v: Form.set_header_name(index, v),
                placeholder="X-Header-Name",
                aria_label="Header name " + number,
                auto_complete="off",
                spell_check=False,
                style={"flex": "1 1 140px", "min_width": "0"},
            ),
            rx.input(
                value=row[1],
                on_change=lambda v: Form.set_header_value(index, v),
                placeholder="Value",
                aria_label="Header value " + number,
                auto_complete="off",
                spell_check=False,
                style={"flex": "2 1 160px", "min_width": "0"},
            ),
            gap="8px",
            wrap="wrap",
            style={"flex": "1", "min_width": "0"},
        ),
        rx.icon_button(
            rx.icon("x", size=14),
            size="2",
            variant="soft",
            color_scheme="gray",
            type="button",
            aria_label="Remove header " + number,
            on_click=Form.remove_header(index),
        ),
        spacing="2",
        width="100%",
        align="center",
    )


def _headers_field() -> rx.Component:
    return rx.vstack(
        rx.text("Custom headers", size="2", weight="medium"),
        rx.text(
            f"Optional: up to {rules.HEADERS_MAX} headers sent with every delivery, such as an API key your "
            "endpoint expects. Kwik sets webhook-*, content-*, host and user-agent itself.",
            size="1",
            color_scheme="gray",
        ),
        # Rows further apart on a phone, where each one's name and value stack.
        rx.vstack(rx.foreach(Form.headers, _header_row), spacing=rx.breakpoints(initial="4", sm="2"), width="100%"),
        rx.button(
            rx.icon("plus", size=14),
            "Add header",
            size="1",
            variant="soft",
            type="button",
            on_click=Form.add_header,
            disabled=~Form.can_add_header,
        ),
        field_error(Form.errors["headers"]),
        spacing="2",
        width="100%",
    )


def _secret_section() -> rx.Component:
    return rx.vstack(
        rx.separator(size="4"),
        rx.text("Signing secret", size="2", weight="medium"),
        rx.text(
            "Kwik signs every request with this secret (Standard Webhooks). Verify the signature before "
            "trusting a payload.",
            size="1",
            color_scheme="gray",
        ),
        rx.hstack(
            rx.code(
                rx.cond(Form.secret_shown, Form.secret, "whsec_" + "•" * 24),
                size="2",
                variant="soft",
                style={"word_break": "break-all", "flex": "1", "padding": "6px 8px"},
            ),
            rx.button(
                rx.cond(Form.secret_shown, "Hide", "Reveal"),
                size="1",
                variant="soft",
                type="button",
                on_click=Form.toggle_secret(Form.secret_shown),
            ),
            rx.button("Copy", size="1", variant="soft", type="button", on_click=Form.copy_secret),
            rx.alert_dialog.root(
                rx.alert_dialog.trigger(
                    rx.button(
                        "Rotate", size="1", variant="soft", color_scheme="orange", high_contrast=True, type="button"
                    )
                ),
                rx.alert_dialog.content(
                    rx.alert_dialog.title("Rotate the signing secret?"),
                    rx.alert_dialog.description(
                        "A new secret signs every request from now on. The current one also keeps signing for "
                        "24 hours, so you can update your endpoint without missing events."
                    ),
                    rx.hstack(
                        rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray")),
                        rx.alert_dialog.action(
                            rx.button(
                                "Rotate secret", color_scheme="orange", high_contrast=True, on_click=Form.rotate_secret
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
        rx.text("Verify in Python with the standardwebhooks package:", size="1", color_scheme="gray"),
        code_block(VERIFY_EXAMPLE, max_height="none"),
        spacing="2",
        width="100%",
    )


# Each status in one sentence, under the control: the difference between Paused and Disabled matters.
STATUSES = (
    ("live", "Live", "The webhook will receive events from Kwik as they occur."),
    ("paused", "Paused", "Events are recorded and their deliveries wait; on resume they go out, oldest first."),
    ("disabled", "Disabled", "The webhook is inactive and no events will be sent. Scheduled retries are cancelled."),
)


def _status_field() -> rx.Component:
    def option(value: str, label: str, sentence: str) -> rx.Component:
        chosen = Form.status == value
        return rx.box(
            rx.el.label(
                rx.hstack(
                    rx.radio_group.item(value=value, aria_describedby=f"webhook-status-{value}-help"),
                    rx.text(label, size="2", weight="medium"),
                    spacing="2",
                    align="center",
                ),
                cursor="pointer",
            ),
            rx.text(
                sentence,
                id=f"webhook-status-{value}-help",
                size="1",
                color_scheme="gray",
                padding_left="24px",
                padding_top="2px",
            ),
            padding="8px 10px",
            border_radius="8px",
            border=rx.cond(chosen, f"1px solid {rx.color('accent', 8)}", f"1px solid {rx.color('gray', 5)}"),
            background=rx.cond(chosen, rx.color("accent", 2), "transparent"),
        )

    return rx.vstack(
        rx.text("Status", size="2", weight="medium", id="webhook-status-label"),
        # Radio buttons: the chosen one is the filled one (a segmented control showed it in white).
        rx.radio_group.root(
            rx.grid(
                *[option(*s) for s in STATUSES], columns=rx.breakpoints(initial="1", sm="3"), spacing="2", width="100%"
            ),
            value=Form.status,
            on_change=Form.set_status,
            aria_labelledby="webhook-status-label",
            width="100%",
        ),
        field_error(Form.errors["status"]),
        spacing="1",
        width="100%",
    )


def _rate_field() -> rx.Component:
    return rx.vstack(
        _label("Max deliveries per second", "webhook-max-per-second"),
        rx.input(
            id="webhook-max-per-second",
            value=Form.max_per_second,
            on_change=Form.set_max_per_second,
            placeholder="No limit",
            width="160px",
            type="text",
            input_mode="decimal",
            auto_complete="off",
            aria_describedby="webhook-max-per-second-help",
            **_invalid_when(Form.errors["max_per_second"]),
        ),
        rx.text(
            "Optional: leave it empty for no limit. Deliveries over the limit wait their turn; they are not "
            "failed, and do not count as attempts.",
            id="webhook-max-per-second-help",
            size="1",
            color_scheme="gray",
        ),
        field_error(Form.errors["max_per_second"]),
        spacing="1",
        width="100%",
    )


def webhook_form_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(Form.editing, "Edit webhook", "Create webhook")),
            rx.dialog.description(
                "Kwik sends a signed POST to the Webhook URL whenever one of the selected events occurs.",
                size="2",
                color_scheme="gray",
                margin_bottom="16px",
            ),
            rx.form(
                rx.vstack(
                    rx.vstack(
                        _label("Name", "webhook-name"),
                        rx.input(
                            id="webhook-name",
                            value=Form.name,
                            on_change=Form.set_name,
                            placeholder="Orders service",
                            max_length=100,
                            width="100%",
                            **_invalid_when(Form.errors["name"]),
                        ),
                        field_error(Form.errors["name"]),
                        spacing="1",
                        width="100%",
                    ),
                    rx.vstack(
                        _label("Webhook URL", "webhook-url"),
                        rx.input(
                            id="webhook-url",
                            value=Form.url,
                            on_change=Form.set_url,
                            # type="text": the console's own message is the only validation, in every browser.
                            placeholder="https://example.com/kwik/webhooks",
                            width="100%",
                            type="text",
                            input_mode="url",
                            auto_complete="url",
                            **_invalid_when(Form.errors["url"]),
                        ),
                        field_error(Form.errors["url"]),
                        spacing="1",
                        width="100%",
                    ),
                    _events_field(),
                    _rate_field(),
                    _headers_field(),
                    _status_field(),
                    rx.cond(
                        Form.errors["webhook"] != "",
                        rx.callout.root(
                            rx.callout.icon(rx.icon("triangle-alert")),
                            rx.callout.text(Form.errors["webhook"]),
                            color_scheme="red",
                            role="alert",
                            width="100%",
                        ),
                    ),
                    rx.cond(Form.editing & SessionState.can_see_secrets, _secret_section()),
                    rx.hstack(
                        rx.dialog.close(
                            rx.button(
                                "Cancel", variant="soft", color_scheme="gray", type="button", disabled=Form.saving
                            )
                        ),
                        rx.button(rx.cond(Form.editing, "Save", "Create"), type="submit", loading=Form.saving),
                        justify="end",
                        spacing="3",
                        width="100%",
                        padding_top="8px",
                    ),
                    spacing="4",
                    width="100%",
                ),
                on_submit=lambda _: Form.save(),
                reset_on_submit=False,
                no_validate=True,
            ),
            max_width="640px",
        ),
        open=Form.open,
        on_open_change=Form.set_open,
    )
