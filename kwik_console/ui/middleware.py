"""The access guard: a Reflex middleware in front of every state event (background and chained ones too).

It names the handler, finds who is signed in from the websocket's cookie (hosted
mode: the session record in the database, on every event), and asks
`access.decide()`. A refused event never reaches its handler.

A tab's state belongs to the session that loaded it. Before any event is handled, hydrate and
the sign-in page's included, a tab with no live session, or with another session than the one
that loaded its state, has every state of ours that needs a signed-in member set back to its
defaults: a tab reloaded after its session ended (idle expiry, "sign out everywhere", a removal,
a password reset) gets back nothing it held before, not even from the public `hydrate`.
"""

from __future__ import annotations

import functools
import logging
import time
import urllib.parse

import reflex as rx
from reflex.middleware import Middleware
from reflex.state import State, StateUpdate
from reflex_base.event import Event

from kwik_console.core import client_address
from kwik_console.core.settings import get_settings
from kwik_console.store.db import session_scope
from kwik_console.team import access, audit, sessions
from kwik_console.team.digests import digest
from kwik_console.ui.state.session import SessionState

log = logging.getLogger(__name__)
SIGN_IN_ROUTE = "/sign-in"


def _walk(state_cls):
    yield state_cls
    for sub in state_cls.get_substates():
        yield from _walk(sub)


def all_handlers() -> dict[str, str]:
    """Every event handler of every state in the app: Reflex's event name -> module.Class.handler."""
    return {
        f"{cls.get_full_name()}.{name}": f"{cls.__module__}.{cls.__qualname__}.{name}"
        for cls in _walk(State)
        for name in cls.event_handlers
    }


@functools.cache
def _handler_names() -> dict[str, str]:
    return all_handlers()


def handler_for(event_name: str) -> str:
    # Unknown names map to themselves, which have no rule: refused.
    return _handler_names().get(event_name, event_name)


@functools.cache
def private_states() -> tuple[type[State], ...]:
    """Every state of ours with an event that needs a signed-in member: what a tab must not keep once its
    session ends. The sign-in pages' states are public, and Reflex's own hold no data of ours."""
    found = []
    for cls in _walk(State):
        if not cls.__module__.startswith("kwik_console."):
            continue
        names = [n for n in cls.event_handlers if n != "setvar"]
        rules = {access.HANDLER_RULES.get(f"{cls.__module__}.{cls.__qualname__}.{n}") for n in names}
        if not names or rules != {access.Action.PUBLIC}:
            found.append(cls)
    return tuple(found)


def tab_owner(headers: dict, signed_in: sessions.SignedIn | None) -> str:
    """Who a tab's state belongs to: a digest of its session's token ("" for nobody). Not the database's
    digest of it, so what Redis keeps of a tab cannot be matched to a session row."""
    if signed_in is None:
        return ""
    return digest("tab owner:" + (sessions.token_from_cookie_header(headers.get("cookie")) or ""))


def _at_defaults(state) -> bool:
    cls = type(state)
    return all(
        state.get_value(name) == field.default_value() for name, field in cls.__fields__.items() if field._owner is cls
    )


async def keep_to_its_session(state, owner: str) -> bool:
    """Reset every private state of the tab unless `owner` (see `tab_owner`) loaded it; True if it did.

    With nobody signed in, a state that is not at its defaults is reset too: a background task started
    while the session lived (Test Webhook, Resend) may have written to it after the last reset.
    """
    mark = await state.get_state(SessionState)
    if owner and mark._tab_owner == owner:
        return False
    same = mark._tab_owner == owner
    reset = False
    for cls in private_states():
        substate = await state.get_state(cls)
        if not same or not _at_defaults(substate):
            substate.reset()
            reset = True
    mark._tab_owner = owner
    return reset


def _public_origin() -> str:
    return get_settings().public_url


def identify(headers: dict) -> tuple[access.SignedIn | None, bool]:
    """Who sends events over a socket with these handshake headers, and whether its Origin is ours."""
    settings = get_settings()
    if settings.local_mode:
        return access.LOCAL_ADMIN, True
    origin_ok = headers.get("origin", "") == _public_origin()
    token = sessions.token_from_cookie_header(headers.get("cookie"))
    if not token or not origin_ok:
        return None, origin_ok
    return sessions.check_now(token), True


def _sign_in_redirect(state) -> list[Event]:
    path = state.router_data.get("asPath") or state.router_data.get("pathname") or "/"
    if not isinstance(path, str) or not path.startswith("/") or path.startswith(SIGN_IN_ROUTE):
        path = "/"
    return Event.from_event_type(rx.redirect(f"{SIGN_IN_ROUTE}?next={urllib.parse.quote(path, safe='/')}"))


class AccessMiddleware(Middleware):
    """One guard, every event: refused events get a toast or a trip to the sign-in page instead."""

    async def preprocess(self, app, state, event: Event) -> StateUpdate | None:
        started = time.perf_counter()
        handler = handler_for(event.name)
        action = access.HANDLER_RULES.get(handler)
        headers = state.router_data.get("headers", {}) or {}
        signed_in, origin_ok = identify(headers)
        if not get_settings().local_mode:
            # Before anything is sent: a public hydrate sends the whole state tree.
            await keep_to_its_session(state, tab_owner(headers, signed_in))
        if action == access.Action.PUBLIC:
            access.current.set(None)
            return None
        access.current.set(signed_in)
        decision = access.decide(handler, signed_in)
        if decision == access.Decision.ALLOW:
            return None
        access.current.set(None)
        if not origin_ok:
            log.warning("refused %s: websocket Origin %r is not %s", handler, headers.get("origin"), _public_origin())
            return StateUpdate()
        if decision == access.Decision.SIGN_IN:
            # The open page drops what it shows (reset above) as it goes to the sign-in page.
            delta = await state._get_resolved_delta()
            state._clean()
            return StateUpdate(delta=delta, events=_sign_in_redirect(state))
        log.warning(
            "refused %s for %s (%s) after %.1f ms",
            handler,
            signed_in.email,
            signed_in.role,
            (time.perf_counter() - started) * 1000,
        )
        with session_scope() as session:
            audit.record(
                session=session,
                actor=audit.Actor(signed_in.member_id, signed_in.email),
                action="access.refused",
                target=handler.rsplit(".", 2)[-2] + "." + handler.rsplit(".", 1)[-1],
                detail={"role": signed_in.role},
                client_address=client_address.of_socket(headers),
            )
        return StateUpdate(
            events=Event.from_event_type(
                rx.toast.error(f"Your role ({signed_in.role}) does not allow this. Ask an admin of this console.")
            )
        )
