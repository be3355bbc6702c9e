"""The Create / Edit dialog's "All events" choice and custom headers, in a real browser, at a desk's width and a
phone's; the list and the webhook page say what was saved. Screenshots go to /tmp/shots, for people to look at."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlmodel import select

from kwik_console.store import db
from kwik_console.store.tables import Webhook
from tests.conftest import configure
from tests.e2e.axe import assert_clean
from tests.e2e.test_console import deliver, row, search_for

pytestmark = pytest.mark.e2e
SHOTS = Path("/tmp/shots")
ALL_EVENTS = "All events (including types added later)"


@pytest.fixture
def console_database(monkeypatch, console_db):
    configure(monkeypatch, KWIK_DATABASE_URL=console_db)
    yield
    db._engine_for.cache_clear()


def saved(name: str) -> list[Webhook]:
    with db.session_scope() as session:
        return session.exec(select(Webhook).where(Webhook.name == name)).all()


def no_overflow_inside(page: Page, width: int) -> None:
    """Nothing in the dialog is wider than the dialog, nor the page than the screen."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    overflow = page.evaluate(
        """() => {
            const dialog = document.querySelector('[role=dialog]');
            const box = dialog.getBoundingClientRect();
            const out = [...dialog.querySelectorAll('*')].filter(e => {
                const r = e.getBoundingClientRect();
                return r.width > 0 && (r.right > box.right + 0.5 || r.left < box.left - 0.5);
            });
            return {scroll: dialog.scrollWidth - dialog.clientWidth, out: out.map(e => e.outerHTML.slice(0, 80))};
        }"""
    )
    assert overflow["scroll"] <= 0 and overflow["out"] == [], overflow


@pytest.mark.parametrize("width", [1280, 390])
def test_create_with_all_events_and_headers_and_a_forbidden_name_saves_nothing(
    browser, console, receiver, console_database, width
):
    phone = width == 390
    context = browser.new_context(
        viewport={"width": width, "height": 844 if phone else 800}, is_mobile=phone, has_touch=phone
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    name = f"Options {width} {uuid.uuid4().hex[:6]}"
    try:
        page.goto(console.url)
        page.get_by_role("button", name="Create", exact=True).first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Name").fill(name)
        dialog.get_by_label("Webhook URL").fill(receiver.url("/ok"))
        dialog.get_by_role("radio", name=ALL_EVENTS).click()
        expect(dialog.get_by_text("any type added to it later")).to_be_visible()
        expect(dialog.get_by_role("checkbox", name="payment.created")).to_have_count(0)

        dialog.get_by_role("button", name="Add header").click()
        dialog.get_by_role("button", name="Add header").click()
        dialog.get_by_label("Header name 1").fill("Host")
        dialog.get_by_label("Header value 1").fill("evil.invalid")
        dialog.get_by_label("Header name 2").fill("Authorization")
        dialog.get_by_label("Header value 2").fill("Bearer tok_123")
        dialog.get_by_role("button", name="Create", exact=True).click()
        expect(
            dialog.get_by_role("alert").filter(has_text="Host: this header belongs to the connection")
        ).to_be_visible()
        assert saved(name) == []  # refused in the form: nothing saved
        assert_clean(page, f"the Create dialog with All events and a refused header ({width} px)")
        dialog.get_by_label("Header name 1").fill("X-Team-With-A-Rather-Long-Name")
        dialog.get_by_label("Header value 1").fill("orders-" + "x" * 60)
        no_overflow_inside(page, width)
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"create-options-{width}.png"), full_page=False)
        dialog.get_by_role("heading", name="Create webhook").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"create-options-{width}-top.png"), full_page=False)
        dialog.get_by_role("radio", name="Selected events").click()
        expect(dialog.get_by_role("checkbox", name="payment.created")).to_be_visible()
        no_overflow_inside(page, width)
        dialog.get_by_role("radio", name=ALL_EVENTS).click()
        dialog.get_by_role("button", name="Create", exact=True).click()
        expect(page.get_by_text(f"Webhook “{name}” created.")).to_be_visible()

        (hook,) = saved(name)
        assert hook.all_events is True
        assert hook.headers == {
            "X-Team-With-A-Rather-Long-Name": "orders-" + "x" * 60,
            "Authorization": "Bearer tok_123",
        }
        expect(page).to_have_url(re.compile(rf"/webhooks/{hook.id}\?created=1$"))  # its page, next
        page.goto(console.url)
        search_for(page, name)
        expect(row(page, name)).to_contain_text("All events")

        page.goto(console.url + f"/webhooks/{hook.id}")
        expect(page.get_by_text(ALL_EVENTS)).to_be_visible()
        expect(page.get_by_text("Authorization: Bearer tok_123")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= width

        # Edit opens in the same mode with the same rows; removing one saves the other alone.
        page.get_by_role("button", name="Edit").click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_role("radio", name=ALL_EVENTS)).to_be_checked()
        expect(dialog.get_by_label("Header value 2")).to_have_value("Bearer tok_123")
        dialog.get_by_role("button", name="Remove header 1").click()
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_be_hidden()
        (hook,) = saved(name)
        assert hook.headers == {"Authorization": "Bearer tok_123"}
    finally:
        context.close()
    assert not errors, errors


def test_a_delivery_carries_the_headers_set_in_the_form(page: Page, console, receiver, console_database):
    name = f"Headers {uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex
    page.goto(console.url)
    page.get_by_role("button", name="Create", exact=True).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Webhook URL").fill(receiver.url("/ok"))
    dialog.get_by_role("checkbox", name="payment.created").click()
    dialog.get_by_role("button", name="Add header").click()
    dialog.get_by_label("Header name 1").fill("X-Shop")
    dialog.get_by_label("Header value 1").fill(tag)
    dialog.get_by_role("button", name="Create", exact=True).click()
    expect(page.get_by_text(f"Webhook “{name}” created.")).to_be_visible()
    (hook,) = saved(name)
    deliver(hook.id, 1)
    (request,) = [r for r in receiver.hits("/ok") if r.headers.get("x-shop") == tag]
    assert json.loads(request.body)["type"] == "payment.created"
