"""Developers (/developers): check a request's signature, and code that verifies it in four languages."""

from __future__ import annotations

import reflex as rx

from kwik_console.events import catalog
from kwik_console.ui.components.common import code_block, field_error, page
from kwik_console.ui.state.developers import Finding
from kwik_console.ui.state.developers import SignatureCheckState as S
from kwik_console.ui.state.operations import OperationalState as O
from kwik_console.ui.state.session import SessionState
from kwik_console.webhooks.signature_check import SECRET_ENV, TOLERANCE_S

LANGUAGES = ("Python", "Node", "Go", "PHP")
KIND_LABELS = {"secret": "Secret", "header": "Headers", "timestamp": "Timestamp", "body": "Body"}


def _field(label: str, name: str, placeholder: str, *, area: bool = False) -> rx.Component:
    control = (
        rx.text_area(
            id=f"check-{name}",
            name=name,
            placeholder=placeholder,
            rows="8",
            width="100%",
            style={"font_family": "var(--code-font-family)", "font_size": "12.5px"},
        )
        if area
        else rx.input(
            id=f"check-{name}", name=name, placeholder=placeholder, width="100%", auto_complete="off", spell_check=False
        )
    )
    return rx.vstack(
        rx.el.label(rx.text(label, size="2", weight="medium"), html_for=f"check-{name}"),
        control,
        spacing="1",
        width="100%",
    )


def _finding(f: Finding) -> rx.Component:
    return rx.hstack(
        rx.badge(
            rx.match(f.kind, *KIND_LABELS.items(), f.kind),
            color_scheme="red",
            variant="soft",
            high_contrast=True,
            min_width="84px",
            justify="center",
        ),
        rx.text(f.text, size="2"),
        align="start",
        spacing="3",
    )


def _diff() -> rx.Component:
    d = S.diff
    return rx.vstack(
        rx.text(
            "Where the bytes differ: byte "
            + d.offset.to_string()
            + ", line "
            + d.line.to_string()
            + ", column "
            + d.column.to_string()
            + " (Kwik sent "
            + d.sent_length.to_string()
            + " bytes; you pasted "
            + d.pasted_length.to_string()
            + ")",
            size="2",
            weight="medium",
        ),
        rx.text("Kwik sent", size="1", color_scheme="gray"),
        code_block(d.sent, max_height="80px"),
        rx.text("You pasted", size="1", color_scheme="gray"),
        code_block(d.pasted, max_height="80px"),
        spacing="1",
        width="100%",
    )


def _verdict() -> rx.Component:
    return rx.cond(
        S.valid,
        rx.callout.root(
            rx.callout.icon(rx.icon("circle-check")),
            rx.callout.text(
                "Valid: Kwik signed this request with this secret, and the timestamp is within the tolerance."
            ),
            color_scheme="green",
            role="status",
            aria_label="Verdict",
        ),
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.icon("circle-x", color="var(--red-11)"),
                    rx.text("Not valid", weight="bold", color_scheme="red", high_contrast=True),
                    align="center",
                    spacing="2",
                ),
                rx.foreach(S.findings, _finding),
                rx.cond(S.has_diff, _diff()),
                spacing="3",
                width="100%",
            ),
            role="status",
            aria_label="Verdict",
            width="100%",
        ),
    )


def _checker() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Signature checker", size="4", as_="h2"),
            rx.text(
                "Paste what your endpoint received. Kwik checks it as a Standard Webhooks library would and says "
                f"why it fails. Timestamps are accepted within {TOLERANCE_S // 60} minutes of now. If the "
                "webhook-id names one of your deliveries, the body is compared with the one Kwik sent. Nothing "
                "you paste is stored.",
                size="2",
                color_scheme="gray",
            ),
            rx.cond(
                S.from_delivery != 0,
                rx.callout.root(
                    rx.callout.icon(rx.icon("info")),
                    rx.flex(
                        rx.callout.text(
                            "Filled in from delivery ",
                            S.from_delivery.to_string(),
                            " to “",
                            S.webhook_name,
                            "”, as its latest attempt was sent. The signing secret is yours to paste",
                            rx.cond(SessionState.can_see_secrets, ", or to reveal here.", "."),
                            flex="1",
                        ),
                        rx.cond(
                            SessionState.can_see_secrets,
                            rx.button("Reveal the secret", size="1", variant="soft", on_click=S.fill_secret),
                        ),
                        gap="12px",
                        align="center",
                        wrap="wrap",
                        width="100%",
                    ),
                    width="100%",
                ),
            ),
            rx.form(
                rx.vstack(
                    _field("Signing secret", "secret", "whsec_…"),
                    rx.grid(
                        _field("webhook-id", "webhook_id", "evt_…"),
                        _field("webhook-timestamp", "webhook_timestamp", "1764428645"),
                        columns=rx.breakpoints(initial="1", sm="2"),
                        spacing="3",
                        width="100%",
                    ),
                    _field("webhook-signature", "webhook_signature", "v1,…"),
                    _field("Raw body", "body", '{"id":"evt_…","type":"payment.created",…}', area=True),
                    rx.hstack(rx.button("Check signature", type="submit"), justify="end", width="100%"),
                    spacing="3",
                    width="100%",
                ),
                on_submit=S.check,
                reset_on_submit=False,
            ),
            rx.cond(S.found != "", rx.text(S.found, size="2", color_scheme="gray")),
            rx.cond(S.checked, _verdict()),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _code() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Verify in your code", size="4", as_="h2"),
            rx.text(
                "Each uses its language's Standard Webhooks library, for “",
                S.webhook_name,
                "”. Keep the secret "
                f"in the {SECRET_ENV} environment variable, and verify the raw body before parsing it.",
                size="2",
                color_scheme="gray",
            ),
            rx.hstack(
                *[
                    rx.button(
                        lang,
                        size="1",
                        on_click=S.set_language(lang),
                        variant=rx.cond(S.language == lang, "solid", "soft"),
                        color_scheme=rx.cond(S.language == lang, "indigo", "gray"),
                        aria_pressed=rx.cond(S.language == lang, "true", "false"),
                    )
                    for lang in LANGUAGES
                ],
                spacing="1",
                role="group",
                aria_label="Language",
            ),
            code_block(S.sample, max_height="420px"),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _operational() -> rx.Component:
    """Admins only: the URL that receives the console's notices about webhooks (catalog.OPERATIONAL_TYPES)."""
    has = O.webhook_id != 0
    return rx.card(
        rx.vstack(
            rx.heading("Operational webhook", size="4", as_="h2"),
            rx.text(
                "Kwik tells this URL when one of your webhooks is in trouble, signed like any other webhook. "
                "A notice is never delivered to the webhook it is about.",
                size="2",
                color_scheme="gray",
            ),
            rx.form(
                rx.vstack(
                    rx.el.label(
                        rx.text("Operational webhook URL", size="2", weight="medium"), html_for="operational-url"
                    ),
                    rx.hstack(
                        rx.input(
                            id="operational-url",
                            value=O.url,
                            on_change=O.set_url,
                            type="text",
                            input_mode="url",
                            placeholder="https://example.com/kwik/operations",
                            aria_invalid=rx.cond(O.error != "", "true", "false"),
                            color_scheme=rx.cond(O.error != "", "red", "gray"),
                            flex="1",
                            min_width="240px",
                        ),
                        rx.button("Save", type="submit", loading=O.saving),
                        rx.cond(
                            has,
                            rx.alert_dialog.root(
                                rx.alert_dialog.trigger(
                                    rx.button(
                                        "Remove", type="button", variant="soft", color_scheme="red", high_contrast=True
                                    )
                                ),
                                rx.alert_dialog.content(
                                    rx.alert_dialog.title("Remove the operational webhook?"),
                                    rx.alert_dialog.description(
                                        "No notices are sent after this, and its delivery history is removed."
                                    ),
                                    rx.hstack(
                                        rx.alert_dialog.cancel(
                                            rx.button("Cancel", variant="soft", color_scheme="gray")
                                        ),
                                        rx.alert_dialog.action(
                                            rx.button(
                                                "Remove", color_scheme="red", high_contrast=True, on_click=O.remove
                                            )
                                        ),
                                        justify="end",
                                        spacing="3",
                                        margin_top="16px",
                                    ),
                                ),
                            ),
                        ),
                        width="100%",
                        spacing="2",
                        wrap="wrap",
                    ),
                    field_error(O.error),
                    spacing="1",
                    width="100%",
                ),
                on_submit=lambda _: O.save(),
                reset_on_submit=False,
                no_validate=True,
                width="100%",
            ),
            rx.text("It receives these events:", size="2", weight="medium", padding_top="4px"),
            rx.vstack(
                *[
                    rx.hstack(
                        rx.code(t.name, size="2", variant="ghost", min_width="150px"),
                        rx.text(t.description, size="2", color_scheme="gray"),
                        spacing="3",
                        align="start",
                        wrap="wrap",
                    )
                    for t in catalog.OPERATIONAL_TYPES.values()
                ],
                spacing="2",
                width="100%",
            ),
            rx.cond(
                has,
                rx.vstack(
                    rx.separator(size="4"),
                    rx.text("Signing secret", size="2", weight="medium"),
                    rx.hstack(
                        rx.code(
                            rx.cond(O.shown, O.secret, "whsec_" + "•" * 24),
                            size="2",
                            variant="soft",
                            aria_label="Operational webhook signing secret",
                            style={"word_break": "break-all", "flex": "1", "padding": "6px 8px"},
                        ),
                        rx.button(
                            rx.cond(O.shown, "Hide", "Reveal"),
                            size="1",
                            variant="soft",
                            on_click=O.toggle_secret(O.shown),
                        ),
                        rx.button("Copy", size="1", variant="soft", on_click=O.copy_secret),
                        width="100%",
                        align="center",
                        spacing="2",
                        wrap="wrap",
                    ),
                    rx.link(
                        "Its deliveries, on its webhook page →", href="/webhooks/" + O.webhook_id.to_string(), size="2"
                    ),
                    spacing="2",
                    width="100%",
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def developers_page() -> rx.Component:
    return page(
        rx.vstack(
            rx.vstack(
                rx.heading("Developers", size="7"),
                rx.text(
                    "Kwik signs every webhook request with the Standard Webhooks scheme: the webhook-id, "
                    "webhook-timestamp and webhook-signature headers.",
                    color_scheme="gray",
                    size="2",
                ),
                spacing="1",
            ),
            rx.cond(SessionState.can_operational, _operational()),
            _checker(),
            _code(),
            spacing="5",
            width="100%",
        ),
    )
