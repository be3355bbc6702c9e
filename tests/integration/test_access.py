"""The authorisation matrix: every event handler of every state, found by introspection, through the real guard.

Each handler is sent, as an event, through the same middleware the console runs
(ui/middleware.py -> access.decide), as anonymous, viewer, developer and admin, with a
real session cookie checked against a real database. A handler added without a
rule in access.HANDLER_RULES is refused for everyone, and this test fails.
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

# What each role may do, by state, as the product says it: written out here, not copied from access.py.
ANONYMOUS_STATES = {UI + "sign_in.SignInState", UI + "sign_in.AcceptState"}
VIEWER_STATES = ANONYMOUS_STATES | {
    UI + "webhook_page.WebhookPageState",
    UI + "developers.SignatureCheckState",
    UI + "session.SessionState",
    UI + "session.PasswordState",
    UI + "webhooks.WebhooksState",
    UI + "event_log.EventLogState",
    UI + "operations.RecoveryProgressState",
}
DEVELOPER_STATES = VIEWER_STATES | {
    UI + "webhook_page.SecretState",
    UI + "webhooks.WebhookFormState",
    UI + "webhooks.DeleteState",
    UI + "webhook_tester.TestWebhookState",
    UI + "event_log.ResendState",
    UI + "operations.HealthState",
    UI + "operations.RecoverState",
}
ADMIN_STATES = DEVELOPER_STATES | {
    UI + "members.MembersState",
    UI + "audit.AuditState",
    UI + "tokens.TokensState",
    UI + "operations.OperationalState",
}
REFLEX_INTERNAL = "reflex."  # Reflex's own hydrate / page-load / client-storage / error-report events


def _state_of(handler: str) -> str:
    return handler.rsplit(".", 1)[0]


def expected(role: str | None, handler: str) -> bool:
    if handler.endswith(".setvar"):
        return False  # Reflex's generic setter would let a browser set any var: nobody
    if handler.startswith(REFLEX_INTERNAL):
        return True
    states = {
        None: ANONYMOUS_STATES,
        Role.VIEWER: VIEWER_STATES,
        Role.DEVELOPER: DEVELOPER_STATES,
        Role.ADMIN: ADMIN_STATES,
    }[role]
    return _state_of(handler) in states


def test_every_state_of_the_app_is_in_the_matrix():
    ours = {_state_of(h) for h in middleware.all_handlers().values() if not h.startswith(REFLEX_INTERNAL)}
    assert ours <= ADMIN_STATES, f"new states: say in this test which role may use them: {ours - ADMIN_STATES}"
    assert len(ours) >= 10


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


def test_the_matrix_through_the_guard(hosted):
    names = middleware.all_handlers()
    assert len(names) > 60
    who = {None: None, **{role: hosted[role] for role in Role}}
    for role, cookie in who.items():
        allowed = {h for name, h in names.items() if _allowed(name, _state(cookie))}
        want = {h for h in names.values() if expected(role, h)}
        assert allowed == want, (role, sorted(allowed ^ want))
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
