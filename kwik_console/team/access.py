"""Who may do what: the one table of roles and actions, and the rule for every state event handler.

The console's Reflex middleware (`ui/middleware.py`) asks `decide()` before every
state event, background and chained events included. A handler with no rule
in HANDLER_RULES is refused for everyone, and tests/test_access.py fails until
one is added.
"""

from __future__ import annotations

import contextvars
from enum import StrEnum

from kwik_console.store.team_tables import Role
from kwik_console.team.audit import Actor
from kwik_console.team.sessions import SignedIn


class Action(StrEnum):
    PUBLIC = "public"  # anyone, signed in or not: Reflex's own page loading, the sign-in pages
    ACCOUNT = "account"  # any signed-in member: who am I, change my own password, my alert emails
    READ = "webhooks.read"  # the webhook list and the event log
    WRITE = "webhooks.write"  # create, edit, delete
    TEST = "webhooks.test"  # Test Webhook
    REVEAL_SECRET = "secrets.reveal"  # reveal or copy a signing secret
    ROTATE_SECRET = "secrets.rotate"
    MEMBERS = "members.manage"
    AUDIT = "audit.read"
    PUBLISH = "events.publish"  # POST /api/v1/events: the platform publishing
    TOKENS = "tokens.manage"  # create, list and revoke API access tokens
    PAUSE = "webhooks.pause"  # pause and resume (and re-enable a disabled webhook)
    RESEND = "deliveries.resend"  # resend one delivery now
    RECOVER = "deliveries.recover"  # start and cancel "Recover failed since"
    OPERATIONAL = "operational.manage"  # set or remove the operational webhook


ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.ACCOUNT, Action.READ}),
    Role.DEVELOPER: frozenset(
        {
            Action.ACCOUNT,
            Action.READ,
            Action.WRITE,
            Action.TEST,
            Action.REVEAL_SECRET,
            Action.ROTATE_SECRET,
            Action.PAUSE,
            Action.RESEND,
            Action.RECOVER,
        }
    ),
    Role.ADMIN: frozenset(Action) - {Action.PUBLIC},
}

_UI = "kwik_console.ui.state"
# Every state event handler of the app, by module.Class.handler, and the action it needs.
# `setvar` (Reflex's generic setter, which would let a browser set any var) has no rule: refused.
HANDLER_RULES: dict[str, Action] = {
    # Reflex's own events: without them no page loads, not even the sign-in page.
    "reflex.state.State.hydrate": Action.PUBLIC,
    "reflex.state.State.hydrate_and_load": Action.PUBLIC,
    "reflex.state.State.set_is_hydrated": Action.PUBLIC,
    "reflex.state.OnLoadInternalState.on_load_internal": Action.PUBLIC,  # each page's on_load is checked itself
    "reflex.state.OnLoadInternalState.set_is_hydrated": Action.PUBLIC,
    "reflex.state.UpdateVarsInternalState.update_vars_internal": Action.PUBLIC,  # client-storage vars only
    "reflex.state.FrontendEventExceptionState.handle_frontend_exception": Action.PUBLIC,
    # Signing in.
    f"{_UI}.sign_in.SignInState.open_page": Action.PUBLIC,
    f"{_UI}.sign_in.AcceptState.open_page": Action.PUBLIC,
    # The signed-in member's own account.
    f"{_UI}.session.SessionState.load": Action.ACCOUNT,
    f"{_UI}.session.SessionState.toggle_email_alerts": Action.ACCOUNT,
    f"{_UI}.session.PasswordState.start": Action.ACCOUNT,
    f"{_UI}.session.PasswordState.set_open": Action.ACCOUNT,
    f"{_UI}.session.PasswordState.change": Action.ACCOUNT,
    # The webhook list.
    f"{_UI}.webhooks.WebhooksState.load": Action.READ,
    f"{_UI}.webhooks.WebhooksState.set_search": Action.READ,
    f"{_UI}.webhooks.WebhooksState.clear_search": Action.READ,
    f"{_UI}.webhooks.WebhooksState.next_page": Action.READ,
    f"{_UI}.webhooks.WebhooksState.previous_page": Action.READ,
    # Create / Edit.
    f"{_UI}.webhooks.WebhookFormState.open_create": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.open_edit": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.set_open": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.set_name": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.set_url": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.set_status": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.set_max_per_second": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.toggle_event": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.select_all": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.select_none": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.set_events_mode": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.add_header": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.remove_header": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.set_header_name": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.set_header_value": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.save": Action.WRITE,
    f"{_UI}.webhooks.WebhookFormState.toggle_secret": Action.REVEAL_SECRET,
    f"{_UI}.webhooks.WebhookFormState.copy_secret": Action.REVEAL_SECRET,
    f"{_UI}.webhooks.WebhookFormState.rotate_secret": Action.ROTATE_SECRET,
    f"{_UI}.webhooks.DeleteState.ask": Action.WRITE,
    f"{_UI}.webhooks.DeleteState.set_open": Action.WRITE,
    f"{_UI}.webhooks.DeleteState.confirm": Action.WRITE,
    # Test Webhook.
    f"{_UI}.webhook_tester.TestWebhookState.start": Action.TEST,
    f"{_UI}.webhook_tester.TestWebhookState.set_open": Action.TEST,
    f"{_UI}.webhook_tester.TestWebhookState.set_event_type": Action.TEST,
    f"{_UI}.webhook_tester.TestWebhookState.set_payload": Action.TEST,
    f"{_UI}.webhook_tester.TestWebhookState.reset_payload": Action.TEST,
    f"{_UI}.webhook_tester.TestWebhookState.send": Action.TEST,
    # A webhook's own page; its signing secret; the Developers page.
    f"{_UI}.webhook_page.WebhookPageState.open_page": Action.READ,
    f"{_UI}.webhook_page.WebhookPageState.set_time_zone": Action.READ,
    f"{_UI}.webhook_page.WebhookPageState.load": Action.READ,
    f"{_UI}.webhook_page.WebhookPageState.load_charts": Action.READ,
    f"{_UI}.webhook_page.WebhookPageState.set_range": Action.READ,
    f"{_UI}.webhook_page.WebhookPageState.refresh_recent": Action.READ,
    f"{_UI}.webhook_page.WebhookPageState.follow": Action.READ,
    f"{_UI}.webhook_page.WebhookPageState.stop_following": Action.READ,
    f"{_UI}.webhook_page.SecretState.toggle": Action.REVEAL_SECRET,
    f"{_UI}.webhook_page.SecretState.copy": Action.REVEAL_SECRET,
    f"{_UI}.webhook_page.SecretState.rotate": Action.ROTATE_SECRET,
    f"{_UI}.developers.SignatureCheckState.open_page": Action.READ,
    f"{_UI}.developers.SignatureCheckState.set_language": Action.READ,
    f"{_UI}.developers.SignatureCheckState.check": Action.READ,
    f"{_UI}.developers.SignatureCheckState.fill_secret": Action.REVEAL_SECRET,
    # The event log.
    f"{_UI}.event_log.EventLogState.open_page": Action.READ,
    f"{_UI}.event_log.EventLogState.refresh": Action.READ,
    f"{_UI}.event_log.EventLogState.follow": Action.READ,
    f"{_UI}.event_log.EventLogState.stop_following": Action.READ,
    f"{_UI}.event_log.EventLogState.set_status": Action.READ,
    f"{_UI}.event_log.EventLogState.set_event_type": Action.READ,
    f"{_UI}.event_log.EventLogState.set_test": Action.READ,
    f"{_UI}.event_log.EventLogState.set_search": Action.READ,
    f"{_UI}.event_log.EventLogState.set_since": Action.READ,
    f"{_UI}.event_log.EventLogState.set_until": Action.READ,
    f"{_UI}.event_log.EventLogState.clear_filters": Action.READ,
    f"{_UI}.event_log.EventLogState.set_time_zone": Action.READ,
    f"{_UI}.event_log.EventLogState.older": Action.READ,
    f"{_UI}.event_log.EventLogState.newer": Action.READ,
    f"{_UI}.event_log.EventLogState.show": Action.READ,
    f"{_UI}.event_log.EventLogState.set_detail_open": Action.READ,
    f"{_UI}.event_log.ResendState.resend": Action.RESEND,
    # Operating a webhook: Pause / Resume (and Re-enable), "Recover failed since…", the operational webhook.
    f"{_UI}.operations.HealthState.pause": Action.PAUSE,
    f"{_UI}.operations.HealthState.resume": Action.PAUSE,
    f"{_UI}.operations.RecoveryProgressState.load": Action.READ,
    f"{_UI}.operations.RecoveryProgressState.open_recover_when_asked": Action.READ,  # checks RECOVER itself
    f"{_UI}.operations.RecoveryProgressState.refresh": Action.READ,
    f"{_UI}.operations.RecoveryProgressState.dismiss": Action.READ,  # this browser's view only
    f"{_UI}.operations.RecoverState.open_dialog": Action.RECOVER,
    f"{_UI}.operations.RecoverState.set_open": Action.RECOVER,
    f"{_UI}.operations.RecoverState.set_since": Action.RECOVER,
    f"{_UI}.operations.RecoverState.set_event_type": Action.RECOVER,
    f"{_UI}.operations.RecoverState.set_statuses": Action.RECOVER,
    f"{_UI}.operations.RecoverState.start": Action.RECOVER,
    f"{_UI}.operations.RecoverState.cancel": Action.RECOVER,
    f"{_UI}.operations.OperationalState.load": Action.OPERATIONAL,
    f"{_UI}.operations.OperationalState.set_url": Action.OPERATIONAL,
    f"{_UI}.operations.OperationalState.save": Action.OPERATIONAL,
    f"{_UI}.operations.OperationalState.remove": Action.OPERATIONAL,
    f"{_UI}.operations.OperationalState.toggle_secret": Action.OPERATIONAL,
    f"{_UI}.operations.OperationalState.copy_secret": Action.OPERATIONAL,
    # Members.
    f"{_UI}.members.MembersState.load": Action.MEMBERS,
    f"{_UI}.members.MembersState.start_invite": Action.MEMBERS,
    f"{_UI}.members.MembersState.set_invite_open": Action.MEMBERS,
    f"{_UI}.members.MembersState.invite": Action.MEMBERS,
    f"{_UI}.members.MembersState.set_link_open": Action.MEMBERS,
    f"{_UI}.members.MembersState.set_role": Action.MEMBERS,
    f"{_UI}.members.MembersState.ask_remove": Action.MEMBERS,
    f"{_UI}.members.MembersState.set_remove_open": Action.MEMBERS,
    f"{_UI}.members.MembersState.confirm_remove": Action.MEMBERS,
    f"{_UI}.members.MembersState.new_link": Action.MEMBERS,
    # The audit trail.
    f"{_UI}.audit.AuditState.load": Action.AUDIT,
    f"{_UI}.audit.AuditState.set_actor": Action.AUDIT,
    f"{_UI}.audit.AuditState.set_action": Action.AUDIT,
    f"{_UI}.audit.AuditState.older": Action.AUDIT,
    f"{_UI}.audit.AuditState.newer": Action.AUDIT,
    # Access tokens.
    f"{_UI}.tokens.TokensState.load": Action.TOKENS,
    f"{_UI}.tokens.TokensState.start_create": Action.TOKENS,
    f"{_UI}.tokens.TokensState.set_create_open": Action.TOKENS,
    f"{_UI}.tokens.TokensState.create": Action.TOKENS,
    f"{_UI}.tokens.TokensState.set_shown_open": Action.TOKENS,
    f"{_UI}.tokens.TokensState.ask_revoke": Action.TOKENS,
    f"{_UI}.tokens.TokensState.set_revoke_open": Action.TOKENS,
    f"{_UI}.tokens.TokensState.confirm_revoke": Action.TOKENS,
}

# What an API access token's scopes let it do (tokens.SCOPES), in the same actions as the roles.
# `read` never includes a signing secret, like the viewer role; `write` reads too, like the developer role.
SCOPE_ACTIONS: dict[str, frozenset[Action]] = {
    "read": frozenset({Action.READ}),
    "write": frozenset(
        {
            Action.READ,
            Action.WRITE,
            Action.TEST,
            Action.REVEAL_SECRET,
            Action.ROTATE_SECRET,
            Action.PAUSE,
            Action.RESEND,
            Action.RECOVER,
        }
    ),
    "publish": frozenset({Action.PUBLISH}),
}

API_PREFIX = "/api/v1"
# Every route of the REST API, by "METHOD path", and the action it needs. The API's guard
# (api/auth.py) refuses a route with no rule, and tests/test_api_access.py fails until one is added.
API_RULES: dict[str, Action] = {
    f"GET {API_PREFIX}/openapi.json": Action.PUBLIC,
    f"GET {API_PREFIX}/docs": Action.PUBLIC,
    f"GET {API_PREFIX}/docs/{{asset}}": Action.PUBLIC,
    f"GET {API_PREFIX}/event-types": Action.READ,
    f"GET {API_PREFIX}/webhooks": Action.READ,
    f"POST {API_PREFIX}/webhooks": Action.WRITE,
    f"GET {API_PREFIX}/webhooks/{{webhook_id}}": Action.READ,
    f"PATCH {API_PREFIX}/webhooks/{{webhook_id}}": Action.WRITE,
    f"DELETE {API_PREFIX}/webhooks/{{webhook_id}}": Action.WRITE,
    f"GET {API_PREFIX}/webhooks/{{webhook_id}}/secret": Action.REVEAL_SECRET,
    f"POST {API_PREFIX}/webhooks/{{webhook_id}}/secret/rotate": Action.ROTATE_SECRET,
    f"POST {API_PREFIX}/webhooks/{{webhook_id}}/test": Action.TEST,
    f"GET {API_PREFIX}/webhooks/{{webhook_id}}/deliveries": Action.READ,
    f"GET {API_PREFIX}/deliveries/{{delivery_id}}": Action.READ,
    f"POST {API_PREFIX}/events": Action.PUBLISH,
    f"GET {API_PREFIX}/stream": Action.READ,
    f"GET {API_PREFIX}/listen/secret": Action.REVEAL_SECRET,  # as a webhook's signing secret
    f"POST {API_PREFIX}/listen/secret/rotate": Action.ROTATE_SECRET,
    f"POST {API_PREFIX}/webhooks/{{webhook_id}}/pause": Action.PAUSE,
    f"POST {API_PREFIX}/webhooks/{{webhook_id}}/resume": Action.PAUSE,
    f"POST {API_PREFIX}/deliveries/{{delivery_id}}/resend": Action.RESEND,
    f"POST {API_PREFIX}/webhooks/{{webhook_id}}/recoveries": Action.RECOVER,
    f"GET {API_PREFIX}/webhooks/{{webhook_id}}/recoveries": Action.READ,
    f"GET {API_PREFIX}/recoveries/{{recovery_id}}": Action.READ,
    f"POST {API_PREFIX}/recoveries/{{recovery_id}}/cancel": Action.RECOVER,
    f"GET {API_PREFIX}/operational-webhook": Action.OPERATIONAL,
    f"PUT {API_PREFIX}/operational-webhook": Action.OPERATIONAL,
    f"DELETE {API_PREFIX}/operational-webhook": Action.OPERATIONAL,
}


def token_may(scopes, action: Action | None) -> bool:
    """Whether an access token with these scopes may take `action`."""
    if action is None:
        return False
    return action == Action.PUBLIC or any(action in SCOPE_ACTIONS.get(s, frozenset()) for s in scopes)


# The local console's one implicit admin: no sign-in, loopback only.
LOCAL_ADMIN = SignedIn(member_id=None, email="local admin", role=Role.ADMIN)

# The member behind the event being handled; set by the guard before the handler runs.
current: contextvars.ContextVar[SignedIn | None] = contextvars.ContextVar("kwik_signed_in", default=None)


class Decision(StrEnum):
    ALLOW = "allow"
    SIGN_IN = "sign_in"  # nobody is signed in (or the session ended): go to the sign-in page
    REFUSE = "refuse"  # signed in, but the role does not allow it, or the handler has no rule


def may(role: str | None, action: Action | None) -> bool:
    if action is None:
        return False
    if action == Action.PUBLIC:
        return True
    return role is not None and action in ROLE_ACTIONS.get(role, frozenset())


def decide(handler: str, signed_in: SignedIn | None) -> Decision:
    """Whether `signed_in` (None: nobody) may run the handler named module.Class.handler."""
    action = HANDLER_RULES.get(handler)
    if action == Action.PUBLIC:
        return Decision.ALLOW
    if signed_in is None:
        return Decision.SIGN_IN
    return Decision.ALLOW if may(signed_in.role, action) else Decision.REFUSE


# Every kwik-console command, by "command action", and the action it takes. Whoever runs the
# command line has the server's shell and database: the operator, with an admin's rights.
# cli.main asks `decide_command` before any command runs; a command with no rule is refused,
# and tests/test_access.py fails until one is added.
CLI_RULES: dict[str, Action] = {
    "run": Action.PUBLIC,
    "worker": Action.PUBLIC,
    "webhooks list": Action.READ,
    "webhooks show": Action.READ,
    "webhooks create": Action.WRITE,
    "webhooks update": Action.WRITE,
    "webhooks delete": Action.WRITE,
    "webhooks rotate-secret": Action.ROTATE_SECRET,
    "events types": Action.READ,
    "events publish": Action.PUBLISH,
    "deliveries list": Action.READ,
    "deliveries show": Action.READ,
    "users list": Action.MEMBERS,
    "users create": Action.MEMBERS,
    "users set-role": Action.MEMBERS,
    "users remove": Action.MEMBERS,
    "users reset-password": Action.MEMBERS,
    "tokens create": Action.TOKENS,
    "tokens list": Action.TOKENS,
    "tokens revoke": Action.TOKENS,
    "listen": Action.PUBLIC,  # a client of a console's API: that console checks its token
    "trigger": Action.PUBLIC,  # likewise
    "db upgrade": Action.MEMBERS,
    "db current": Action.READ,
    "db history": Action.READ,
    "db revision": Action.MEMBERS,
    "secrets new-key": Action.PUBLIC,
    "secrets rekey": Action.ROTATE_SECRET,
    "webhooks pause": Action.PAUSE,
    "webhooks resume": Action.PAUSE,
    "deliveries resend": Action.RESEND,
    "recover start": Action.RECOVER,
    "recover status": Action.READ,
    "recover cancel": Action.RECOVER,
    "recover list": Action.READ,
    "operational-webhook set": Action.OPERATIONAL,
    "operational-webhook show": Action.OPERATIONAL,  # shows its signing secret
    "operational-webhook remove": Action.OPERATIONAL,
    "retention purge": Action.OPERATIONAL,  # deletes history: an admin's, like the operational webhook
}
OPERATOR = SignedIn(member_id=None, email="kwik-console CLI", role=Role.ADMIN)


def decide_command(command: str) -> Decision:
    """Whether the command line may run `command` ("webhooks create", say)."""
    action = CLI_RULES.get(command)
    if action == Action.PUBLIC:
        return Decision.ALLOW
    return Decision.ALLOW if may(OPERATOR.role, action) else Decision.REFUSE


def member() -> SignedIn:
    """The member the current handler runs for; only the guard sets it, so a handler never runs without one."""
    signed_in = current.get()
    if signed_in is None:
        raise PermissionError("no member: this code must run behind the access guard")
    return signed_in


def actor():
    """The current member, as the audit trail names them."""

    signed_in = member()
    return Actor(signed_in.member_id, signed_in.email)
