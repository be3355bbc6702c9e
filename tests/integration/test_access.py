"""The authorisation matrix: every event handler of every state, found by introspection, through the real guard.

Each handler is sent, as an event, through the same middleware the console runs
(ui/middleware.py -> access.decide), as anonymous, viewer, developer and admin, with a
real session cookie checked against a real database, and its answer compared with the
least role written out for that handler here. A handler added without a rule in
access.HANDLER_RULES is refused for everyone, and one added without its line here fails.
"""

from __future__ import annotations

import asyncio

import pytest
from reflex.state import State
from reflex_base.event import Event

from kwik_console import kwik_console as console_app  # registers every state of the app
from kwik_console.store.db import session_scope
from kwik_console.store.team_tables import Role
from kwik_console.team import access, audit, members, sessions
from kwik_console.ui import middleware
from tests.conftest import TEST_SECRET_KEY, configure

PUBLIC_URL = "http://127.0.0.1:3999"
UI = "kwik_console.ui.state."

# Who may run each event handler, by the least role that may: written out here from what the product says
# each role may do, handler by handler, not copied from access.py. Reflex's generic `setvar`, which would
# let a browser set any var of its state, is nobody's.
ANYONE, NOBODY = "anyone", "nobody"
VIEWER, DEVELOPER, ADMIN = Role.VIEWER, Role.DEVELOPER, Role.ADMIN
MAY = {
    None: {ANYONE},
    VIEWER: {ANYONE, VIEWER},
    DEVELOPER: {ANYONE, VIEWER, DEVELOPER},
    ADMIN: {ANYONE, VIEWER, DEVELOPER, ADMIN},
}


def _each(state: str, **handlers: str) -> dict[str, str]:
    return {f"{state}.{name}": who for name, who in handlers.items()}


LEAST_ROLE: dict[str, str] = {
    # Reflex's own: without them no page loads, not even the sign-in page.
    **_each("reflex.state.State", hydrate=ANYONE, hydrate_and_load=ANYONE, set_is_hydrated=ANYONE),
    **_each("reflex.state.OnLoadInternalState", on_load_internal=ANYONE, set_is_hydrated=ANYONE),
    **_each("reflex.state.UpdateVarsInternalState", update_vars_internal=ANYONE),
    **_each("reflex.state.FrontendEventExceptionState", handle_frontend_exception=ANYONE),
    # Signing in, and accepting an invitation.
    **_each(UI + "sign_in.SignInState", open_page=ANYONE),
    **_each(UI + "sign_in.AcceptState", open_page=ANYONE),
    # Any member's own account.
    **_each(UI + "session.SessionState", load=VIEWER, toggle_email_alerts=VIEWER),
    **_each(UI + "session.PasswordState", start=VIEWER, set_open=VIEWER, change=VIEWER),
    # Reading: the webhook list, a webhook's page, the event log, the Developers page, a recovery's progress.
    **_each(
        UI + "webhooks.WebhooksState",
        load=VIEWER,
        set_search=VIEWER,
        clear_search=VIEWER,
        next_page=VIEWER,
        previous_page=VIEWER,
    ),
    **_each(
        UI + "webhook_page.WebhookPageState",
        open_page=VIEWER,
        set_time_zone=VIEWER,
        load=VIEWER,
        load_charts=VIEWER,
        set_range=VIEWER,
        refresh_recent=VIEWER,
        follow=VIEWER,
        stop_following=VIEWER,
    ),
    **_each(
        UI + "developers.SignatureCheckState",
        open_page=VIEWER,
        set_language=VIEWER,
        check=VIEWER,
        fill_secret=DEVELOPER,
    ),
    **_each(
        UI + "event_log.EventLogState",
        open_page=VIEWER,
        refresh=VIEWER,
        follow=VIEWER,
        stop_following=VIEWER,
        set_status=VIEWER,
        set_event_type=VIEWER,
        set_test=VIEWER,
        set_search=VIEWER,
        set_since=VIEWER,
        set_until=VIEWER,
        clear_filters=VIEWER,
        set_time_zone=VIEWER,
        older=VIEWER,
        newer=VIEWER,
        show=VIEWER,
        set_detail_open=VIEWER,
    ),
    # Opening "Recover failed since…" from a link checks the right to recover itself.
    **_each(
        UI + "operations.RecoveryProgressState",
        load=VIEWER,
        open_recover_when_asked=VIEWER,
        refresh=VIEWER,
        dismiss=VIEWER,
    ),
    # Changing webhooks, their secrets and their deliveries: developers.
    **_each(
        UI + "webhooks.WebhookFormState",
        open_create=DEVELOPER,
        open_edit=DEVELOPER,
        set_open=DEVELOPER,
        set_name=DEVELOPER,
        set_url=DEVELOPER,
        set_status=DEVELOPER,
        set_max_per_second=DEVELOPER,
        toggle_event=DEVELOPER,
        set_events_mode=DEVELOPER,
        add_header=DEVELOPER,
        remove_header=DEVELOPER,
        set_header_name=DEVELOPER,
        set_header_value=DEVELOPER,
        select_all=DEVELOPER,
        select_none=DEVELOPER,
        save=DEVELOPER,
        toggle_secret=DEVELOPER,
        copy_secret=DEVELOPER,
        rotate_secret=DEVELOPER,
    ),
    **_each(UI + "webhooks.DeleteState", ask=DEVELOPER, set_open=DEVELOPER, confirm=DEVELOPER),
    **_each(UI + "webhook_page.SecretState", toggle=DEVELOPER, copy=DEVELOPER, rotate=DEVELOPER),
    **_each(
        UI + "webhook_tester.TestWebhookState",
        start=DEVELOPER,
        set_open=DEVELOPER,
        set_event_type=DEVELOPER,
        set_payload=DEVELOPER,
        reset_payload=DEVELOPER,
        send=DEVELOPER,
    ),
    **_each(UI + "event_log.ResendState", resend=DEVELOPER),
    **_each(UI + "operations.HealthState", pause=DEVELOPER, resume=DEVELOPER),
    **_each(
        UI + "operations.RecoverState",
        open_dialog=DEVELOPER,
        set_open=DEVELOPER,
        set_since=DEVELOPER,
        set_event_type=DEVELOPER,
        set_statuses=DEVELOPER,
        start=DEVELOPER,
        cancel=DEVELOPER,
    ),
    # The team, its audit trail, API tokens and the operational webhook: admins.
    **_each(
        UI + "members.MembersState",
        load=ADMIN,
        start_invite=ADMIN,
        set_invite_open=ADMIN,
        invite=ADMIN,
        set_link_open=ADMIN,
        set_role=ADMIN,
        ask_remove=ADMIN,
        set_remove_open=ADMIN,
        confirm_remove=ADMIN,
        new_link=ADMIN,
    ),
    **_each(UI + "audit.AuditState", load=ADMIN, set_actor=ADMIN, set_action=ADMIN, older=ADMIN, newer=ADMIN),
    **_each(
        UI + "tokens.TokensState",
        load=ADMIN,
        start_create=ADMIN,
        set_create_open=ADMIN,
        create=ADMIN,
        set_shown_open=ADMIN,
        ask_revoke=ADMIN,
        set_revoke_open=ADMIN,
        confirm_revoke=ADMIN,
    ),
    **_each(
        UI + "operations.OperationalState",
        load=ADMIN,
        set_url=ADMIN,
        save=ADMIN,
        remove=ADMIN,
        toggle_secret=ADMIN,
        copy_secret=ADMIN,
    ),
}


def least_role(handler: str) -> str:
    return NOBODY if handler.endswith(".setvar") else LEAST_ROLE[handler]


def test_every_handler_of_the_app_is_in_the_matrix():
    handlers = {h for h in middleware.all_handlers().values() if not h.endswith(".setvar")}
    assert handlers == set(LEAST_ROLE), (
        f"new handlers: say in this test who may use them: {sorted(handlers - set(LEAST_ROLE))}; "
        f"gone: {sorted(set(LEAST_ROLE) - handlers)}"
    )


def test_every_handler_has_a_rule():
    handlers = middleware.all_handlers().values()
    missing = [h for h in handlers if h not in access.HANDLER_RULES and not h.endswith(".setvar")]
    assert not missing, f"handlers without a rule in access.HANDLER_RULES (refused for everyone): {missing}"
    stale = set(access.HANDLER_RULES) - set(handlers)
    assert not stale, f"rules for handlers that no longer exist: {stale}"


def test_a_handler_without_a_rule_is_refused_for_every_role():
    ghost = "kwik_console.ui.state.webhooks.WebhooksState.drop_everything"
    assert access.decide(ghost, None) == access.Decision.SIGN_IN
    for role in Role:
        assert access.decide(ghost, sessions.SignedIn(1, "a@example.com", role)) == access.Decision.REFUSE


def _state(cookie: str | None, origin: str = PUBLIC_URL) -> State:
    state = State(_reflex_internal_init=True)
    headers = {"origin": origin}
    if cookie:
        headers["cookie"] = f"theme=dark; {sessions.COOKIE_NAME}={cookie}"
    state.router_data = {"headers": headers, "asPath": "/webhooks", "pathname": "/webhooks"}
    return state


def _allowed(event_name: str, state: State) -> bool:
    update = asyncio.run(
        middleware.AccessMiddleware().preprocess(console_app.app, state, Event(name=event_name, payload={}))
    )
    return update is None


@pytest.fixture
def hosted(kwik, monkeypatch):
    configure(monkeypatch, KWIK_MODE="hosted", KWIK_PUBLIC_URL=PUBLIC_URL, KWIK_SECRET_KEY=TEST_SECRET_KEY)
    tokens = {}
    with session_scope() as session:
        for role in Role:
            link = members.invite(session=session, email=f"{role}@example.com", role=role, actor=audit.CLI)
            members.accept_link(
                session=session,
                token=link.token,
                password="a long enough passphrase",
                confirm="a long enough passphrase",
            )
            tokens[role] = sessions.open_session(session=session, member=link.member)
    return tokens


def test_the_matrix_through_the_guard_handler_by_handler(hosted):
    names = middleware.all_handlers()
    assert len(names) > 60
    who = {None: None, **{role: hosted[role] for role in Role}}
    wrong = []
    for role, cookie in who.items():
        for name, handler in names.items():
            allowed, want = _allowed(name, _state(cookie)), least_role(handler) in MAY[role]
            if allowed != want:
                wrong.append((role, handler, "allowed" if allowed else "refused"))
    assert not wrong, wrong
    # Refusals of a signed-in member are in the audit trail.
    with session_scope() as session:
        refused = audit.list_entries(
            session=session, actor_email="viewer@example.com", action="access.refused", limit=500
        )
    assert any(e.target == "WebhookFormState.rotate_secret" for e in refused.items)


def test_a_foreign_origin_or_a_dead_session_is_refused(hosted):
    rotate = next(n for n, h in middleware.all_handlers().items() if h.endswith("WebhookFormState.rotate_secret"))
    load = next(n for n, h in middleware.all_handlers().items() if h.endswith("WebhooksState.load"))
    admin = hosted[Role.ADMIN]
    assert _allowed(rotate, _state(admin))
    assert not _allowed(load, _state(admin, origin="https://evil.example"))
    assert not _allowed(load, _state("not-a-session-token"))
    with session_scope() as session:
        sessions.end(session=session, token=admin)
    assert not _allowed(load, _state(admin))  # signed out: the open page stops working at once


def test_local_mode_is_one_implicit_admin_without_sign_in(kwik):
    names = middleware.all_handlers()
    allowed = {h for name, h in names.items() if _allowed(name, _state(None, origin=""))}
    assert allowed == {h for h in names.values() if not h.endswith(".setvar")}


def _cli_commands() -> set[str]:
    """Every kwik-console command, found in the parser itself rather than from a hand list."""
    import argparse

    from kwik_console import cli

    def subcommands(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices
        return {}

    found = set()
    for name, sub in subcommands(cli.build_parser()).items():
        nested = subcommands(sub)
        found |= {f"{name} {n}" for n in nested} if nested else {name}
    return found


def test_every_cli_command_has_a_rule():
    commands = _cli_commands()
    assert "webhooks create" in commands and "worker" in commands
    assert commands == set(access.CLI_RULES), commands ^ set(access.CLI_RULES)
    assert all(access.decide_command(c) == access.Decision.ALLOW for c in commands)
    assert access.decide_command("webhooks frobnicate") == access.Decision.REFUSE
