"""The Tokens page (admins): API access tokens with their scopes, last use and expiry; make one, revoke one."""

from __future__ import annotations

import reflex as rx

from kwik_console.team import tokens
from kwik_console.ui.components.common import field_error, loading_rows, local_time, page, status_badge
from kwik_console.ui.state.tokens import TokenRow
from kwik_console.ui.state.tokens import TokensState as T

COLUMNS = ("Name", "Token", "Scopes", "Last used", "Expires", "Status", "")


def _row(row: TokenRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row.name, weight="medium")),
        rx.table.cell(rx.code(row.prefix, variant="ghost", size="2")),
        rx.table.cell(rx.text(row.scopes, size="2")),
        rx.table.cell(
            rx.cond(
                row.last_used_at != "",
                local_time(row.last_used_at),
                rx.text("Never", size="2", color_scheme="gray"),
            ),
            white_space="nowrap",
        ),
        rx.table.cell(
            rx.cond(
                row.expires_at != "",
                local_time(row.expires_at),
                rx.text("Never", size="2", color_scheme="gray"),
            ),
            white_space="nowrap",
        ),
        rx.table.cell(status_badge(row.status)),
        rx.table.cell(
            rx.cond(
                row.status == "Active",
                rx.button(
                    "Revoke",
                    size="1",
                    variant="soft",
                    color_scheme="red",
                    high_contrast=True,
                    on_click=T.ask_revoke(row.id, row.name),
                ),
            ),
            text_align="right",
        ),
        align="center",
    )


def _create_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("New access token"),
            rx.dialog.description(
                "For the REST API (/api/v1). It is shown once, right after you make it.",
                size="2",
                color_scheme="gray",
                margin_bottom="16px",
            ),
            rx.form(
                rx.vstack(
                    rx.el.label(rx.text("Name", size="2", weight="medium"), html_for="token-name"),
                    rx.input(
                        id="token-name",
                        name="name",
                        placeholder="Payments platform",
                        width="100%",
                        max_length=tokens.NAME_MAX,
                    ),
                    field_error(T.errors["name"]),
                    rx.text("Scopes", size="2", weight="medium", padding_top="8px"),
                    *[
                        rx.el.label(
                            rx.hstack(
                                rx.checkbox(name=f"scope_{scope}", default_checked=scope == "read", margin_top="3px"),
                                rx.vstack(
                                    rx.text(scope, size="2", weight="medium"),
                                    rx.text(tokens.SCOPE_HELP[scope], size="1", color_scheme="gray"),
                                    spacing="0",
                                ),
                                align="start",
                                spacing="2",
                            ),
                            cursor="pointer",
                        )
                        for scope in tokens.SCOPES
                    ],
                    field_error(T.errors["scopes"]),
                    rx.el.label(
                        rx.text("Expires after (days, empty for never)", size="2", weight="medium"),
                        html_for="token-expiry",
                        padding_top="8px",
                    ),
                    rx.input(
                        id="token-expiry",
                        name="expires_in_days",
                        type="number",
                        min=1,
                        max=tokens.EXPIRY_MAX_DAYS,
                        placeholder="90",
                        width="160px",
                    ),
                    field_error(T.errors["expires_in_days"]),
                    rx.hstack(
                        rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button")),
                        rx.button("Make token", type="submit"),
                        justify="end",
                        spacing="3",
                        width="100%",
                        padding_top="12px",
                    ),
                    spacing="1",
                    width="100%",
                ),
                on_submit=T.create,
                reset_on_submit=True,
            ),
            max_width="520px",
        ),
        open=T.create_open,
        on_open_change=T.set_create_open,
    )


def _shown_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Token “" + T.shown_name + "”"),
            rx.dialog.description(
                "Copy it now and keep it somewhere safe: it is not shown again. "
                "Send it as Authorization: Bearer <token>.",
                size="2",
                color_scheme="gray",
                margin_bottom="12px",
            ),
            rx.code(
                T.shown_token,
                size="2",
                variant="soft",
                aria_label="Access token",
                style={"word_break": "break-all", "display": "block", "padding": "10px 12px"},
            ),
            rx.hstack(
                rx.button(
                    rx.icon("copy", size=14),
                    "Copy token",
                    variant="soft",
                    on_click=[rx.set_clipboard(T.shown_token), rx.toast.success("Token copied.")],
                ),
                rx.dialog.close(rx.button("Done")),
                justify="end",
                spacing="3",
                width="100%",
                padding_top="16px",
            ),
            max_width="560px",
        ),
        open=T.shown_open,
        on_open_change=T.set_shown_open,
    )


def _revoke_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Revoke token"),
            rx.alert_dialog.description(
                rx.text(
                    "Revoke ", rx.text.strong(T.revoke_name), "? Every request made with it is refused from now on."
                )
            ),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.alert_dialog.action(
                    rx.button("Revoke", color_scheme="red", high_contrast=True, on_click=T.confirm_revoke)
                ),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
            max_width="460px",
        ),
        open=T.revoke_open,
        on_open_change=T.set_revoke_open,
    )


def tokens_page() -> rx.Component:
    return page(
        rx.vstack(
            rx.hstack(
                rx.vstack(
                    rx.heading("Access tokens", size="7"),
                    rx.text(
                        "Tokens for the REST API at /api/v1 (docs at ",
                        rx.link("/api/v1/docs", href="/api/v1/docs", is_external=True),
                        "). Every use is recorded in the audit trail.",
                        color_scheme="gray",
                        size="2",
                    ),
                    spacing="1",
                ),
                rx.spacer(),
                rx.button(rx.icon("key-round", size=16), "New token", on_click=T.start_create),
                width="100%",
                align="end",
                spacing="4",
            ),
            # No table of headers over nothing (on a phone, an empty box to scroll sideways).
            rx.cond(
                ~T.loading & (T.rows.length() == 0),
                rx.text("No tokens yet.", size="2", color_scheme="gray"),
                rx.box(
                    rx.table.root(
                        rx.table.header(rx.table.row(*[rx.table.column_header_cell(c) for c in COLUMNS])),
                        rx.table.body(rx.cond(T.loading, loading_rows(len(COLUMNS)), rx.foreach(T.rows, _row))),
                        variant="surface",
                        width="100%",
                        size="2",
                    ),
                    width="100%",
                    overflow_x="auto",
                ),
            ),
            spacing="5",
            width="100%",
        ),
        _create_dialog(),
        _shown_dialog(),
        _revoke_dialog(),
    )
