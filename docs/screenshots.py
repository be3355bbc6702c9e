"""Take the README's screenshots: the console in production mode, in headless Chromium.

    .venv/bin/python docs/screenshots.py

Seeds a throwaway database, then saves PNGs into docs/screenshots/. Every
delivery in it is a real attempt, to a receiver on 127.0.0.1; the other
webhooks point at `.invalid` hosts and have nothing due, so a console started
on this data sends nothing off the machine. The last 24 hours of the Orders
service are real attempts too, made now and then dated back over the day (the
charts' rollups are rebuilt from them), so the charts show a day of traffic.

A second console, in hosted mode on the same data, gives the sign-in page and
the Members page.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"
SECRET_KEY = "a3dpayBkb2NzIHNjcmVlbnNob3RzLCBub3QgcHJvZCE="  # throwaway (Fernet): seals this database's secrets
ADMIN = ("maya@hartandco.invalid", "orchid tractor 1987 lamp")
ORDERS = "Orders service"


def _deliver(ids: list[int]) -> None:
    from kwik_console.delivery import scheduler

    asyncio.run(scheduler.deliver_now(ids))


def _set_url(webhook_id: int, url: str) -> None:
    from kwik_console.store import db
    from kwik_console.store.tables import Webhook

    with db.session_scope() as s:
        hook = s.get(Webhook, webhook_id)
        hook.url = url
        s.add(hook)


def _date_back(webhook_id: int, hours: float, rng: random.Random) -> None:
    """Spread the webhook's deliveries (event, delivery, attempts) over the last `hours`, and rebuild the rollups."""
    from sqlmodel import select

    from kwik_console.core.clock import utcnow
    from kwik_console.events import rollups
    from kwik_console.store import db
    from kwik_console.store.tables import Attempt, Delivery, Event

    now = utcnow()
    with db.session_scope() as s:
        for d in s.exec(select(Delivery).where(Delivery.webhook_id == webhook_id)).all():
            if d.status != "success":
                continue  # the failing and retrying ones stay recent, as they are
            shift = dt.timedelta(hours=rng.uniform(0.1, hours))
            event = s.get(Event, d.event_id)
            event.created_at -= shift
            d.created_at -= shift
            d.updated_at -= shift
            for a in s.exec(select(Attempt).where(Attempt.delivery_id == d.id)).all():
                a.attempted_at -= shift
                s.add(a)
            s.add_all([event, d])
    with db.get_engine().begin() as conn:
        rollups.rebuild(conn, since=now - dt.timedelta(days=31))


def seed(receiver) -> int:
    """Returns the delivery whose first attempt failed."""
    from kwik_console.events import catalog
    from kwik_console.events.publishing import publish
    from kwik_console.store import db
    from kwik_console.team import audit
    from kwik_console.webhooks import service as webhooks
    from kwik_console.webhooks.rules import WebhookInput

    hooks = [
        # Live only where the receiver on 127.0.0.1 answers; the .invalid ones get no events.
        (
            ORDERS,
            receiver.url("/ok"),
            ["payment.created", "payment.updated", "checkout.completed", "checkout.failed", "invoice.created"],
            "live",
        ),
        (
            "Accounting sync (Xero)",
            "https://accounting.hartandco.invalid/kwik/webhooks",
            ["invoice.created", "invoice.updated", "payout.created", "payout.updated"],
            "disabled",
        ),
        (
            "CRM customers",
            "https://crm.hartandco.invalid/hooks/kwik",
            ["customer.created", "customer.updated", "mandate.created"],
            "disabled",
        ),
        ("Ledger (staging)", receiver.url("/fail"), ["transaction.created", "transaction.updated"], "live"),
    ]
    with db.session_scope() as s:
        ids = [
            webhooks.create_webhook(
                session=s, data=WebhookInput(name=name, url=url, events=events, status=status), actor=audit.CLI
            ).id
            for name, url, events, status in hooks
        ]
    orders = ids[0]
    rng = random.Random(11)
    types = ["payment.created", "checkout.completed", "payment.updated", "invoice.created", "checkout.failed"]

    def burst(n: int) -> list[int]:
        made = []
        for k in range(n):
            t = types[k % len(types)]
            made += publish(t, catalog.sample_data(t), webhook_id=None, wake=False).delivery_ids
        return made

    # A day of traffic to the Orders service: most answered at once, some by a slower path (50 ms, 500 ms).
    for path, n in (("/ok", 90), ("/steady", 40), ("/half", 6)):
        _set_url(orders, receiver.url(path))
        _deliver(burst(n))
    _set_url(orders, receiver.url("/ok"))
    _date_back(orders, 23.5, rng)
    # And the last few minutes, as the event log shows them: one test event, one that failed once.
    _set_url(orders, receiver.url("/fail"))
    flaky = burst(1)  # retried by the console 5 s later, at /ok: the drawer shows both attempts
    _deliver(flaky)
    _set_url(orders, receiver.url("/ok"))
    _deliver(burst(5))
    _deliver(
        publish(
            "invoice.created", catalog.sample_data("invoice.created"), test=True, webhook_id=orders, wake=False
        ).delivery_ids
    )
    # The Ledger's transaction events fail, and retry against 127.0.0.1.
    _deliver(publish("transaction.created", catalog.sample_data("transaction.created"), wake=False).delivery_ids)
    return flaky[0]


def main() -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS, ConsoleServer
    from tests.receiver import Receiver

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/kwik.db"
        os.environ["KWIK_DATABASE_URL"] = url
        os.environ["KWIK_SECRET_KEY"] = SECRET_KEY
        receiver = Receiver().start()
        flaky = seed(receiver)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                server = ConsoleServer(url, Path(tmp) / "console.log", KWIK_SECRET_KEY=SECRET_KEY).start()
                try:
                    shoot(browser, server.url, flaky)
                    dark(browser, server.url)
                    phone(browser, server.url)
                finally:
                    server.stop()
                hosted_shots(browser, url, Path(tmp))
                browser.close()
        finally:
            receiver.stop()
    print(f"Screenshots in {OUT}")


def settle(page) -> None:
    """Fonts loaded, animations done (a drawer sliding in) and two frames drawn: what the merchant would see,
    not a frame mid-layout."""
    page.evaluate("document.fonts.ready")
    page.evaluate(
        """Promise.race([
            Promise.all(document.getAnimations()
                .filter(a => a.effect && a.effect.getTiming().iterations !== Infinity)
                .map(a => a.finished.catch(() => null))),
            new Promise(r => setTimeout(r, 3000)),
        ])"""
    )
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def snap(page, name: str, *, full_page: bool = False) -> None:
    settle(page)
    page.screenshot(path=OUT / name, full_page=full_page)
    print(" ", name, flush=True)


def open_page(page, url: str, wait_for: str) -> None:
    page.goto(url)
    page.get_by_text(wait_for).first.wait_for()


def orders_id(page, base: str) -> str:
    open_page(page, base, ORDERS)
    webhooks = page.get_by_role("table", name="Webhooks", exact=True)
    href = webhooks.get_by_role("row").filter(has_text=ORDERS).get_by_role("link").get_attribute("href")
    return href.rsplit("/", 1)[-1]


def shoot(browser, base: str, flaky: int) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    page = context.new_page()
    hook = orders_id(page, base)
    page.get_by_role("table", name="Webhooks, failing first").wait_for()
    snap(page, "webhooks-light.png")

    page.get_by_role("button", name="Create", exact=True).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("Payouts to treasury")
    dialog.get_by_label("Webhook URL").fill("http://treasury.hartandco.invalid/kwik")
    dialog.get_by_text("payout.created", exact=True).click()
    dialog.get_by_role("button", name="Create", exact=True).click()
    dialog.get_by_text("must use https://").wait_for()
    dialog.get_by_role("heading", name="Create webhook").scroll_into_view_if_needed()  # the errors, not the buttons
    snap(page, "create-form.png")
    page.keyboard.press("Escape")

    page.get_by_role("button", name=f"Actions for {ORDERS}").click()
    page.get_by_role("menuitem", name="Test Webhook").wait_for()
    snap(page, "row-actions.png")
    page.get_by_role("menuitem", name="Test Webhook").click()
    page.get_by_role("dialog").get_by_role("button", name="Send", exact=True).click()
    page.get_by_role("status", name="Test outcome").wait_for()
    snap(page, "test-webhook.png")
    page.keyboard.press("Escape")

    open_page(page, f"{base}/webhooks/{hook}", "Deliveries over time")
    page.locator(".kwik-chart-durations .recharts-line-dot").first.wait_for()
    snap(page, "webhook-page.png", full_page=True)

    open_page(page, f"{base}/webhooks/{hook}/events", "checkout.completed")
    snap(page, "event-log.png")
    page.locator(f'[aria-label^="Delivery {flaky}:"]').click()
    page.get_by_role("dialog").get_by_text("Attempt 2").wait_for(timeout=30_000)  # the console's retry, 5 s on
    snap(page, "delivery-details.png")
    page.keyboard.press("Escape")
    page.goto(base)
    page.get_by_role("table", name="Webhooks", exact=True).get_by_role("row").filter(
        has_text="Ledger (staging)"
    ).get_by_role("link").click()
    page.get_by_role("link", name="View Events").click()
    page.get_by_text("transaction.created").first.wait_for()
    snap(page, "event-log-retrying.png")

    open_page(page, f"{base}/developers?webhook={hook}", "Signature checker")
    page.get_by_label("Signing secret").fill("whsec_" + "A" * 43 + "=")
    page.get_by_label("webhook-id").fill("evt_2u0zS2QhTq9p1yX7mJ3kFv")
    page.get_by_label("webhook-timestamp").fill(str(int(time.time()) - 900))
    page.get_by_label("webhook-signature").fill("v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=")
    page.get_by_label("Raw body").fill('{"type": "payment.created", "data": {"object": "payment"}}')
    page.get_by_role("button", name="Check signature").click()
    page.get_by_role("status", name="Verdict").wait_for()
    snap(page, "developers.png", full_page=True)
    context.close()


def dark(browser, base: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    page = context.new_page()
    hook = orders_id(page, base)
    page.get_by_role("table", name="Webhooks, failing first").wait_for()
    snap(page, "webhooks-dark.png")
    open_page(page, f"{base}/webhooks/{hook}", "Deliveries over time")
    page.locator(".kwik-chart-durations .recharts-line-dot").first.wait_for()
    snap(page, "webhook-page-dark.png")
    open_page(page, f"{base}/webhooks/{hook}/events", "checkout.completed")
    snap(page, "event-log-dark.png")
    context.close()


def phone(browser, base: str) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    hook = orders_id(page, base)
    snap(page, "webhooks-phone.png")
    open_page(page, f"{base}/webhooks/{hook}", "Deliveries over time")
    page.locator(".kwik-chart-durations .recharts-line-dot").first.wait_for()
    snap(page, "webhook-page-phone.png")
    open_page(page, f"{base}/webhooks/{hook}/events", "checkout.completed")
    snap(page, "event-log-phone.png")
    context.close()


def hosted_shots(browser, url: str, tmp: Path) -> None:
    """The same data behind sign-in: the sign-in page, then the Members page as its admin sees it."""
    from kwik_console.store import db
    from kwik_console.team import audit, members
    from tests.e2e.server import ConsoleServer

    with db.session_scope() as s:
        link = members.invite(session=s, email=ADMIN[0], role="admin", actor=audit.CLI)
        members.accept_link(session=s, token=link.token, password=ADMIN[1], confirm=ADMIN[1])
        members.invite(session=s, email="sam@hartandco.invalid", role="developer", actor=audit.CLI)
        members.invite(session=s, email="alex@hartandco.invalid", role="viewer", actor=audit.CLI)
    server = ConsoleServer(url, tmp / "hosted.log", KWIK_MODE="hosted", KWIK_SECRET_KEY=SECRET_KEY)
    server.env["KWIK_PUBLIC_URL"] = server.url
    server.start()
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light")
        page = context.new_page()
        open_page(page, server.url + "/sign-in", "Sign in")
        page.get_by_label("Email").fill(ADMIN[0])
        snap(page, "sign-in.png")
        page.get_by_label("Password").fill(ADMIN[1])
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Webhooks", exact=True).wait_for()
        open_page(page, server.url + "/members", "sam@hartandco.invalid")
        snap(page, "members.png")
        context.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
