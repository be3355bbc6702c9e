"""The failing badge comes soon: with auto-disable after 10 minutes, a webhook whose attempts have all failed
for 6 minutes (more than half of it) says "Failing since" in the list, the overview and on its page, while one
failing for 2 minutes still shows plain Live. Every failure is a real attempt to a receiver answering 500."""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.sync_api import Page, expect

from kwik_console.core.clock import utcnow
from kwik_console.store import db
from kwik_console.store.tables import Webhook
from tests.e2e.server import ConsoleServer
from tests.e2e.test_console import deliver, make, row, search_for  # noqa: F401  (make: a fixture)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def console(console_db, tmp_path_factory):
    server = ConsoleServer(
        console_db, tmp_path_factory.mktemp("logs") / "console.log", KWIK_AUTO_DISABLE_AFTER="10m"
    ).start()
    yield server
    server.stop()


def failing_for(hook_id: int, minutes: float) -> None:
    """Test set-up: as if the first of the real failures had come `minutes` ago."""
    with db.session_scope() as session:
        hook = session.get(Webhook, hook_id)
        assert hook.failing_since is not None  # set by the dispatcher, from the real failed attempt
        hook.failing_since = utcnow() - dt.timedelta(minutes=minutes)
        session.add(hook)


def test_the_failing_badge_shows_at_half_the_auto_disable_time(page: Page, console, receiver, make):
    failing, failing_name = make("Failing soon", receiver.url("/fail"))
    blip, blip_name = make("Just a blip", receiver.url("/fail"))
    deliver(failing, 2)
    deliver(blip, 2)
    failing_for(failing, 6)
    failing_for(blip, 2)

    page.goto(console.url)
    overview = page.get_by_role("table", name="Webhooks, failing first")
    expect(overview.get_by_role("row").filter(has_text=failing_name)).to_contain_text("Failing since")
    expect(overview.get_by_role("row").filter(has_text=blip_name)).not_to_contain_text("Failing since")
    search_for(page, failing_name)
    expect(row(page, failing_name)).to_contain_text("Failing since")
    expect(row(page, failing_name)).to_contain_text("Live")
    search_for(page, blip_name)
    expect(row(page, blip_name)).to_contain_text("Live")
    expect(row(page, blip_name)).not_to_contain_text("Failing since")

    page.goto(f"{console.url}/webhooks/{failing}")
    expect(page.get_by_text("Failing since").first).to_be_visible()
    page.goto(f"{console.url}/webhooks/{blip}")
    expect(page.get_by_role("heading", name=blip_name)).to_be_visible()
    expect(page.get_by_text("Failing since")).to_have_count(0)
