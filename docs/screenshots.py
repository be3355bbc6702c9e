"""Take the README's screenshots: the console in production mode, in headless Chromium.

    .venv/bin/python docs/screenshots.py

Seeds a throwaway database with a few webhooks and deliveries (sent to a real
receiver on 127.0.0.1), then saves PNGs into docs/screenshots/.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"


def seed(receiver) -> None:
    import asyncio

    from kwik_console import catalog, db, webhooks
    from kwik_console.delivery import scheduler
    from kwik_console.events import publish
    from kwik_console.webhooks import WebhookInput

    hooks = [
        ("Orders service", receiver.url("/ok"), ["payment.created", "payment.updated", "checkout.completed",
                                                 "checkout.failed", "invoice.created"], "live"),
        ("Accounting sync (Xero)", "https://accounting.hartandco.example.com/kwik/webhooks",
         ["invoice.created", "invoice.updated", "payout.created", "payout.updated"], "disabled"),
        ("CRM customers", "https://crm.hartandco.example.com/hooks/kwik", ["customer.created", "customer.updated",
                                                                          "mandate.created"], "live"),
        ("Ledger (staging)", receiver.url("/fail"), ["transaction.created", "transaction.updated"], "live"),
    ]
    with db.session_scope() as s:
        for name, url, events, status in hooks:
            webhooks.create_webhook(session=s, data=WebhookInput(name=name, url=url, events=events, status=status))
    ids = []
    for event_type in ["payment.created", "checkout.completed", "payment.updated", "invoice.created",
                       "checkout.failed", "transaction.created", "payment.created"]:
        ids += publish(event_type, catalog.sample_data(event_type), wake=False).delivery_ids
    ids += publish("invoice.created", catalog.sample_data("invoice.created"), test=True, webhook_id=1,
                   wake=False).delivery_ids
    asyncio.run(scheduler.deliver_now(ids))


def main() -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS, ConsoleServer
    from tests.receiver import Receiver

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/kwik.db"
        os.environ["KWIK_DATABASE_URL"] = url
        receiver = Receiver().start()
        seed(receiver)
        server = ConsoleServer(url, Path(tmp) / "console.log").start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for scheme in ("light", "dark"):
                    shoot(browser, server.url, scheme)
                phone(browser, server.url)
                browser.close()
        finally:
            server.stop()
            receiver.stop()
    print(f"Screenshots in {OUT}")


def snap(page, url: str, wait_for: str, name: str) -> None:
    """Open a page, wait for its content to show, and save a screenshot."""
    page.goto(url)
    page.get_by_text(wait_for).first.wait_for()
    time.sleep(0.5)
    page.screenshot(path=OUT / name)


def shoot(browser, base: str, scheme: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
    page = context.new_page()
    snap(page, base, "Orders service", f"webhooks-{scheme}.png")
    if scheme == "dark":
        snap(page, base + "/webhooks/1/events", "checkout.completed", "event-log-dark.png")
        context.close()
        return

    page.get_by_role("button", name="Create", exact=True).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("Payouts to treasury")
    dialog.get_by_label("Webhook URL").fill("http://treasury.example.com/kwik")
    dialog.get_by_text("payout.created", exact=True).click()
    dialog.get_by_role("button", name="Create", exact=True).click()
    dialog.get_by_text("must use https://").wait_for()
    time.sleep(0.3)
    page.screenshot(path=OUT / "create-form.png")
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Actions for Orders service").click()
    time.sleep(0.3)
    page.screenshot(path=OUT / "row-actions.png")
    page.get_by_role("menuitem", name="Test Webhook").click()
    page.get_by_role("dialog").get_by_role("button", name="Send", exact=True).click()
    page.get_by_role("status", name="Test outcome").wait_for()
    time.sleep(0.3)
    page.screenshot(path=OUT / "test-webhook.png")
    page.keyboard.press("Escape")

    snap(page, base + "/webhooks/4/events", "transaction.created", "event-log-retrying.png")
    snap(page, base + "/webhooks/1/events", "checkout.completed", "event-log.png")
    page.get_by_text("checkout.completed").first.click()
    page.get_by_text("Attempt 1").wait_for()
    time.sleep(0.6)
    page.screenshot(path=OUT / "delivery-details.png")
    context.close()


def phone(browser, base: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    snap(page, base, "Orders service", "webhooks-phone.png")
    snap(page, base + "/webhooks/1/events", "checkout.completed", "event-log-phone.png")
    context.close()


if __name__ == "__main__":
    main()
