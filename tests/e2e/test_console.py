"""Every journey on the help page, in a real browser against the console in production mode.

One console and database for the module, but each test makes the webhooks it needs, under names of its own,
so any test runs alone, in any order, and one failure does not cascade.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import re
import subprocess
import uuid

import pytest
from playwright.sync_api import Page, expect

from kwik_console.store import db
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import configure
from tests.e2e.server import ROOT

pytestmark = pytest.mark.e2e


def webhook_list(page: Page):
    """The list of webhooks (not the overview above it, which names webhooks too)."""
    return page.get_by_role("table", name="Webhooks", exact=True)


def row(page: Page, name: str):
    return webhook_list(page).get_by_role("row").filter(has_text=name)


def action(page: Page, name: str, item: str) -> None:
    page.get_by_role("button", name=f"Actions for {name}").click()
    page.get_by_role("menuitem", name=item).click()


@pytest.fixture
def make(monkeypatch, console_db):
    """Make a webhook straight in the console's database; returns (id, unique name)."""
    configure(monkeypatch, KWIK_DATABASE_URL=console_db)

    def _make(label: str, url: str, events=("payment.created", "invoice.created"), status="live"):
        name = f"{label} {uuid.uuid4().hex[:6]}"
        with db.session_scope() as session:
            hook = webhooks.create_webhook(
                session=session,
                data=WebhookInput(name=name, url=url, events=list(events), status=status),
                actor=audit.CLI,
            )
        return hook.id, name

    yield _make
    db._engine_for.cache_clear()


def search_for(page: Page, name: str) -> None:
    """Show `name` on the first page of the list, whatever else other tests made."""
    page.get_by_label("Search webhooks").fill(name)
    expect(row(page, name)).to_be_visible()


def test_a_run_leaves_reflex_lock_as_committed(console):
    changed = subprocess.run(
        ["git", "status", "--porcelain", "reflex.lock"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert changed == "", changed


def test_empty_state_then_create_with_the_services_errors_only(page: Page, console, receiver, make):
    with db.session_scope() as session:  # the empty state shows only when there is no webhook at all
        for hook in webhooks.list_webhooks(session=session, per_page=100).items:
            webhooks.delete_webhook(session=session, webhook_id=hook.id, actor=audit.CLI)
    page.goto(console.url)
    expect(page.get_by_role("heading", name="No webhooks yet")).to_be_visible()
    page.get_by_role("button", name="Create", exact=True).first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Create webhook")).to_be_visible()

    dialog.get_by_label("Name").fill("Orders service")
    url = dialog.get_by_label("Webhook URL")
    url.fill("not a url")  # no browser tooltip: the console's own message, outlined, announced
    dialog.get_by_role("button", name="Create", exact=True).click()
    expect(dialog.get_by_role("alert").filter(has_text="Webhook URL")).to_be_visible()
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(url).to_be_focused()  # the first field in error, not the last message at the bottom
    assert page.evaluate("document.getElementById('webhook-url').validity.valid")  # the browser found nothing
    expect(dialog.get_by_text("Select at least one event.")).to_be_visible()
    url.fill("http://orders.example.com/kwik")  # not https
    expect(url).to_have_attribute("aria-invalid", "false")  # cleared as the merchant types
    dialog.get_by_role("button", name="Create", exact=True).click()
    expect(dialog.get_by_text("Webhook URL must use https://")).to_be_visible()

    url.fill(receiver.url("/ok"))
    dialog.get_by_role("checkbox", name="payment.created").click()
    dialog.get_by_text("payment.updated", exact=True).click()
    expect(dialog.get_by_text("2 of 19 selected")).to_be_visible()
    expect(dialog.get_by_label("Chosen events")).to_contain_text("payment.updated")
    dialog.get_by_role("button", name="Create", exact=True).click()

    expect(page.get_by_text("Webhook “Orders service” created.")).to_be_visible()
    # The new webhook's page, with the next step at hand.
    expect(page).to_have_url(re.compile(r"/webhooks/\d+\?created=1$"))
    expect(page.get_by_role("heading", name="Orders service")).to_be_visible()
    page.get_by_role("button", name="Send a test").click()
    expect(page.get_by_role("dialog").get_by_role("button", name="Send", exact=True)).to_be_visible()
    page.keyboard.press("Escape")
    page.goto(console.url)
    expect(row(page, "Orders service")).to_contain_text(receiver.url("/ok"))
    expect(row(page, "Orders service")).to_contain_text("Live")
    for header in ("Created", "Name", "Webhook URL", "Status"):
        expect(page.get_by_role("columnheader", name=header)).to_be_visible()


def test_select_all_and_select_none(page: Page, console, make):
    page.goto(console.url)
    page.get_by_role("button", name="Create", exact=True).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Select all").click()
    expect(dialog.get_by_text("19 of 19 selected")).to_be_visible()
    expect(dialog.get_by_role("checkbox", name="transaction.updated")).to_be_checked()
    dialog.get_by_role("button", name="Select none").click()
    expect(dialog.get_by_text("0 of 19 selected")).to_be_visible()
    expect(dialog.get_by_role("checkbox", name="payment.created")).not_to_be_checked()


def test_search_matches_name_or_url(page: Page, console, receiver, make):
    tag = uuid.uuid4().hex[:8]
    make(f"Ledger {tag}", receiver.url(f"/fail?{tag}"))
    make(f"CRM {tag}", receiver.url(f"/crm-{tag}"))
    page.goto(console.url)
    search = page.get_by_label("Search webhooks")
    search.fill(tag.upper())
    expect(webhook_list(page).get_by_role("row")).to_have_count(3)  # header + 2, whatever the case typed
    search.fill(f"/crm-{tag}")
    expect(webhook_list(page).get_by_role("row")).to_have_count(2)
    expect(row(page, f"CRM {tag}")).to_be_visible()
    search.fill("nothing like this")
    expect(page.get_by_text("No webhooks match “nothing like this”.")).to_be_visible()
    page.get_by_role("button", name="Clear search").click()
    expect(search).to_have_value("")


def test_edit_shows_the_selected_events(page: Page, console, make):
    _, name = make("CRM hooks", "https://127.0.0.1:9/crm", events=("invoice.created",))
    page.goto(console.url)
    search_for(page, name)
    action(page, name, "Edit")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Name")).to_have_value(name)
    expect(dialog.get_by_label("Chosen events")).to_be_in_viewport()  # not hidden in a box that scrolls
    dialog.get_by_label("Name").fill(name + " sync")
    dialog.get_by_text("customer.created", exact=True).click()
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_text(f"Webhook “{name} sync” saved.")).to_be_visible()
    search_for(page, name + " sync")
    action(page, name + " sync", "Edit")
    expect(page.get_by_role("dialog").get_by_text("2 of 19 selected")).to_be_visible()
    expect(page.get_by_role("dialog").get_by_label("Chosen events")).to_have_text(
        re.compile("customer.created.*invoice.created")
    )


def test_signing_secret_is_hidden_revealed_copied_and_rotated(page: Page, console, make):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    _, name = make("Secrets", "https://secrets.merchant.invalid/kwik", status="disabled")
    page.goto(console.url)
    search_for(page, name)
    action(page, name, "Edit")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(re.compile(r"whsec_•+"))).to_be_visible()
    dialog.get_by_role("button", name="Reveal").click()
    secret = dialog.get_by_text(re.compile(r"^whsec_[A-Za-z0-9+/=]{44}$"))
    expect(secret).to_be_visible()
    before = secret.inner_text()
    dialog.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Signing secret copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == before
    expect(dialog.get_by_text("from standardwebhooks.webhooks import Webhook")).to_be_visible()
    dialog.get_by_role("button", name="Rotate").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_text("New signing secret created.", exact=False)).to_be_visible()
    after = page.get_by_role("dialog").get_by_text(re.compile(r"^whsec_")).inner_text()
    assert after != before and after.startswith("whsec_")
    # The trail says when the replaced secret stops signing: a real time, a day on.
    with db.session_scope() as session:
        (rotated,) = [
            e
            for e in audit.list_entries(session=session, action="secret.rotated").items
            if e.target.endswith(f"({name})")
        ]
    expires = dt.datetime.fromisoformat(rotated.detail["previous_secret_expires_at"])
    assert rotated.actor_email == "local admin"
    assert dt.timedelta(hours=23) < expires - rotated.at <= dt.timedelta(hours=24)


def test_disable_reads_the_right_way(page: Page, console, make):
    _, name = make("To disable", "https://127.0.0.1:9/off")
    page.goto(console.url)
    search_for(page, name)
    action(page, name, "Edit")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("radio", name="Live")).to_be_checked()
    dialog.get_by_role("radio", name="Disabled").click()
    expect(dialog.get_by_role("radio", name="Disabled")).to_be_checked()
    expect(dialog.get_by_role("radio", name="Live")).not_to_be_checked()
    expect(dialog.get_by_text("The webhook is inactive and no events will be sent.")).to_be_visible()
    dialog.get_by_role("button", name="Save").click()
    expect(row(page, name)).to_contain_text("Disabled")


def test_test_webhook_against_a_200_endpoint(page: Page, console, receiver, make):
    _, name = make("Orders", receiver.url("/ok"))
    page.goto(console.url)
    search_for(page, name)
    action(page, name, "Test Webhook")
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").click()
    page.get_by_role("option", name="invoice.created").click()
    expect(dialog.get_by_role("textbox", name="Payload (data)")).to_have_value(re.compile('"object": "invoice"'))
    dialog.get_by_role("button", name="Send", exact=True).click()
    outcome = dialog.get_by_role("status", name="Test outcome")
    expect(outcome).to_contain_text("Success")
    expect(outcome).to_contain_text("HTTP 200")
    expect(outcome).to_contain_text('{"received":true}')
    expect(outcome).to_contain_text(re.compile(r"\d+ ms"))
    assert receiver.hits("/ok")[-1].headers["webhook-id"].startswith("evt_")


def test_test_webhook_against_a_500_endpoint_shows_retrying(page: Page, console, receiver, make):
    _, name = make("Ledger", receiver.url("/fail"))
    page.goto(console.url)
    search_for(page, name)
    action(page, name, "Test Webhook")
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Send", exact=True).click()
    outcome = dialog.get_by_role("status", name="Test outcome")
    expect(outcome).to_contain_text("Retrying")
    expect(outcome).to_contain_text("HTTP 500")
    expect(outcome).to_contain_text("internal error")
    outcome.get_by_role("link", name="View in event log").click()

    expect(page).to_have_url(re.compile(r"/webhooks/\d+/events$"))
    delivery = page.get_by_role("row").filter(has_text="payment.created")
    expect(delivery).to_contain_text("Retrying")
    expect(delivery).to_contain_text("500")
    expect(delivery).to_contain_text("Test")
    # The log refreshes itself: the 1 s retries land without a reload.
    expect(delivery.get_by_role("cell").nth(6)).to_have_text("2", timeout=20_000)
    # The next retry, relative (600 s away), with the absolute time on hover.
    retry = delivery.get_by_role("cell").nth(5)
    expect(retry).to_have_text(re.compile(r"^in \d+ minutes$"))
    expect(retry.locator("span[title]")).to_have_attribute("title", re.compile(r"\d\d:\d\d:\d\d"))


def deliver(webhook_id: int, count: int, event_type="payment.created", data=None, test=False) -> list[int]:
    """Publish and deliver events to one webhook from this process (the receiver is on 127.0.0.1)."""
    import asyncio

    from kwik_console.delivery import scheduler
    from kwik_console.events.publishing import publish

    ids = []
    for n in range(count):
        payload = data or {"object": "payment", "id": f"pay_{uuid.uuid4().hex[:12]}", "amount": 100 + n}
        # To this one webhook only, whatever other tests subscribed.
        ids += publish(event_type, payload, test=test, webhook_id=webhook_id, wake=False).delivery_ids
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scheduler.deliver_now(ids)).result()
    return ids


def test_view_events_columns_filters_details_and_the_viewers_time_zone(browser, console, receiver, make):
    hook_id, name = make("Events", receiver.url("/ok"), events=("invoice.created", "payment.created"))
    deliver(hook_id, 1, "invoice.created", {"object": "invoice", "id": "inv_1"})
    deliver(hook_id, 1, "invoice.created", {"object": "invoice", "id": "inv_2"}, test=True)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id="Asia/Kolkata")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(console.url + f"/webhooks/{hook_id}/events")
        expect(page.get_by_role("heading", name=f"Events · {name}")).to_be_visible()
        for header in ("Time", "Event", "Status", "HTTP Code", "Test Event", "Retry Timestamp", "Retry Counter"):
            expect(page.get_by_role("columnheader", name=header, exact=True)).to_be_visible()
        delivery = page.get_by_role("row").filter(has_text="invoice.created").first
        expect(delivery).to_contain_text("Success")
        # The Time column in the viewer's zone (UTC+05:30), not the server's.
        with db.session_scope() as session:
            from kwik_console.events import deliveries as log

            newest = log.list_deliveries(session=session, webhook_id=hook_id, limit=1).items[0]
        import datetime as dt
        from zoneinfo import ZoneInfo

        shown = newest.created_at.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%H:%M")
        expect(delivery.get_by_role("cell").first).to_contain_text(shown)
        assert dt.UTC  # (the UTC time differs by 5:30, so a UTC rendering would not match)

        page.get_by_role("combobox", name="Test Event").click()
        page.get_by_role("option", name="Live events only").click()
        expect(page.get_by_role("row")).to_have_count(2)
        page.get_by_role("combobox", name="Test Event").click()
        page.get_by_role("option", name="Test events only").click()
        expect(page.get_by_role("row")).to_have_count(2)
        expect(page.get_by_role("row").nth(1)).to_contain_text("Test")
        page.get_by_role("combobox", name="Status").click()
        page.get_by_role("option", name="Failure").click()
        expect(page.get_by_text("No deliveries match these filters")).to_be_visible()
        page.get_by_role("combobox", name="Status").click()
        page.get_by_role("option", name="Success").click()
        row_ = page.get_by_role("row").filter(has_text="invoice.created")
        row_.click()
        drawer = page.get_by_role("dialog")
        expect(drawer.get_by_text('"type": "invoice.created"')).to_be_visible()
        expect(drawer.get_by_text("webhook-signature")).to_be_visible()
        expect(drawer.get_by_text("Attempt 1")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.get_by_role("combobox", name="Status")).to_have_text("Success")
    finally:
        context.close()


def test_the_date_range_reads_the_viewers_time_zone_and_clear_filters_resets_it(browser, console, receiver, make):
    from sqlmodel import update

    from kwik_console.store.tables import Delivery

    hook_id, _ = make("Range", receiver.url("/ok"))
    old, new = deliver(hook_id, 2)
    with db.session_scope() as session:  # the older one at noon UTC on 2 November
        session.exec(
            update(Delivery).where(Delivery.id == old).values(created_at=dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC))
        )
    context = browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id="Asia/Kolkata")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(console.url + f"/webhooks/{hook_id}/events")
        rows = page.get_by_role("row").filter(has_text="payment.created")
        expect(rows).to_have_count(2)
        # 17:00 to 18:00 in Kolkata (UTC+05:30) is 11:30 to 12:30 UTC: only the older delivery.
        page.get_by_label("From").fill("2026-11-02T17:00")
        page.get_by_label("To").fill("2026-11-02T18:00")
        expect(rows).to_have_count(1)
        expect(page.get_by_role("button", name=f"Delivery {old}: payment.created")).to_have_count(0)
        expect(page.get_by_role("row", name=f"Delivery {old}: payment.created")).to_be_visible()
        href = page.get_by_role("link", name="CSV").get_attribute("href")
        assert "since=2026-11-02T11%3A30%3A00%2B00%3A00" in href and "until=2026-11-02T12%3A30%3A00%2B00%3A00" in href
        # Ending before noon UTC (17:20 in Kolkata): nothing, told apart from an empty log.
        page.get_by_label("To").fill("2026-11-02T17:20")
        expect(page.get_by_text("No deliveries match these filters")).to_be_visible()
        expect(page.get_by_text("No deliveries yet")).to_have_count(0)
        # An end before the start is refused, said beside the inputs.
        page.get_by_label("To").fill("2026-11-01T10:00")
        expect(page.get_by_role("alert").filter(has_text="before its start")).to_be_visible()
        page.get_by_role("button", name="Clear filters").first.click()
        expect(rows).to_have_count(2)
        expect(page.get_by_label("From")).to_have_value("")
        expect(page.get_by_role("button", name="Clear filters")).to_have_count(0)
        # The Test Event column: one value, a dash for a live event.
        expect(rows.first.get_by_role("cell").nth(4)).to_have_text("—")
    finally:
        context.close()


def test_the_event_log_stacks_on_a_phone(browser, console, receiver, make):
    hook_id, _ = make("Phone", receiver.url("/fail"))
    deliver(hook_id, 1)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(console.url + f"/webhooks/{hook_id}/events")
        row = page.get_by_role("row").filter(has_text="payment.created")
        for shown in ("Retrying", "500", re.compile(r"Next retry in \d+ minutes · retries so far: \d")):
            seen = row.get_by_text(shown).locator("visible=true")
            expect(seen).to_be_visible()
            box = seen.bounding_box()
            assert box["x"] + box["width"] <= 390, (shown, box)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_the_payload_box_stays_readable_with_many_attempts(page: Page, console, receiver, make):
    hook_id, _ = make("Flaky", receiver.url("/fail"))
    (delivery_id,) = deliver(hook_id, 1)
    expect_attempts = 2  # "two or more attempts" shrank it before
    import time as _time

    deadline = _time.monotonic() + 30
    from kwik_console.events import deliveries as log

    while _time.monotonic() < deadline:  # the 1 s retries of this module's schedule
        with db.session_scope() as session:
            if len(log.get_delivery(session=session, delivery_id=delivery_id).attempts) >= expect_attempts:
                break
        page.wait_for_timeout(300)
    page.goto(console.url + f"/webhooks/{hook_id}/events")
    page.get_by_role("row").filter(has_text="payment.created").first.click()
    drawer = page.get_by_role("dialog")
    expect(drawer.get_by_text("Attempt 2")).to_be_visible()
    payload = drawer.locator("pre").first
    assert payload.bounding_box()["height"] > 120, payload.bounding_box()  # many lines, not one


def test_paging_through_the_event_log(page: Page, console, receiver, make):
    hook_id, _ = make("Busy", "https://busy.merchant.invalid/kwik", status="disabled")
    from kwik_console.events.publishing import publish

    with db.session_scope() as session:  # deliveries straight in the database: 30 of them, 25 a page
        from kwik_console.core.clock import utcnow
        from kwik_console.store.tables import Delivery, Event

        now = utcnow()
        for n in range(30):
            event_id = f"evt_paging{uuid.uuid4().hex[:12]}"
            session.add(Event(id=event_id, type="payment.created", body=f'{{"n": {n}}}', created_at=now))
            session.flush()  # the event before its delivery (foreign key)
            session.add(
                Delivery(
                    event_id=event_id,
                    webhook_id=hook_id,
                    event_type="payment.created",
                    status="failure",
                    attempt_count=1,
                    created_at=now,
                    updated_at=now,
                )
            )
    assert publish  # (publishing would need a Live webhook; these never go out)
    page.goto(console.url + f"/webhooks/{hook_id}/events")
    expect(page.get_by_role("row")).to_have_count(26)
    first_page = page.get_by_role("row").nth(1).get_attribute("aria-label")
    page.get_by_role("button", name="Older").click()
    expect(page.get_by_text("Page 2")).to_be_visible()
    expect(page.get_by_role("row")).to_have_count(6)
    expect(page.get_by_role("button", name="Older")).to_be_disabled()
    page.get_by_role("button", name="Newer").click()
    expect(page.get_by_role("row")).to_have_count(26)
    expect(page.get_by_role("row").nth(1)).to_have_attribute("aria-label", first_page)


def test_search_finds_a_delivery_by_a_payload_value(page: Page, console, receiver, make):
    hook_id, _ = make("Search", receiver.url("/ok"))
    email = f"jane.{uuid.uuid4().hex[:6]}@hartandco.example"
    deliver(hook_id, 3)
    deliver(hook_id, 1, data={"object": "payment", "id": "pay_01JDXSEARCH", "customer": {"email": email}})
    page.goto(console.url + f"/webhooks/{hook_id}/events")
    expect(page.get_by_role("row")).to_have_count(5)
    expect(page.get_by_text("Searches the event id and every value in the payload")).to_be_visible()
    page.get_by_label("Search deliveries").fill(email)
    expect(page.get_by_role("row")).to_have_count(2)
    page.get_by_role("row").nth(1).click()
    expect(page.get_by_role("dialog").get_by_text(email)).to_be_visible()


def test_an_export_downloads_and_parses(page: Page, console, receiver, make):
    import csv
    import io
    import json

    hook_id, _ = make("Export", receiver.url("/ok"))
    made = deliver(hook_id, 3)
    page.goto(console.url + f"/webhooks/{hook_id}/events")
    expect(page.get_by_role("row")).to_have_count(4)
    with page.expect_download() as got:
        page.get_by_role("link", name="CSV").click()
    rows = list(csv.DictReader(io.StringIO(open(got.value.path()).read())))
    assert [int(r["delivery_id"]) for r in rows] == sorted(made, reverse=True)
    assert {r["status"] for r in rows} == {"Success"} and rows[0]["http_code"] == "200"
    with page.expect_download() as got:
        page.get_by_role("link", name="JSON Lines").click()
    lines = [json.loads(line) for line in open(got.value.path())]
    assert len(lines) == 3 and lines[0]["payload"]["type"] == "payment.created"


def test_a_row_opens_the_webhook_page_with_its_charts(page: Page, console, receiver, make):
    hook_id, name = make("Charts", receiver.url("/ok"))
    failing_id, failing = make("Charts failing", receiver.url("/fail"))
    deliver(hook_id, 4)
    deliver(failing_id, 1)
    page.goto(console.url)
    search_for(page, name)
    row(page, name).get_by_role("cell").nth(3).click()  # the Status cell: anywhere on the row
    expect(page).to_have_url(re.compile(rf"/webhooks/{hook_id}$"))
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    day = page.get_by_label("Last 24 hours")
    expect(day).to_contain_text("4 attempts")  # beside the attempt success rate; "Delivered" counts deliveries
    expect(day).to_contain_text("100.0 %")
    expect(day).to_contain_text("Delivered100.0 %of finished deliveries")  # deliveries, not attempts
    # At 1280 px the five figures sit in one row in each half of the page.
    tops = day.evaluate(
        "el => [...el.querySelectorAll('.rt-Grid > .rt-Flex')].map(c => Math.round(c.getBoundingClientRect().top))"
    )
    assert len(tops) == 5 and len(set(tops)) == 1, tops
    bars = page.locator(".kwik-chart-outcomes .recharts-bar-rectangle path")
    expect(bars.first).to_be_visible()
    # A dot for each time bucket with attempts: these four fell in one bucket, which a line alone cannot show.
    expect(page.locator(".kwik-chart-durations .recharts-line-dot").first).to_be_visible()
    for label in ("1 h", "7 d", "30 d"):
        page.get_by_role("button", name=label, exact=True).click()
        expect(page.get_by_role("button", name=label, exact=True)).to_have_attribute("aria-pressed", "true")
        expect(bars.first).to_be_visible()
    page.get_by_role("link", name="View Events").click()
    expect(page).to_have_url(re.compile(rf"/webhooks/{hook_id}/events$"))
    page.goto(console.url)  # the overview: failing webhooks first (other tests' webhooks may fail too)
    overview = page.get_by_role("table", name="Webhooks, failing first")
    expect(overview.get_by_role("row").filter(has_text=failing)).to_contain_text("0.0 %")
    shown = overview.get_by_role("row").all_inner_texts()
    at = {n: next((i for i, text in enumerate(shown) if n in text), len(shown)) for n in (failing, name)}
    assert at[failing] < at[name], shown


def test_the_signature_checker_explains_each_failure(page: Page, console, receiver, make):
    import json
    import time as _time

    from kwik_console.webhooks.signing import signature_headers

    hook_id, _ = make("Verify", receiver.url("/ok"))
    deliver(hook_id, 1)
    hit = receiver.hits("/ok")[-1]
    with db.session_scope() as session:
        secret = webhooks.get_webhook(session=session, webhook_id=hook_id).secret
    page.goto(console.url)
    page.get_by_role("link", name="Developers").click()
    expect(page.get_by_role("heading", name="Signature checker")).to_be_visible()

    def check(secret_=secret, msg_id=hit.headers["webhook-id"], ts=None, sig=None, body=None):
        body = hit.body.decode() if body is None else body
        ts = ts or str(int(_time.time()))
        sig = sig or signature_headers([secret], msg_id, int(ts), body.encode())["webhook-signature"]
        page.get_by_label("Signing secret").fill(secret_)
        page.get_by_label("webhook-id").fill(msg_id)
        page.get_by_label("webhook-timestamp").fill(ts)
        page.get_by_label("webhook-signature").fill(sig)
        page.get_by_label("Raw body").fill(body)
        page.get_by_role("button", name="Check signature").click()
        return page.get_by_role("status", name="Verdict")

    expect(check()).to_contain_text("Valid")
    expect(check(secret_="sk_live_123")).to_contain_text("must start with whsec_")
    expect(check(sig="v1 nothing")).to_contain_text("not version,signature")
    old = str(int(_time.time()) - 900)
    expect(check(ts=old)).to_contain_text(re.compile(r"15 min \d+ s older than now"))  # the seconds it took to type
    reserialised = json.dumps(json.loads(hit.body), indent=2)
    verdict = check(
        body=reserialised,
        sig=signature_headers([secret], hit.headers["webhook-id"], int(_time.time()), hit.body)["webhook-signature"],
    )
    expect(verdict).to_contain_text("The body differs from the one Kwik sent")
    expect(verdict).to_contain_text("Where the bytes differ: byte 1")
    page.get_by_role("button", name="Go", exact=True).click()
    expect(page.get_by_text("standard-webhooks/libraries/go").first).to_be_visible()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 390])
def test_axe_finds_nothing_serious_on_any_page_or_dialog(browser, console, receiver, make, scheme, width):
    from tests.e2e.axe import assert_clean

    hook_id, name = make("Axe", receiver.url("/ok"))
    deliver(hook_id, 2)
    phone = width == 390
    context = browser.new_context(
        viewport={"width": width, "height": 844 if phone else 800},
        color_scheme=scheme,
        is_mobile=phone,
        has_touch=phone,
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(console.url)
        expect(page.get_by_role("main")).to_be_visible()
        search_for(page, name)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert page.evaluate("document.documentElement.classList.contains('dark')") == (scheme == "dark")
        assert_clean(page, f"the webhook list ({scheme}, {width} px)")
        page.get_by_role("button", name="Create", exact=True).first.click()
        page.get_by_role("dialog").get_by_role("button", name="Create", exact=True).click()
        expect(page.get_by_role("dialog").get_by_text("Select at least one event.")).to_be_visible()
        assert_clean(page, "the Create dialog, with its errors")
        page.keyboard.press("Escape")
        action(page, name, "Test Webhook")
        expect(page.get_by_role("dialog").get_by_role("textbox", name="Payload (data)")).to_be_visible()
        assert_clean(page, "the Test Webhook dialog")
        page.keyboard.press("Escape")
        action(page, name, "Delete")
        expect(page.get_by_role("alertdialog")).to_contain_text(name)
        assert_clean(page, "the Delete confirmation")
        page.keyboard.press("Escape")
        page.goto(console.url + f"/webhooks/{hook_id}")
        expect(page.locator(".kwik-chart-outcomes .recharts-bar-rectangle path").first).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert_clean(page, "the webhook page")
        page.get_by_role("button", name="Recover failed since…").click()
        expect(page.get_by_role("dialog").get_by_label("Failed since")).to_be_visible()
        assert_clean(page, "the Recover dialog")
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Edit").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Max deliveries per second").fill("lots")
        dialog.get_by_role("button", name="Save").click()
        expect(dialog.get_by_label("Max deliveries per second")).to_have_attribute("aria-invalid", "true")
        assert_clean(page, "the Edit dialog: status, rate limit and an error")
        page.keyboard.press("Escape")
        page.goto(console.url + f"/webhooks/{hook_id}/events")
        page.get_by_role("row").filter(has_text="payment.created").first.click()
        expect(page.get_by_role("dialog").get_by_text("Attempt 1")).to_be_visible()
        assert_clean(page, "the event log's details drawer")
        page.keyboard.press("Escape")
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # the table scrolls in its box
        assert_clean(page, "the event log")
        page.goto(console.url + "/developers")
        page.get_by_role("button", name="Check signature").click()
        expect(page.get_by_role("status", name="Verdict")).to_be_visible()
        assert_clean(page, "the Developers page")
    finally:
        context.close()


def test_the_theme_switch(page: Page, console):
    page.goto(console.url)
    dark = page.evaluate("document.documentElement.classList.contains('dark')")
    page.get_by_role("button", name="Switch light or dark theme").click()
    expect(page.locator("html")).to_have_class(re.compile("light" if dark else "dark"))
    page.reload()  # and it is remembered
    expect(page.locator("html")).to_have_class(re.compile("light" if dark else "dark"))


def test_delete_from_the_webhook_page(page: Page, console, make):
    hook_id, name = make("Doomed", "https://doomed.merchant.invalid/kwik", status="disabled")
    page.goto(console.url + f"/webhooks/{hook_id}")
    page.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("alertdialog")
    expect(confirm).to_contain_text(f"Permanently delete “{name}”?")
    confirm.get_by_role("button", name="Delete").click()
    expect(page.get_by_text(f"Webhook “{name}” deleted.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(row(page, name)).to_have_count(0)
