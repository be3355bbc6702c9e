"""Test Webhook with my own payload, in a real browser: the edit arrives exactly, one that does not fit the
type's schema is refused beside the field and nothing is sent; and the dialog fits a 390 px phone."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from kwik_console.events import catalog
from kwik_console.store import db
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import configure

pytestmark = pytest.mark.e2e

# Where to keep the dialog's screenshots for a person to look at (unset: the test's own folder).
SHOTS = os.environ.get("KWIK_SCREENSHOTS")


@pytest.fixture
def hook(monkeypatch, console_db, receiver):
    """A webhook to the receiver's /ok, made straight in the console's database: (id, unique name)."""
    configure(monkeypatch, KWIK_DATABASE_URL=console_db)
    name = f"Payload {uuid.uuid4().hex[:6]}"
    with db.session_scope() as session:
        made = webhooks.create_webhook(
            session=session,
            data=WebhookInput(name=name, url=receiver.url("/ok"), events=["payment.created"]),
            actor=audit.CLI,
        )
    yield made.id, name
    db._engine_for.cache_clear()


def _open_dialog(page: Page, console, name: str):
    page.goto(console.url)
    page.get_by_label("Search webhooks").fill(name)
    page.get_by_role("button", name=f"Actions for {name}").click()
    page.get_by_role("menuitem", name="Test Webhook").click()
    return page.get_by_role("dialog")


def _sent(receiver) -> list[dict]:
    return [json.loads(r.body) for r in receiver.hits("/ok")]


def test_an_edited_payload_arrives_exactly_and_one_that_does_not_fit_is_refused(
    page: Page, console, receiver, hook, tmp_path
):
    _, name = hook
    dialog = _open_dialog(page, console, name)
    payload = dialog.get_by_role("textbox", name="Payload (data)")
    expect(payload).to_have_value(re.compile(r'"object": "payment"'))
    dialog.get_by_role("combobox").click()
    page.get_by_role("option", name="invoice.created").click()
    expect(payload).to_have_value(re.compile(r'"object": "invoice"'))  # the new type's sample

    before = len(receiver.hits("/ok"))
    payload.fill(json.dumps(catalog.sample_data("invoice.created") | {"amount_due": "lots"}))
    dialog.get_by_role("button", name="Send", exact=True).click()
    error = dialog.get_by_role("alert")
    expect(error).to_contain_text('data.amount_due: "lots" is not of type "integer"')
    expect(payload).to_have_attribute("aria-invalid", "true")
    expect(dialog.get_by_role("status", name="Test outcome")).to_have_count(0)
    assert len(receiver.hits("/ok")) == before  # nothing sent

    edited = catalog.sample_data("invoice.created") | {"amount_due": 12345, "number": "INV-ÉDIT", "po": "PO-9"}
    payload.fill(json.dumps(edited, indent=2))
    expect(error).to_have_count(0)  # the reason goes once the field changes
    dialog.get_by_role("button", name="Send", exact=True).click()
    outcome = dialog.get_by_role("status", name="Test outcome")
    expect(outcome).to_contain_text("Success")
    received = _sent(receiver)[before:]
    assert [(e["type"], e["test"], e["data"]) for e in received] == [("invoice.created", True, edited)]

    dialog.get_by_role("button", name="Reset to sample").click()
    expect(payload).to_have_value(json.dumps(catalog.sample_data("invoice.created"), indent=2, ensure_ascii=False))
    page.screenshot(path=str(Path(SHOTS or tmp_path) / "test-webhook-1280.png"))


def test_the_dialog_fits_a_phone(browser, console, hook, tmp_path):
    _, name = hook
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        dialog = _open_dialog(page, console, name)
        payload = dialog.get_by_role("textbox", name="Payload (data)")
        expect(payload).to_have_value(re.compile(r'"object": "payment"'))
        # A long word must wrap, not widen the dialog past the screen.
        payload.fill(json.dumps({"id": "pay_" + "X" * 120, "amount": "not a number"}))
        dialog.get_by_role("button", name="Send", exact=True).click()
        expect(dialog.get_by_role("alert")).to_be_visible()
        widths = page.evaluate(
            """() => {
                const d = document.querySelector('[role=dialog]');
                const t = document.getElementById('test-payload');
                return {page: document.documentElement.scrollWidth, view: window.innerWidth,
                        dialog: d.scrollWidth, dialogBox: d.clientWidth, area: t.scrollWidth, areaBox: t.clientWidth,
                        right: d.getBoundingClientRect().right};
            }"""
        )
        assert widths["page"] <= widths["view"], widths
        assert widths["dialog"] <= widths["dialogBox"] and widths["right"] <= widths["view"], widths
        assert widths["area"] <= widths["areaBox"], widths  # wrapped: no sideways scrolling in the field
        page.screenshot(path=str(Path(SHOTS or tmp_path) / "test-webhook-390.png"), full_page=True)
    finally:
        context.close()
