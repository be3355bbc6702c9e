"""A tab's state belongs to the session that loaded it, and shown-once values never rest on the server.

Each event goes through the console's own middleware (ui/middleware.py), with a real session cookie checked
against a real database, on a state tree holding what a signed-in tab would: a revealed signing secret, a new
access token, an invitation link, the webhook list. The browser test (tests/e2e/test_session_end.py) runs the
same through Chromium, the websocket and Redis.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest
import sqlalchemy as sa
from reflex.state import State
from reflex_base.event import Event

from kwik_console import kwik_console as console_app  # registers every state of the app
from kwik_console.core.clock import utcnow
from kwik_console.store.db import session_scope
from kwik_console.store.team_tables import MemberSession, Role
from kwik_console.team import access, audit, members, sessions
from kwik_console.ui import middleware
from kwik_console.ui.state.members import MembersState
from kwik_console.ui.state.session import SessionState
from kwik_console.ui.state.sign_in import SignInState
from kwik_console.ui.state.tokens import TokensState
from kwik_console.ui.state.webhook_page import SecretState
from kwik_console.ui.state.webhooks import WebhooksState
from kwik_console.ui.views import WebhookRow
from tests.conftest import TEST_SECRET_KEY, configure

PUBLIC_URL = "http://127.0.0.1:3999"
PASSWORD = "a long enough passphrase"


def _event(handler: str) -> str:
    """Reflex's event name of a handler named module.Class.handler."""
    return next(name for name, h in middleware.all_handlers().items() if h == handler)


HYDRATE = "reflex.state.State.hydrate_and_load"
WEBHOOKS_LOAD = "kwik_console.ui.state.webhooks.WebhooksState.load"
SIGN_IN_PAGE = "kwik_console.ui.state.sign_in.SignInState.open_page"


def _tab(cookie: str | None) -> State:
    state = State(_reflex_internal_init=True)
    _connect(state, cookie)
    return state


def _connect(state: State, cookie: str | None) -> None:
    """The tab's socket (re)connects with this cookie (or none)."""
    headers = {"origin": PUBLIC_URL}
    if cookie:
        headers["cookie"] = f"{sessions.COOKIE_NAME}={cookie}"
    state.router_data = {"headers": headers, "asPath": "/webhooks", "pathname": "/webhooks"}


def _send(state: State, handler: str):
    return asyncio.run(
        middleware.AccessMiddleware().preprocess(console_app.app, state, Event(name=_event(handler), payload={}))
    )


def _fill(state: State) -> None:
    """What a signed-in admin's tab holds after revealing a secret, making a token and an invitation link."""
    secret = state.get_substate(SecretState.get_full_name().split("."))
    secret.secret, secret.shown = SECRET, True
    tokens = state.get_substate(TokensState.get_full_name().split("."))
    tokens.shown_token, tokens.shown_open = TOKEN, True
    people = state.get_substate(MembersState.get_full_name().split("."))
    people.link_url = PUBLIC_URL + LINK
    hooks = state.get_substate(WebhooksState.get_full_name().split("."))
    hooks.rows = [WebhookRow(id=1, name="Ledger", url=f"https://{URL}/kwik")]
    state._clean()


SECRET, TOKEN, LINK, URL = (
    "whsec_" + "s" * 32,
    "kwik_" + "t" * 40,
    "/accept?token=" + "l" * 40,
    "ledger.merchant.invalid",
)


def _holds_anything(state: State) -> list[str]:
    text = repr(state.dict())
    return [needle for needle in (SECRET, TOKEN, LINK, URL) if needle in text]


@pytest.fixture
def hosted(kwik, monkeypatch):
    configure(monkeypatch, KWIK_MODE="hosted", KWIK_PUBLIC_URL=PUBLIC_URL, KWIK_SECRET_KEY=TEST_SECRET_KEY)
    middleware._handler_names.cache_clear()
    with session_scope() as session:
        made = {}
        for email in ("admin@example.com", "other@example.com"):
            link = members.invite(session=session, email=email, role=Role.ADMIN, actor=audit.CLI)
            members.accept_link(session=session, token=link.token, password=PASSWORD, confirm=PASSWORD)
            made[email] = link.member
        return {
            "first": sessions.open_session(session=session, member=made["admin@example.com"]),
            "second": sessions.open_session(session=session, member=made["admin@example.com"]),
            "other": sessions.open_session(session=session, member=made["other@example.com"]),
            "member_id": made["admin@example.com"].id,
        }


def _loaded_by(cookie: str) -> State:
    """A tab whose state its session loaded (an event under it), then filled."""
    state = _tab(cookie)
    assert _send(state, WEBHOOKS_LOAD) is None
    _fill(state)
    return state


def test_the_session_that_loaded_a_tab_keeps_it(hosted):
    state = _loaded_by(hosted["first"])
    assert _send(state, HYDRATE) is None  # a reconnect: the same session
    assert _send(state, WEBHOOKS_LOAD) is None
    assert _holds_anything(state) == [SECRET, TOKEN, LINK, URL]


@pytest.mark.parametrize("how", ["sign out everywhere", "idle expiry", "removal"])
def test_a_hydrate_after_the_session_ended_sends_nothing_it_held(hosted, how):
    state = _loaded_by(hosted["first"])
    with session_scope() as session:
        if how == "sign out everywhere":
            sessions.end_everywhere(session=session, member_id=hosted["member_id"])
        elif how == "idle expiry":
            session.exec(sa.update(MemberSession).values(last_seen_at=utcnow() - dt.timedelta(days=1)))
        else:
            members.remove(session=session, member_id=hosted["member_id"], actor=audit.CLI)
    _connect(state, hosted["first"])  # the cookie of a session that no longer works
    assert _send(state, HYDRATE) is None  # public: it runs, but on a tree already reset
    assert _holds_anything(state) == []
    assert state.get_substate(SessionState.get_full_name().split("."))._tab_owner == ""


def test_a_reload_without_a_cookie_sends_nothing_it_held(hosted):
    state = _loaded_by(hosted["first"])
    _connect(state, None)
    assert _send(state, SIGN_IN_PAGE) is None  # the sign-in page's own event, before any hydrate
    assert _holds_anything(state) == []


def test_another_session_in_the_same_tab_starts_from_nothing(hosted):
    for other in ("second", "other"):  # the same member signed in again, or another member
        state = _loaded_by(hosted["first"])
        _connect(state, hosted[other])
        assert _send(state, HYDRATE) is None
        assert _holds_anything(state) == []
        # ... and the tab is now that session's: what it loads next stays.
        _fill(state)
        assert _send(state, WEBHOOKS_LOAD) is None
        assert _holds_anything(state)


def test_a_refused_event_of_an_ended_session_clears_the_open_page_and_goes_to_sign_in(hosted):
    state = _loaded_by(hosted["first"])
    with session_scope() as session:
        sessions.end(session=session, token=hosted["first"])
    update = _send(state, WEBHOOKS_LOAD)
    assert update is not None
    sent = repr(update.delta)
    assert SECRET not in sent and URL not in sent
    assert SecretState.get_full_name() in update.delta  # the page's revealed secret is cleared in the browser too
    assert [e.name for e in update.events] == ["_redirect"]
    assert _holds_anything(state) == []


def test_nobody_signed_in_clears_what_a_late_background_task_wrote(hosted):
    state = _tab(None)
    assert _send(state, SIGN_IN_PAGE) is None
    hooks = state.get_substate(WebhooksState.get_full_name().split("."))
    hooks.rows = [WebhookRow(id=1, name="Ledger", url=f"https://{URL}/kwik")]  # written late
    assert _send(state, SIGN_IN_PAGE) is None
    assert _holds_anything(state) == []


def test_the_sign_in_pages_own_state_is_kept(hosted):
    state = _tab(None)
    page = state.get_substate(SignInState.get_full_name().split("."))
    page.next_path = "/webhooks/3"
    assert _send(state, SIGN_IN_PAGE) is None
    assert page.next_path == "/webhooks/3"
    assert SignInState not in middleware.private_states()
    assert {SecretState, TokensState, MembersState, WebhooksState, SessionState} <= set(middleware.private_states())


def test_local_mode_resets_nothing(kwik):
    state = _tab(None)
    _fill(state)
    assert _send(state, HYDRATE) is None
    assert _holds_anything(state)


# --- shown once ------------------------------------------------------------------------------------------------


def _run_handler(state, handler, *args):
    """A generator handler as Reflex runs it: the delta after each yield, then the state as it is saved."""
    deltas = []
    for _ in handler.fn(state, *args):
        deltas.append(repr(asyncio.run(state._get_root_state()._get_resolved_delta())))
        state._get_root_state()._clean()
    return deltas


def test_a_new_token_leaves_in_one_delta_and_never_rests_on_the_server(hosted):
    state = _tab(hosted["first"])
    tokens = state.get_substate(TokensState.get_full_name().split("."))
    access.current.set(access.LOCAL_ADMIN)
    deltas = _run_handler(tokens, TokensState.create, {"name": "CI", "scope_read": "on"})
    made = re.search(r"kwik_(?!console)[A-Za-z0-9_-]{20,}", deltas[0])
    assert made  # the browser got it
    assert tokens.shown_token == "" and tokens.shown_open is False  # the server's copy did not keep it
    assert tokens._was_touched and made[0].encode() not in tokens._serialize()  # nor does what Redis would get
    assert not tokens.dirty_vars  # and no delta takes it from the browser


def test_an_invitation_link_leaves_in_one_delta_and_never_rests_on_the_server(hosted):
    state = _tab(hosted["first"])
    people = state.get_substate(MembersState.get_full_name().split("."))
    access.current.set(access.LOCAL_ADMIN)
    deltas = _run_handler(people, MembersState.invite, {"email": "new@example.com", "role": "viewer"})
    link = re.search(r"/accept\?token=[A-Za-z0-9_-]+", deltas[0])
    assert link
    assert people.link_url == "" and people._was_touched and link[0].encode() not in people._serialize()
    assert not people.dirty_vars
