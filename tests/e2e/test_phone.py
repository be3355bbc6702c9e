"""The dialogs and states the other axe walks do not open, on a phone and a desktop, light and dark: the Edit
dialog opened from the list with many events chosen, the Test Webhook dialog with a long sample, the signing
secret revealed, the Rotate confirmation, a paused webhook, the Actions menu and the API docs page.

Each is measured against the viewport (axe.assert_clean: nothing drawn past either edge, no serious axe finding).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from kwik_console.events.catalog import EVENT_TYPES
from tests.e2e.axe import assert_clean, overflowing
from tests.e2e.test_console import action, deliver, make, search_for  # noqa: F401  (make is a fixture)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [390, 1280])
def test_every_other_dialog_fits_the_screen(browser, console, receiver, make, scheme, width):  # noqa: F811
    events = tuple(EVENT_TYPES)[:12]
    hook_id, name = make("Phone", receiver.url("/wide"), events=events)  # answers with one 600-character word
    deliver(hook_id, 1)
    phone = width == 390
    context = browser.new_context(
        viewport={"width": width, "height": 844 if phone else 800},
        color_scheme=scheme,
        is_mobile=phone,
        has_touch=phone,
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    where = f"({scheme}, {width} px)"
    try:
        page.goto(console.url)
        search_for(page, name)
        page.get_by_role("button", name=f"Actions for {name}").click()
        expect(page.get_by_role("menuitem", name="Edit")).to_be_visible()
        # Only measured: axe's aria-hidden-focus on an open Radix menu is reported separately.
        wide = overflowing(page)
        assert not wide, f"past the viewport's edge with the Actions menu open {where}: " + "; ".join(wide[:8])
        page.keyboard.press("Escape")

        action(page, name, "Edit")
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text(f"{len(events)} of ")).to_be_visible()
        assert_clean(page, f"the Edit dialog from the list {where}")
        for what in ("Save", "Cancel", "Select all", "Select none"):
            button = dialog.get_by_role("button", name=what, exact=True)
            button.scroll_into_view_if_needed()
            box = button.bounding_box()
            assert box and 0 <= box["x"] and box["x"] + box["width"] <= width, (what, box)
        page.keyboard.press("Escape")

        action(page, name, "Test Webhook")
        dialog = page.get_by_role("dialog")
        payload = dialog.get_by_role("textbox", name="Payload (data)")
        expect(payload).to_be_visible()
        payload.fill('{"note": "' + "a-very-long-unbroken-word-" * 12 + '"}')
        assert_clean(page, f"the Test Webhook dialog with a long payload {where}")
        send = dialog.get_by_role("button", name="Send", exact=True)
        send.scroll_into_view_if_needed()
        box = send.bounding_box()
        assert box and box["x"] + box["width"] <= width, box
        dialog.get_by_role("button", name="Reset to sample").click()  # a payload that fits the schema
        send.click()
        outcome = dialog.get_by_label("Test outcome")
        expect(outcome).to_contain_text("HTTP 200")
        expect(outcome).to_contain_text("x" * 600)  # the response, shown whole
        assert_clean(page, f"the Test Webhook dialog's outcome with a wide response {where}")
        page.keyboard.press("Escape")

        action(page, name, "Pause")
        # The list's row (the overview above it has one for the webhook too, once it has attempts).
        expect(page.get_by_role("row").filter(has_text=name).filter(has_text="127.0.0.1")).to_contain_text("Paused")
        assert_clean(page, f"the list with a paused webhook {where}")

        page.goto(console.url + f"/webhooks/{hook_id}")
        expect(page.get_by_role("heading", name=name)).to_be_visible()
        page.get_by_role("button", name="Reveal", exact=True).click()
        expect(page.get_by_label("Signing secret")).to_contain_text("whsec_")
        expect(page.get_by_label("Signing secret")).not_to_contain_text("•")
        assert_clean(page, f"the webhook page with its secret shown {where}")
        page.get_by_role("button", name="Rotate", exact=True).click()
        expect(page.get_by_role("alertdialog")).to_contain_text("Rotate the signing secret?")
        assert_clean(page, f"the Rotate confirmation {where}")
        page.keyboard.press("Escape")

        page.goto(console.url + "/api/v1/docs")
        expect(page.locator(".swagger-ui .info .title").first).to_be_visible()
        wide = overflowing(page)
        assert not wide, f"past the viewport's edge on the API docs {where}: " + "; ".join(wide[:8])
    finally:
        context.close()
