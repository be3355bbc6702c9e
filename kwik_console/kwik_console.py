"""The Reflex app: pages and the delivery scheduler's lifespan task. Wiring only."""

import reflex as rx

from kwik_console.delivery import scheduler
from kwik_console.ui.pages.event_log import event_log_page
from kwik_console.ui.pages.webhooks import webhooks_page
from kwik_console.ui.state.event_log import EventLogState
from kwik_console.ui.state.webhooks import WebhooksState

app = rx.App(toaster=rx.toast.provider(position="bottom-right", close_button=True))
app.add_page(webhooks_page, route="/", title="Webhooks · Kwik Console", on_load=WebhooksState.load)
app.add_page(webhooks_page, route="/webhooks", title="Webhooks · Kwik Console", on_load=WebhooksState.load)
app.add_page(event_log_page, route="/webhooks/[webhook_id]/events", title="Events · Kwik Console",
             on_load=EventLogState.open_page)
# Never at import time: Reflex imports this module in more than one process.
app.register_lifespan_task(scheduler.running)
