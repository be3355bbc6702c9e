"""The sign-in page and the set-password page behind a one-time link. Plain HTML forms: they post to /auth/*."""

from __future__ import annotations

import reflex as rx

from kwik_console.team.members import MIN_PASSWORD_LENGTH
from kwik_console.ui.components.common import native_form
from kwik_console.ui.state.sign_in import AcceptState, SignInState


def _brand() -> rx.Component:
    return rx.hstack(
        rx.box(
            rx.icon("zap", size=18, color="white"),
            background=rx.color("accent", 9),
            border_radius="7px",
            padding="6px",
            display="flex",
        ),
        rx.text("Kwik", weight="bold", size="5"),
        rx.text("Console", size="5", color=rx.color("gray", 11)),
        align="center",
        spacing="2",
    )


def _frame(*children: rx.Component) -> rx.Component:
    return rx.center(
        rx.vstack(
            _brand(),
            rx.card(rx.vstack(*children, spacing="4", width="100%"), size="3", width="100%"),
            rx.text(
                "Signed-in members only. Ask an admin of this console for an invitation.",
                size="1",
                color_scheme="gray",
                align="center",
            ),
            spacing="5",
            align="center",
            width="100%",
            max_width="400px",
        ),
        min_height="100vh",
        padding="24px",
        background=rx.color("gray", 2),
    )


def _field(
    label: str, name: str, *, type_: str, autocomplete: str, autofocus: bool = False, hint: str = ""
) -> rx.Component:
    return rx.vstack(
        rx.el.label(rx.text(label, size="2", weight="medium"), html_for=f"field-{name}"),
        rx.input(
            id=f"field-{name}",
            name=name,
            type=type_,
            auto_complete=autocomplete,
            required=True,
            auto_focus=autofocus,
            size="3",
            width="100%",
        ),
        rx.cond(hint != "", rx.text(hint, size="1", color_scheme="gray")),
        spacing="1",
        width="100%",
    )


def _alert(message, color: str = "red") -> rx.Component:
    return rx.cond(
        message != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("info" if color != "red" else "triangle-alert")),
            rx.callout.text(message),
            color_scheme=color,
            role="alert",
            width="100%",
        ),
    )


def sign_in_page() -> rx.Component:
    return _frame(
        rx.heading("Sign in", size="6"),
        _alert(SignInState.notice, "green"),
        _alert(SignInState.message),
        native_form(
            rx.vstack(
                rx.el.input(type="hidden", name="next", value=SignInState.next_path),
                _field("Email", "email", type_="email", autocomplete="username", autofocus=True),
                _field("Password", "password", type_="password", autocomplete="current-password"),
                rx.button("Sign in", type="submit", size="3", width="100%", margin_top="4px"),
                spacing="4",
                width="100%",
            ),
            action="/auth/sign-in",
            method="post",
            width="100%",
        ),
    )


def accept_page() -> rx.Component:
    return _frame(
        rx.cond(
            AcceptState.loading,
            rx.center(rx.spinner(size="3"), padding="24px"),
            rx.cond(
                AcceptState.valid,
                rx.vstack(
                    rx.heading("Choose your password", size="6"),
                    rx.text(
                        "For ",
                        rx.text.strong(AcceptState.email),
                        ". You will be signed in straight away.",
                        size="2",
                        color_scheme="gray",
                    ),
                    _alert(AcceptState.message),
                    native_form(
                        rx.vstack(
                            rx.el.input(type="hidden", name="token", value=AcceptState.token),
                            # For password managers: the account this password belongs to.
                            rx.el.input(
                                type="email",
                                name="email",
                                value=AcceptState.email,
                                auto_complete="username",
                                read_only=True,
                                hidden=True,
                            ),
                            _field(
                                "New password",
                                "password",
                                type_="password",
                                autocomplete="new-password",
                                autofocus=True,
                                hint=f"At least {MIN_PASSWORD_LENGTH} characters. A few unrelated words work well.",
                            ),
                            _field("Repeat the password", "confirm", type_="password", autocomplete="new-password"),
                            rx.button(
                                "Set password and sign in", type="submit", size="3", width="100%", margin_top="4px"
                            ),
                            spacing="4",
                            width="100%",
                        ),
                        action="/auth/accept",
                        method="post",
                        width="100%",
                    ),
                    spacing="4",
                    width="100%",
                ),
                rx.vstack(
                    rx.heading("This link no longer works", size="6"),
                    rx.text(
                        "It has expired or was already used. Ask an admin of this console for a new one.",
                        size="2",
                        color_scheme="gray",
                    ),
                    rx.link("Go to sign in", href="/sign-in", size="2"),
                    spacing="3",
                    width="100%",
                ),
            ),
        ),
    )
