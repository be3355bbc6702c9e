"""The Reflex app: pages, the access middleware, the plain HTTP routes and the delivery lifespan task."""

import reflex as rx

from kwik_console import api
from kwik_console.delivery import scheduler
from kwik_console.runtime import reflex_patches, wiring
from kwik_console.ui.middleware import AccessMiddleware
from kwik_console.ui.pages.audit import audit_page
from kwik_console.ui.pages.developers import developers_page
from kwik_console.ui.pages.event_log import event_log_page
from kwik_console.ui.pages.members import members_page
from kwik_console.ui.pages.sign_in import accept_page, sign_in_page
from kwik_console.ui.pages.tokens import tokens_page
from kwik_console.ui.pages.webhook_page import webhook_page
from kwik_console.ui.pages.webhooks import webhooks_page
from kwik_console.ui.state.audit import AuditState
from kwik_console.ui.state.developers import SignatureCheckState
from kwik_console.ui.state.event_log import EventLogState
from kwik_console.ui.state.members import MembersState
from kwik_console.ui.state.operations import RecoveryProgressState
from kwik_console.ui.state.session import SessionState
from kwik_console.ui.state.sign_in import AcceptState, SignInState
from kwik_console.ui.state.tokens import TokensState
from kwik_console.ui.state.webhook_page import WebhookPageState
from kwik_console.ui.state.webhooks import WebhooksState
from kwik_console.web import export, probes, sign_in

# Respawned workers and reconnects that keep their tab; refuses a Reflex or granian it was not written for.
reflex_patches.apply()

app = rx.App(
    # At the top, below the bar: at the bottom right they covered the event log's Resend buttons.
    toaster=rx.toast.provider(position="top-center", offset="72px", close_button=True),
    # POST /auth/* set and clear the HttpOnly session cookie; they come before Reflex's own routes.
    # Each app wraps the ones before it: /healthz, /readyz and /metrics answer ahead of the sign-in gate.
    api_transformer=[sign_in.app(), probes.app(), api.mount, export.app()],  # api.mount: /api/v1, ahead of the rest
)
# Every state event passes here first: no handler runs unless access.py allows it.
app.add_middleware(AccessMiddleware())

app.add_page(sign_in_page, route="/sign-in", title="Sign in · Kwik Console", on_load=SignInState.open_page)
app.add_page(accept_page, route="/accept", title="Choose your password · Kwik Console", on_load=AcceptState.open_page)
app.add_page(webhooks_page, route="/", title="Webhooks · Kwik Console", on_load=[SessionState.load, WebhooksState.load])
app.add_page(
    webhooks_page, route="/webhooks", title="Webhooks · Kwik Console", on_load=[SessionState.load, WebhooksState.load]
)
app.add_page(
    webhook_page,
    route="/webhooks/[webhook_id]",
    title="Webhook · Kwik Console",
    on_load=[
        SessionState.load,
        WebhookPageState.open_page,
        RecoveryProgressState.load,
        RecoveryProgressState.open_recover_when_asked,
    ],
)
app.add_page(
    developers_page,
    route="/developers",
    title="Developers · Kwik Console",
    on_load=[SessionState.load, SignatureCheckState.open_page],
)
app.add_page(
    event_log_page,
    route="/webhooks/[webhook_id]/events",
    title="Events · Kwik Console",
    on_load=[SessionState.load, EventLogState.open_page],
)
app.add_page(
    members_page, route="/members", title="Members · Kwik Console", on_load=[SessionState.load, MembersState.load]
)
app.add_page(
    audit_page, route="/audit", title="Audit trail · Kwik Console", on_load=[SessionState.load, AuditState.load]
)
app.add_page(
    tokens_page, route="/tokens", title="Access tokens · Kwik Console", on_load=[SessionState.load, TokensState.load]
)
# What the engine calls (after an attempt is recorded) and runs (the background jobs), in every process.
wiring.install()
# Never at import time: Reflex imports this module in more than one process.
app.register_lifespan_task(scheduler.running)
