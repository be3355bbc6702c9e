"""Every journey on the help page, in a real browser against the console in production mode.

The tests run in order and share one console and database, like a merchant's session.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from kwik_console import db, webhooks
from kwik_console.webhooks import WebhookInput
from tests.conftest import configure

pytestmark = pytest.mark.e2e


def row(page: Page, name: str):
    return page.get_by_role("row").filter(has_text=name)


def action(page: Page, name: str, item: str) -> None:
    page.get_by_role("button", name=f"Actions for {name}").click()
    page.get_by_role("menuitem", name=item).click()


def test_empty_state_then_create_with_a_validation_error_first(page: Page, console, receiver):
    page.goto(console.url)
    expect(page.get_by_role("heading", name="No webhooks yet")).to_be_visible()
    page.get_by_role("button", name="Create", exact=True).first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Create webhook")).to_be_visible()

    dialog.get_by_label("Name").fill("Orders service")
    dialog.get_by_label("Webhook URL").fill("http://orders.example.com/kwik")  # not https
    dialog.get_by_role("button", name="Create", exact=True).click()
    expect(dialog.get_by_text("Webhook URL must use https://")).to_be_visible()
    expect(dialog.get_by_text("Select at least one event.")).to_be_visible()

    dialog.get_by_label("Webhook URL").fill(receiver.url("/ok"))
    dialog.get_by_text("payment.created", exact=True).click()
    dialog.get_by_text("payment.updated", exact=True).click()
    expect(dialog.get_by_text("2 of 19 selected")).to_be_visible()
    dialog.get_by_role("button", name="Create", exact=True).click()

    expect(page.get_by_text("Webhook “Orders service” created.")).to_be_visible()
    expect(dialog).to_be_hidden()
    expect(row(page, "Orders service")).to_contain_text(receiver.url("/ok"))
    expect(row(page, "Orders service")).to_contain_text("Live")
    for header in ("Created", "Name", "Webhook URL", "Status"):
        expect(page.get_by_role("columnheader", name=header)).to_be_visible()


def test_search_matches_name_or_url(page: Page, console, console_db, receiver, monkeypatch):
    configure(monkeypatch, KWIK_DATABASE_URL=console_db)
    with db.session_scope() as session:
        for name, path in (("Ledger sync", "/fail"), ("CRM hooks", "/crm")):
            webhooks.create_webhook(session=session, data=WebhookInput(
                name=name, url=receiver.url(path), events=["invoice.created"]))
    page.goto(console.url)
    expect(page.get_by_role("row")).to_have_count(4)  # header + 3
    search = page.get_by_label("Search webhooks")
    search.fill("LEDGER")
    expect(page.get_by_role("row")).to_have_count(2)
    expect(row(page, "Ledger sync")).to_be_visible()
    search.fill("/crm")
    expect(page.get_by_role("row")).to_have_count(2)
    expect(row(page, "CRM hooks")).to_be_visible()
    search.fill("nothing like this")
    expect(page.get_by_text("No webhooks match “nothing like this”.")).to_be_visible()
    page.get_by_role("button", name="Clear search").click()
    expect(page.get_by_role("row")).to_have_count(4)


def test_edit(page: Page, console):
    page.goto(console.url)
    action(page, "CRM hooks", "Edit")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Name")).to_have_value("CRM hooks")
    dialog.get_by_label("Name").fill("CRM sync")
    dialog.get_by_text("customer.created", exact=True).click()
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Webhook “CRM sync” saved.")).to_be_visible()
    expect(row(page, "CRM sync")).to_be_visible()
    action(page, "CRM sync", "Edit")
    expect(page.get_by_role("dialog").get_by_text("2 of 19 selected")).to_be_visible()


def test_signing_secret_is_hidden_revealed_and_rotated(page: Page, console):
    page.goto(console.url)
    action(page, "CRM sync", "Edit")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(re.compile(r"whsec_•+"))).to_be_visible()
    dialog.get_by_role("button", name="Reveal").click()
    secret = dialog.get_by_text(re.compile(r"^whsec_[A-Za-z0-9+/=]{44}$"))
    expect(secret).to_be_visible()
    before = secret.inner_text()
    expect(dialog.get_by_text("from standardwebhooks.webhooks import Webhook")).to_be_visible()
    dialog.get_by_role("button", name="Rotate").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_text("New signing secret created.", exact=False)).to_be_visible()
    after = page.get_by_role("dialog").get_by_text(re.compile(r"^whsec_")).inner_text()
    assert after != before and after.startswith("whsec_")


def test_disable(page: Page, console):
    page.goto(console.url)
    action(page, "CRM sync", "Edit")
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("radio", name="Disabled").click()
    expect(dialog.get_by_text("The webhook is inactive and no events will be sent.")).to_be_visible()
    dialog.get_by_role("button", name="Save").click()
    expect(row(page, "CRM sync")).to_contain_text("Disabled")


def test_test_webhook_against_a_200_endpoint(page: Page, console, receiver):
    page.goto(console.url)
    action(page, "Orders service", "Test Webhook")
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").click()
    page.get_by_role("option", name="invoice.created").click()
    expect(dialog.get_by_text('"object": "invoice"')).to_be_visible()
    dialog.get_by_role("button", name="Send", exact=True).click()
    outcome = dialog.get_by_role("status", name="Test outcome")
    expect(outcome).to_contain_text("Success")
    expect(outcome).to_contain_text("HTTP 200")
    expect(outcome).to_contain_text('{"received":true}')
    expect(outcome).to_contain_text(re.compile(r"\d+ ms"))
    assert receiver.hits("/ok")[-1].headers["webhook-id"].startswith("evt_")


def test_test_webhook_against_a_500_endpoint_shows_retrying(page: Page, console):
    page.goto(console.url)
    action(page, "Ledger sync", "Test Webhook")
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
    expect(delivery.get_by_role("cell").nth(5)).to_have_text("2", timeout=20_000)
    expect(delivery.get_by_role("cell").nth(4)).to_have_text(re.compile(r"\d{4}, \d\d:\d\d:\d\d"))


def test_view_events_columns_filters_and_details(page: Page, console):
    page.goto(console.url)
    action(page, "Orders service", "View Events")
    expect(page.get_by_role("heading", name="Events · Orders service")).to_be_visible()
    for header in ("Event", "Status", "HTTP Code", "Test Event", "Retry Timestamp", "Retry Counter"):
        expect(page.get_by_role("columnheader", name=header, exact=True)).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="invoice.created")).to_contain_text("Success")

    page.get_by_role("combobox", name="Status").click()
    page.get_by_role("option", name="Failure").click()
    expect(page.get_by_text("No deliveries match these filters.")).to_be_visible()
    page.get_by_role("combobox", name="Status").click()
    page.get_by_role("option", name="Success").click()
    delivery = page.get_by_role("row").filter(has_text="invoice.created")
    expect(delivery).to_be_visible()

    delivery.click()
    drawer = page.get_by_role("dialog")
    expect(drawer.get_by_text("Payload")).to_be_visible()
    expect(drawer.get_by_text('"type": "invoice.created"')).to_be_visible()
    expect(drawer.get_by_text("webhook-signature")).to_be_visible()
    expect(drawer.get_by_text("Attempt 1")).to_be_visible()
    expect(drawer.get_by_text("HTTP 200")).to_be_visible()
    expect(drawer.get_by_text("Response headers")).to_be_visible()
    # The drawer and the filter survive the live refresh.
    page.wait_for_timeout(3000)
    expect(drawer.get_by_text("Attempt 1")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("combobox", name="Status")).to_have_text("Success")
    expect(page.get_by_role("row").filter(has_text="invoice.created")).to_be_visible()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_usable_on_a_390_px_phone_in_both_themes(browser, console, scheme):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                  color_scheme=scheme)
    page = context.new_page()
    try:
        page.goto(console.url)
        expect(row(page, "Orders service")).to_be_visible()
        # Nothing sticks out sideways: the page does not scroll horizontally.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        dark = page.evaluate("document.documentElement.classList.contains('dark')")
        assert dark == (scheme == "dark")
        action(page, "Orders service", "View Events")
        expect(page.get_by_role("heading", name="Events · Orders service")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the table scrolls in its box
        page.get_by_role("row").filter(has_text="invoice.created").first.click()
        expect(page.get_by_role("dialog").get_by_text("Attempt 1")).to_be_visible()
    finally:
        context.close()


def test_delete(page: Page, console):
    page.goto(console.url)
    action(page, "CRM sync", "Delete")
    confirm = page.get_by_role("alertdialog")
    expect(confirm).to_contain_text("Permanently delete “CRM sync”?")
    confirm.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Webhook “CRM sync” deleted.")).to_be_visible()
    expect(row(page, "CRM sync")).to_have_count(0)
    expect(page.get_by_role("row")).to_have_count(3)
