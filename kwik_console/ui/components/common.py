"""Pieces every page uses: the page frame, status badges, times, states for loading and errors."""

from __future__ import annotations

import reflex as rx

STATUS_COLORS = {
    "Live": "green",
    "Disabled": "gray",
    "Pending": "blue",
    "Success": "green",
    "Retrying": "amber",
    "Failure": "red",
}


def status_badge(label: rx.Var) -> rx.Component:
    return rx.match(
        label,
        *[(name, rx.badge(name, color_scheme=color, variant="soft", radius="full")) for name, color in
          STATUS_COLORS.items()],
        rx.badge(label, variant="soft"),
    )


def local_time(iso: rx.Var, fmt: str = "D MMM YYYY, HH:mm:ss") -> rx.Component:
    """A UTC timestamp shown in the viewer's own time zone."""
    return rx.cond(iso != "", rx.moment(iso, format=fmt, local=True), rx.text("—", color_scheme="gray"))


def navbar() -> rx.Component:
    return rx.box(
        rx.hstack(
            rx.link(
                rx.hstack(
                    rx.box(
                        rx.icon("zap", size=16, color="white"),
                        background=rx.color("accent", 9), border_radius="6px", padding="5px", display="flex",
                    ),
                    rx.text("Kwik", weight="bold", size="4", color=rx.color("gray", 12)),
                    rx.text("Console", size="4", color=rx.color("gray", 11)),
                    align="center", spacing="2",
                ),
                href="/", underline="none",
            ),
            rx.spacer(),
            rx.hstack(
                rx.text("Developers", size="2", color=rx.color("gray", 11), display=["none", "block"]),
                rx.link("Webhooks", href="/", size="2", weight="medium"),
                rx.color_mode.button(size="2", variant="ghost", aria_label="Switch light or dark theme"),
                align="center", spacing="4",
            ),
            align="center", max_width="1200px", margin="0 auto", padding_x=["16px", "24px"], height="56px",
        ),
        border_bottom=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 1),
        position="sticky", top="0", z_index="10",
    )


def page(*children: rx.Component) -> rx.Component:
    return rx.box(
        navbar(),
        rx.box(
            *children,
            max_width="1200px", margin="0 auto", padding_x=["16px", "24px"], padding_y=["20px", "32px"],
        ),
        min_height="100vh",
        background=rx.color("gray", 2),
    )


def loading_rows(columns: int, rows: int = 5) -> rx.Component:
    return rx.fragment(
        *[rx.table.row(*[rx.table.cell(rx.skeleton(rx.text("loading"), loading=True)) for _ in range(columns)])
          for _ in range(rows)]
    )


def error_callout(message: rx.Var, on_retry) -> rx.Component:
    return rx.callout.root(
        rx.callout.icon(rx.icon("triangle-alert")),
        rx.callout.text(message),
        rx.button("Try again", size="1", variant="soft", color_scheme="red", on_click=on_retry),
        color_scheme="red", role="alert", margin_bottom="16px",
    )


def code_block(text: rx.Var, max_height: str = "320px") -> rx.Component:
    return rx.el.pre(
        text,
        style={
            "font_family": "var(--code-font-family)", "font_size": "12.5px", "line_height": "1.5",
            "background": rx.color("gray", 3), "border": f"1px solid {rx.color('gray', 5)}",
            "border_radius": "8px", "padding": "12px", "margin": "0", "overflow": "auto",
            "max_height": max_height, "white_space": "pre", "width": "100%",
        },
    )


def field_error(message: rx.Var) -> rx.Component:
    return rx.cond(message != "", rx.text(message, color_scheme="red", size="1", role="alert"))
