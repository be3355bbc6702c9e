"""What several UI states share: which webhook a page is about, the viewer's time zone, reading a secret,
values shown once, and following a webhook's deliveries as they happen."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import zoneinfo
from collections.abc import AsyncIterator

from reflex.utils import prerequisites

from kwik_console.events import watch
from kwik_console.operations import notices
from kwik_console.store.db import session_scope
from kwik_console.team import access
from kwik_console.webhooks import service as webhooks


def webhook_id_from(path: str) -> int:
    """/webhooks/12 -> 12 (0 when it is not a webhook page)."""
    parts = path.rstrip("/").split("/")
    try:
        return int(parts[2]) if len(parts) == 3 and parts[1] == "webhooks" else 0
    except ValueError:
        return 0


def viewer_zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name) if name else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def parse_local(value: str, zone: dt.tzinfo) -> dt.datetime | None:
    """ "2026-05-01T09:30" (a datetime-local input), in the viewer's zone -> an aware datetime; None if not one."""
    try:
        naive = dt.datetime.fromisoformat((value or "").strip())
    except ValueError:
        return None
    return naive if naive.tzinfo else naive.replace(tzinfo=zone)


def sees_secrets() -> bool:
    """Whether the member this handler runs for may see signing secrets, and so custom header values."""
    return access.may(access.member().role, access.Action.REVEAL_SECRET)


def forget(state, *names: str) -> None:
    """Set the server's copy of shown-once vars back to their defaults, once a delta has taken them to the
    browser (the handler sets them, yields, then calls this).

    A revealed signing secret, a new access token and an invitation link must never rest on the server's
    side of a tab: with KWIK_REDIS_URL, Reflex pickles each tab's whole state into Redis, backend-only `_`
    vars included, for as long as the tab lives. So the value only passes through: it leaves in the
    yield's delta, and the copy is then changed without being marked dirty, so no further delta clears the
    browser's. What is saved, and sent again on a reload or a reconnect, is the default (hidden, closed).
    """
    fields = type(state).get_fields()
    for name in names:
        vars(state)[name] = fields[name].default_value()  # vars(): a plain assignment would be sent
    state._was_touched = True  # saved even if nothing else in the state changed


def read_secret(webhook_id: int, action: str, *, operational: bool = False) -> str:
    """A webhook's secret, read for a member allowed to see it, and recorded in the audit trail.

    The operational webhook's only through its admin card (`operational=True`, a handler that needs OPERATIONAL).
    """
    with session_scope() as session:
        if operational:
            return notices.reveal_operational_secret(
                session=session, webhook_id=webhook_id, actor=access.actor(), copied=action == "secret.copied"
            )
        return webhooks.reveal_secret(
            session=session, webhook_id=webhook_id, actor=access.actor(), copied=action == "secret.copied"
        ).secret


# A following tab checks this often, while its webhook is quiet, that it is still open and on the page.
FOLLOW_CHECK_SECONDS = 30.0
# While its webhook keeps changing, a tab refreshes at most this often.
REFRESH_GAP_SECONDS = 0.2


async def follow_deliveries(state, webhook_id: int, refresh) -> AsyncIterator:
    """For a background handler: yield `refresh` each time the webhook's deliveries change, until the tab
    closes or leaves the page (its `_following` mark changes: another page, a reset at a session's end).

    Only the process's watcher reads the database meanwhile. Each refresh goes back through the browser as
    an event of its own, so the guard checks it as it checks every event.
    """
    async with state:
        mine = state._following = secrets.token_hex(8)
        token = state.router.session.client_token
    seen = watch.version(webhook_id)
    while True:
        now = await watch.changed_after(webhook_id, seen, timeout=FOLLOW_CHECK_SECONDS)
        async with state:
            if state._following != mine:
                return
        if not await _tab_open(token):
            return
        if now is not None:
            seen = now
            yield refresh
            await asyncio.sleep(REFRESH_GAP_SECONDS)


async def _tab_open(token: str) -> bool:
    """Whether the tab has a socket on any of the console's processes (Reflex keeps that in Redis when shared)."""
    # Reflex 0.10's token manager: the app's own record of which tabs are connected.
    return await prerequisites.get_app().app.event_namespace._token_manager.is_token_connected(token)
