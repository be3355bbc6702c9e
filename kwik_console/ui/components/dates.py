"""The console's one way to show a moment in time: formatted in the viewer's browser, in the viewer's time zone.

The server keeps and sends UTC ISO text ("" when there is no time); only the browser knows where the viewer
is, so no page, banner or audit entry formats a date on the server.
"""

from __future__ import annotations

import reflex as rx

# One form everywhere: "6 Dec 2026, 06:53:23". Seconds matter for deliveries a few seconds apart.
DATE_TIME = "D MMM YYYY, HH:mm:ss"
DATE_TIME_MINUTES = "D MMM YYYY, HH:mm"
DATE = "D MMM YYYY"

_FORMATS = {"seconds": DATE_TIME, "minutes": DATE_TIME_MINUTES, "day": DATE}


def when(iso: rx.Var | str, precision: str = "seconds") -> rx.Component:
    """A UTC ISO timestamp shown in the viewer's time zone, or a grey dash when there is none.

    precision: "seconds" (deliveries, attempts, audit), "minutes" (created, signed in), "day" (expiry dates).
    """
    return rx.cond(
        iso != "",
        rx.moment(iso, format=_FORMATS[precision], local=True),
        rx.text("—", as_="span", color_scheme="gray"),
    )


def when_relative(iso: rx.Var | str) -> rx.Component:
    """A time near now, told relative to now ("in a few seconds", "5 minutes ago") and kept current; the full
    date and time in the viewer's zone on hover."""
    return rx.cond(
        iso != "",
        rx.moment(iso, from_now=True, interval=1000, with_title=True, title_format=DATE_TIME, local=True),
        rx.text("—", as_="span", color_scheme="gray"),
    )
