"""The Members page (admins, hosted mode): invite, change a role, remove, make a new sign-in link."""

from __future__ import annotations

import reflex as rx

from kwik_console.store.team_tables import Role
from kwik_console.ui.components.common import field_error, loading_rows, local_time, page, status_badge
from kwik_console.ui.state.members import MembersState as M
from kwik_console.ui.views import MemberRow

ROLE_HELP = {
    Role.ADMIN: "Everything, plus members and the audit trail.",
    Role.DEVELOPER: "Webhooks, Test Webhook, signing secrets and the event log.",
    Role.VIEWER: "Reads the webhook list and the event log. Changes nothing and never sees a signing secret.",
}


def _role_select(row: MemberRow) -> rx.Component:
    return rx.select.root(
        rx.select.trigger(aria_label="Role of " + row.email, min_width="120px"),
        rx.select.content(*[rx.select.item(r.label, value=r.value) for r in Role]),
        value=row.role,
        on_change=lambda role: M.set_role(row.id, role),
        size="1",
    )


# On a phone the list is one stacked column: the Email cell carries the role and the status.
WIDE = ["none", "table-cell"]


def _status(row: MemberRow) -> rx.Component:
    return status_badge(rx.cond(row.status == "Active", "Active", "Invited"))


def _row(row: MemberRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(
            rx.vstack(
                rx.hstack(
                    rx.text(row.email, weight="medium", style={"word_break": "break-all"}),
                    rx.cond(row.is_me, rx.badge("you", variant="outline", radius="full")),
                    spacing="2",
                    align="center",
                ),
                rx.flex(_role_select(row), _status(row), display=["flex", "none"], gap="2", align="center"),
                spacing="2",
            )
        ),
        rx.table.cell(_role_select(row), display=WIDE),
        rx.table.cell(_status(row), display=WIDE),
        rx.table.cell(local_time(row.last_sign_in_at), display=["none", "table-cell"], white_space="nowrap"),
        rx.table.cell(
            rx.dropdown_menu.root(
                rx.dropdown_menu.trigger(
                    rx.icon_button(
                        rx.icon("ellipsis", size=16),
                        variant="ghost",
                        color_scheme="gray",
                        aria_label="Actions for " + row.email,
                    )
                ),
                rx.dropdown_menu.content(
                    rx.dropdown_menu.item(
                        rx.cond(row.status == "Active", "New password link", "New invitation link"),
                        on_click=M.new_link(row.id),
                    ),
                    rx.dropdown_menu.separator(),
                    rx.dropdown_menu.item("Remove", color_scheme="red", on_click=M.ask_remove(row.id, row.email)),
                    align="end",
                ),
            ),
            text_align="right",
        ),
        align="center",
    )


def _table() -> rx.Component:
    return rx.box(
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    rx.table.column_header_cell("Email"),
                    rx.table.column_header_cell("Role", display=WIDE),
                    rx.table.column_header_cell("Status", display=WIDE),
                    rx.table.column_header_cell("Last sign-in", display=["none", "table-cell"]),
                    rx.table.column_header_cell("", width="56px"),
                )
            ),
            rx.table.body(rx.cond(M.loading, loading_rows(5, 2), rx.foreach(M.rows, _row))),
            variant="surface",
            width="100%",
            size="2",
        ),
        width="100%",
        overflow_x="auto",
    )


def _invite_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Invite a member"),
            rx.dialog.description(
                "You get a one-time link to send them. It works once and expires after 24 hours.",
                size="2",
                color_scheme="gray",
                margin_bottom="16px",
            ),
            rx.form(
                rx.vstack(
                    rx.el.label(rx.text("Email", size="2", weight="medium"), html_for="invite-email"),
                    rx.input(
                        id="invite-email",
                        name="email",
                        type="email",
                        placeholder="dev@example.com",
                        width="100%",
                        required=True,
                    ),
                    field_error(M.invite_errors["email"]),
                    rx.text("Role", size="2", weight="medium", padding_top="8px"),
                    rx.radio_group.root(
                        rx.vstack(
                            *[
                                rx.el.label(
                                    rx.hstack(
                                        rx.radio_group.item(value=r.value, margin_top="3px"),
                                        rx.vstack(
                                            rx.text(r.label, size="2", weight="medium"),
                                            rx.text(ROLE_HELP[r], size="1", color_scheme="gray"),
                                            spacing="0",
                                        ),
                                        align="start",
                                        spacing="2",
                                    ),
                                    cursor="pointer",
                                )
                                for r in (Role.DEVELOPER, Role.VIEWER, Role.ADMIN)
                            ],
                            spacing="3",
                        ),
                        name="role",
                        default_value=Role.DEVELOPER.value,
                    ),
                    field_error(M.invite_errors["role"]),
                    rx.hstack(
                        rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button")),
                        rx.button("Make invitation link", type="submit"),
                        justify="end",
                        spacing="3",
                        width="100%",
                        padding_top="12px",
                    ),
                    spacing="1",
                    width="100%",
                ),
                on_submit=M.invite,
                reset_on_submit=True,
            ),
            max_width="480px",
        ),
        open=M.invite_open,
        on_open_change=M.set_invite_open,
    )


def _link_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("One-time link for " + M.link_email),
            rx.dialog.description(
                "Send this link to them privately. It is shown only now, works once, and expires ",
                local_time(M.link_expires_at),
                ".",
                size="2",
                color_scheme="gray",
                margin_bottom="12px",
            ),
            rx.code(
                M.link_url,
                size="2",
                variant="soft",
                aria_label="One-time link",
                style={"word_break": "break-all", "display": "block", "padding": "10px 12px"},
            ),
            rx.hstack(
                rx.button(
                    rx.icon("copy", size=14),
                    "Copy link",
                    variant="soft",
                    on_click=[rx.set_clipboard(M.link_url), rx.toast.success("Link copied.")],
                ),
                rx.dialog.close(rx.button("Done")),
                justify="end",
                spacing="3",
                width="100%",
                padding_top="16px",
            ),
            max_width="560px",
        ),
        open=M.link_open,
        on_open_change=M.set_link_open,
    )


def _remove_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Remove member"),
            rx.alert_dialog.description(
                rx.text(
                    "Remove ",
                    rx.text.strong(M.remove_email),
                    "? They are signed out at once and their links stop "
                    "working. Their entries in the audit trail stay.",
                )
            ),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.alert_dialog.action(
                    rx.button("Remove", color_scheme="red", high_contrast=True, on_click=M.confirm_remove)
                ),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
            max_width="460px",
        ),
        open=M.remove_open,
        on_open_change=M.set_remove_open,
    )


def members_page() -> rx.Component:
    return page(
        rx.vstack(
            rx.hstack(
                rx.vstack(
                    rx.heading("Members", size="7"),
                    rx.text(
                        "Who can sign in to this console, and what their role lets them do.",
                        color_scheme="gray",
                        size="2",
                    ),
                    spacing="1",
                ),
                rx.spacer(),
                rx.button(rx.icon("user-plus", size=16), "Invite", on_click=M.start_invite),
                width="100%",
                align="end",
                spacing="4",
            ),
            _table(),
            rx.grid(
                *[
                    rx.hstack(
                        rx.badge(r.label, variant="soft", radius="full"),
                        rx.text(ROLE_HELP[r], size="1", color_scheme="gray"),
                        spacing="2",
                        align="center",
                    )
                    for r in Role
                ],
                columns="1",
                spacing="2",
            ),
            spacing="5",
            width="100%",
        ),
        _invite_dialog(),
        _link_dialog(),
        _remove_dialog(),
    )
