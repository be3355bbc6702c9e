"""The webhook's page as the place to debug from: its last deliveries, live; a row opens the details; "Check
signature" there fills the checker in from that delivery, and its secret comes by a reveal; a real attempt
to a receiver on 127.0.0.1 then checks out as valid."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from kwik_console.store import db
from kwik_console.store.tables import Delivery
from tests.e2e.test_console import deliver, make  # noqa: F401  (make: a fixture)

pytestmark = pytest.mark.e2e


def test_recent_deliveries_then_check_a_signature_from_one(page: Page, console, receiver, make):
    hook_id, name = make("Hub", receiver.url("/ok"))
    deliver(hook_id, 2)
    page.goto(f"{console.url}/webhooks/{hook_id}")
    recent = page.get_by_role("table", name="Recent deliveries")
    expect(recent.get_by_role("row").filter(has_text="payment.created")).to_have_count(2)

    (delivery_id,) = deliver(hook_id, 1, event_type="invoice.created")  # while the page is open: it shows up
    with db.session_scope() as session:
        event_id = session.get(Delivery, delivery_id).event_id
    expect(recent.get_by_role("row").filter(has_text="invoice.created")).to_have_count(1)

    recent.get_by_role("row").filter(has_text="invoice.created").click()
    drawer = page.get_by_role("dialog", name="invoice.created")  # the details, titled by the event type
    expect(drawer.get_by_text("Attempt 1")).to_be_visible()
    drawer.get_by_role("link", name="Check signature").click()

    expect(page.get_by_role("heading", name="Signature checker")).to_be_visible()
    expect(page.get_by_text("Filled in from delivery")).to_be_visible()
    expect(page.get_by_label("webhook-id")).to_have_value(event_id)
    expect(page.get_by_label("webhook-signature")).to_have_value(re.compile(r"^v1,"))
    expect(page.get_by_label("Raw body")).to_have_value(re.compile('"type": ?"invoice.created"'))
    expect(page.get_by_label("Signing secret")).to_have_value("")  # never without a reveal
    page.get_by_role("button", name="Reveal the secret").click()
    expect(page.get_by_label("Signing secret")).to_have_value(re.compile(r"^whsec_"))
    page.get_by_role("button", name="Check signature").click()
    expect(page.get_by_role("status", name="Verdict")).to_contain_text("Valid")
