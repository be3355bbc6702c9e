"""The event log, live: a new attempt shows without a reload, because the console process's one watcher told
the tab its webhook changed; a tab whose webhook is quiet, or that left the page, sends no refresh at all."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_console import deliver, make  # noqa: F401  (make: a fixture)

pytestmark = pytest.mark.e2e

REFRESH = "event_log_state.refresh"


def test_new_attempts_show_at_once_and_a_quiet_or_closed_log_asks_nothing(page: Page, console, receiver, make):
    hook_id, name = make("Live", receiver.url("/ok"))
    sent: list[str] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda data: sent.append(data if isinstance(data, str) else data.decode())),
    )
    refreshes = lambda: sum(REFRESH in frame for frame in sent)  # noqa: E731

    page.goto(f"{console.url}/webhooks/{hook_id}/events")
    expect(page.get_by_text("No deliveries yet")).to_be_visible()
    rows = page.get_by_role("row").filter(has_text="payment.created")

    deliver(hook_id, 2)  # another process records them: the watcher hears it through the database
    expect(rows.filter(has_text="200")).to_have_count(2)
    page.wait_for_timeout(1000)  # the last refresh's answer

    quiet = refreshes()
    page.wait_for_timeout(6000)  # the timer it replaced sent a refresh every 2.5 s
    assert refreshes() == quiet, "a tab whose webhook is quiet refreshed"

    page.get_by_role("link", name="Webhooks").first.click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    left = refreshes()
    deliver(hook_id, 1)
    page.wait_for_timeout(3000)
    assert refreshes() == left, "a tab that left the event log still refreshed it"

    page.goto(f"{console.url}/webhooks/{hook_id}/events")  # and back: live again
    expect(rows).to_have_count(3)
    deliver(hook_id, 1)
    expect(rows).to_have_count(4)
