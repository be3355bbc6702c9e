"""Pieces every page uses: the page frame, status badges, times, states for loading and errors."""

from __future__ import annotations

import reflex as rx
from reflex_components_core.el.elements.forms import Form

from kwik_console.ui.components import dates
from kwik_console.ui.state.session import PasswordState, SessionState


class NativeForm(Form):
    """A plain HTML form that the browser posts itself: how a page reaches /auth/*, which sets the cookie.

    Reflex's own form always prevents the browser's submit, to send an event instead.
    """

    @classmethod
    def create(cls, *children, **props):
        return super(Form, cls).create(*children, **props)


native_form = NativeForm.create

STATUS_COLORS = {
    "Live": "green",
    "Paused": "orange",
    "Disabled": "gray",
    "Pending": "blue",
    "Success": "green",
    "Retrying": "amber",
    "Failure": "red",
    # Members and access tokens
    "Active": "green",
    "Invited": "amber",
    "Expired": "amber",
    "Revoked": "gray",
    # Recoveries
    "Running": "blue",
    "Finished": "green",
    "Cancelled": "gray",
}


def status_badge(label: rx.Var) -> rx.Component:
    return rx.match(
        label,
        # High contrast: soft badges' coloured text is below 4.5:1 on its own tint (green: 4.2:1).
        *[
            (name, rx.badge(name, color_scheme=color, variant="soft", radius="full", high_contrast=True))
            for name, color in STATUS_COLORS.items()
        ],
        rx.badge(label, variant="soft", high_contrast=True),
    )


def local_time(iso: rx.Var, fmt: str = dates.DATE_TIME) -> rx.Component:
    """Pages not yet moved to dates.when: the same one form (a date alone stays a date)."""
    return dates.when(iso, "day" if fmt == dates.DATE else "seconds")


_NAV = (
    ("Webhooks", "/"),
    ("Developers", "/developers"),
    ("Members", "/members"),
    ("Access tokens", "/tokens"),
    ("Audit trail", "/audit"),
)


def _nav_menu() -> rx.Component:
    """The top bar's links on a phone: one Menu button."""

    def item(label: str, href: str) -> rx.Component:
        return rx.dropdown_menu.item(label, on_click=rx.redirect(href))

    return rx.box(
        rx.dropdown_menu.root(
            rx.dropdown_menu.trigger(
                rx.button(rx.icon("menu", size=16), "Menu", variant="soft", color_scheme="gray", size="2")
            ),
            rx.dropdown_menu.content(
                *[item(label, href) for label, href in _NAV[:2]],
                rx.cond(
                    SessionState.hosted & SessionState.is_admin,
                    rx.fragment(*[item(label, href) for label, href in _NAV[2:]]),
                ),
                align="end",
            ),
        ),
        display=["block", "block", "none"],
    )


def navbar() -> rx.Component:
    return rx.el.header(
        rx.hstack(
            rx.link(
                rx.hstack(
                    rx.box(
                        rx.icon("zap", size=16, color="white"),
                        background=rx.color("accent", 9),
                        border_radius="6px",
                        padding="5px",
                        display="flex",
                    ),
                    rx.text("Kwik", weight="bold", size="4", color=rx.color("gray", 12)),
                    # On a phone the bar needs the room (Menu, theme, account): the mark and "Kwik" stay.
                    rx.text("Console", size="4", color=rx.color("gray", 11), display=["none", "block"]),
                    align="center",
                    spacing="2",
                ),
                href="/",
                underline="none",
            ),
            rx.spacer(),
            rx.hstack(
                # The links in a row from 768 px up; narrower, they would push the bar wider than the screen.
                rx.box(
                    rx.hstack(
                        *[
                            rx.link(label, href=href, size="2", weight="medium", white_space="nowrap")
                            for label, href in _NAV[:2]
                        ],
                        rx.cond(
                            SessionState.hosted & SessionState.is_admin,
                            rx.fragment(
                                *[
                                    rx.link(label, href=href, size="2", weight="medium", white_space="nowrap")
                                    for label, href in _NAV[2:]
                                ]
                            ),
                        ),
                        align="center",
                        spacing="4",
                    ),
                    display=["none", "none", "block"],
                ),
                _nav_menu(),
                rx.color_mode.button(size="2", variant="ghost", aria_label="Switch light or dark theme"),
                rx.cond(SessionState.hosted, user_menu()),
                align="center",
                spacing="3",
            ),
            align="center",
            max_width="1200px",
            margin="0 auto",
            padding_x=["16px", "24px"],
            height="56px",
        ),
        style={
            "border_bottom": f"1px solid {rx.color('gray', 5)}",
            "background": rx.color("gray", 1),
            "position": "sticky",
            "top": "0",
            "z_index": "10",
        },
    )


def _alerts_item() -> rx.Component:
    """Email me when a webhook starts failing, is disabled or recovers: a member's choice; an admin always is."""
    return rx.cond(
        SessionState.alerts_offered,
        rx.cond(
            SessionState.is_admin,
            rx.dropdown_menu.item(rx.icon("mail-check", size=14), "Alert emails: always, as an admin", disabled=True),
            rx.dropdown_menu.item(
                rx.cond(SessionState.email_alerts, rx.icon("square-check", size=14), rx.icon("square", size=14)),
                "Email me alerts",
                on_click=SessionState.toggle_email_alerts,
                # A checkbox to assistive technology too: its state is said, not only drawn.
                custom_attrs={"role": "menuitemcheckbox", "aria-checked": SessionState.email_alerts},
            ),
        ),
    )


def _sign_out_form(form_id: str, everywhere: bool) -> rx.Component:
    return native_form(
        rx.el.input(type="hidden", name="everywhere", value="1" if everywhere else "0"),
        id=form_id,
        action="/auth/sign-out",
        method="post",
        display="none",
    )


def user_menu() -> rx.Component:
    """Who is signed in, and their own account: password, sign out, sign out everywhere (hosted mode)."""
    return rx.fragment(
        rx.dropdown_menu.root(
            rx.dropdown_menu.trigger(
                rx.button(
                    rx.icon("circle-user", size=16),
                    rx.text(SessionState.email, display=["none", "none", "inline"]),
                    rx.icon("chevron-down", size=14),
                    variant="soft",
                    color_scheme="gray",
                    size="2",
                    aria_label="Account menu",
                ),
            ),
            rx.dropdown_menu.content(
                rx.box(
                    rx.text(SessionState.email, size="2", weight="medium"),
                    rx.badge(SessionState.role, variant="soft", radius="full", margin_top="4px"),
                    padding="8px 12px",
                ),
                rx.dropdown_menu.separator(),
                _alerts_item(),
                rx.dropdown_menu.item("Change password", on_click=PasswordState.start),
                rx.dropdown_menu.item(
                    "Sign out", on_click=rx.call_script("document.getElementById('sign-out-form').submit()")
                ),
                rx.dropdown_menu.item(
                    "Sign out everywhere",
                    color_scheme="red",
                    on_click=rx.call_script("document.getElementById('sign-out-everywhere-form').submit()"),
                ),
                align="end",
            ),
        ),
        _sign_out_form("sign-out-form", False),
        _sign_out_form("sign-out-everywhere-form", True),
        password_dialog(),
    )


def _password_field(label: str, name: str, autocomplete: str) -> rx.Component:
    return rx.vstack(
        rx.el.label(rx.text(label, size="2", weight="medium"), html_for=f"password-{name}"),
        rx.input(
            id=f"password-{name}", name=name, type="password", auto_complete=autocomplete, required=True, width="100%"
        ),
        field_error(PasswordState.errors[name]),
        spacing="1",
        width="100%",
    )


def password_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Change password"),
            rx.dialog.description(
                "Your other sessions are signed out; this one stays signed in.",
                size="2",
                color_scheme="gray",
                margin_bottom="16px",
            ),
            rx.form(
                rx.vstack(
                    _password_field("Current password", "current", "current-password"),
                    _password_field("New password (at least 12 characters)", "new", "new-password"),
                    _password_field("Repeat the new password", "confirm", "new-password"),
                    rx.hstack(
                        rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button")),
                        rx.button("Change password", type="submit"),
                        justify="end",
                        spacing="3",
                        width="100%",
                        padding_top="8px",
                    ),
                    spacing="3",
                    width="100%",
                ),
                on_submit=PasswordState.change,
                reset_on_submit=False,
            ),
            max_width="440px",
        ),
        open=PasswordState.open,
        on_open_change=PasswordState.set_open,
    )


def page(*children: rx.Component) -> rx.Component:
    return rx.box(
        navbar(),
        rx.el.main(
            rx.box(
                *children,
                max_width="1200px",
                margin="0 auto",
                padding_x=["16px", "24px"],
                padding_y=["20px", "32px"],
            ),
        ),
        min_height="100vh",
        background=rx.color("gray", 2),
    )


def loading_rows(columns: int, rows: int = 5) -> rx.Component:
    return rx.fragment(
        *[
            rx.table.row(*[rx.table.cell(rx.skeleton(rx.text("loading"), loading=True)) for _ in range(columns)])
            for _ in range(rows)
        ]
    )


def error_callout(message: rx.Var, on_retry) -> rx.Component:
    return rx.callout.root(
        rx.callout.icon(rx.icon("triangle-alert")),
        rx.callout.text(message),
        rx.button("Try again", size="1", variant="soft", color_scheme="red", on_click=on_retry),
        color_scheme="red",
        role="alert",
        margin_bottom="16px",
    )


def copy_button(label: str, text: rx.Var) -> rx.Component:
    """Copies `text` (already in the page: never a secret) to the clipboard, and says so."""
    return rx.button(
        rx.icon("copy", size=14),
        label,
        size="1",
        variant="soft",
        color_scheme="gray",
        type="button",
        on_click=[rx.set_clipboard(text), rx.toast.success("Copied.")],
    )


def code_block(text: rx.Var, max_height: str = "320px") -> rx.Component:
    return rx.el.pre(
        text,
        tab_index=0,  # it may scroll: keyboards must reach it
        style={
            "font_family": "var(--code-font-family)",
            "font_size": "12.5px",
            "line_height": "1.5",
            "background": rx.color("gray", 3),
            "border": f"1px solid {rx.color('gray', 5)}",
            "border_radius": "8px",
            "padding": "12px",
            "margin": "0",
            "overflow": "auto",
            "max_height": max_height,
            # Long lines wrap, indentation kept: nothing is cut off at any width.
            "white_space": "pre-wrap",
            "overflow_wrap": "anywhere",
            "width": "100%",
            # Its longest word must not widen what holds it either (a dialog sized to its content, on a phone).
            "contain": "inline-size",
            # In a column of cards (the drawer) a flex item may shrink to a line: never below its own height.
            "flex_shrink": "0",
            "min_height": "3em",
            "box_sizing": "border-box",
        },
    )


SR_ONLY = {
    "position": "absolute",
    "width": "1px",
    "height": "1px",
    "overflow": "hidden",
    "clip": "rect(0 0 0 0)",
    "white_space": "nowrap",
}


def table_name(name: str) -> rx.Component:
    """A table's accessible name, for readers only: a <caption>, as aria-label on rx.table.root lands on its <div>."""
    return rx.el.caption(name, style=SR_ONLY)


def field_error(message: rx.Var) -> rx.Component:
    return rx.cond(message != "", rx.text(message, color_scheme="red", size="1", role="alert"))
