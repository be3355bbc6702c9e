"""The Reflex app: pages, theme and the delivery scheduler's lifespan task. Wiring only."""

import reflex as rx

from kwik_console.delivery import scheduler


def index() -> rx.Component:
    return rx.container(
        rx.vstack(
            rx.heading("Kwik Console", size="8"),
            rx.text("Webhooks are being delivered. The console's pages are coming next."),
            spacing="4",
            padding_y="4em",
        )
    )


app = rx.App()
app.add_page(index, title="Webhooks · Kwik Console")
# Never at import time: Reflex imports this module in more than one process.
app.register_lifespan_task(scheduler.running)
