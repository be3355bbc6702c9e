"""Operating deliveries in a real browser: Resend, Recover with its progress bar, the auto-disable banner and
Re-enable, Pause and Resume, the rate limit field, retention, and the operational webhook.

Each test makes the webhooks it needs, under names of its own (the console and database are the module's).
Screenshots go to /tmp/shots, for people to look at.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlmodel import select

from kwik_console.core.clock import utcnow
from kwik_console.operations import health
from kwik_console.store import db
from kwik_console.store.tables import Delivery, Webhook
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.e2e.test_console import action, deliver, make, row, search_for  # noqa: F401  (make: a fixture)

pytestmark = pytest.mark.e2e
SHOTS = Path("/tmp/shots")


def still(page: Page) -> None:
    """Until the page's animations (a drawer's slide-in, a toast's) are over; those that never end aside."""
    page.wait_for_function(
        "document.getAnimations().every(a => a.playState !== 'running'"
        " || a.effect?.getTiming().iterations === Infinity)"
    )


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def move_to(hook_id: int, url: str) -> None:
    """The merchant fixed their endpoint: the webhook now points at one that answers 200."""
    with db.session_scope() as session:
        webhooks.update_webhook(session=session, webhook_id=hook_id, data=WebhookInput(url=url), actor=audit.CLI)


def statuses(hook_id: int) -> list[str]:
    with db.session_scope() as session:
        return [
            d.status for d in session.exec(select(Delivery).where(Delivery.webhook_id == hook_id).order_by(Delivery.id))
        ]


def test_resend_from_the_drawer_and_from_a_failure_row(page: Page, console, receiver, make):
    hook_id, name = make("Resend", receiver.url("/gone"))
    first, second = deliver(hook_id, 2)  # 410 Gone: Failure at once, no retry
    assert statuses(hook_id) == ["failure", "failure"]
    move_to(hook_id, receiver.url("/ok"))
    before = len(receiver.hits("/ok"))

    page.goto(console.url + f"/webhooks/{hook_id}/events")
    expect(page.get_by_text("Deliveries are kept for 30 days.")).to_be_visible()
    newest = page.get_by_role("row", name=f"Delivery {second}: payment.created")
    expect(newest).to_contain_text("Failure")
    newest.click()
    drawer = page.get_by_role("dialog")
    expect(drawer.get_by_text("Attempt 1")).to_be_visible()
    still(page)  # the drawer's slide-in, for the picture only
    shot(page, "drawer-before-resend")
    drawer.get_by_role("button", name="Resend").click()
    expect(page.get_by_text("Resent: HTTP 200, Success.")).to_be_visible()
    # The new attempt, in the same delivery's history, newest first.
    expect(drawer.get_by_text("Attempt 2")).to_be_visible()
    expect(drawer.get_by_text("HTTP 200")).to_be_visible()
    expect(drawer.get_by_text("HTTP 410")).to_be_visible()
    still(page)  # the toast's slide-in, for the picture only
    shot(page, "drawer-after-resend")
    page.keyboard.press("Escape")
    expect(newest).to_contain_text("Success")
    expect(newest.get_by_role("button", name="Resend")).to_have_count(0)  # only Failure and Retrying rows

    older = page.get_by_role("row", name=f"Delivery {first}: payment.created")
    older.get_by_role("button", name="Resend").click()
    expect(older).to_contain_text("Success")
    expect(older).to_contain_text("200")
    expect(drawer).to_be_hidden()  # the row's button does not open the drawer
    sent = receiver.hits("/ok")[before:]
    with db.session_scope() as session:
        event_ids = {session.get(Delivery, d).event_id for d in (first, second)}
    assert {h.headers["webhook-id"] for h in sent} == event_ids  # the same webhook-id, once each


def test_resend_is_refused_while_the_webhook_is_paused(page: Page, console, receiver, make):
    hook_id, _ = make("Resend paused", receiver.url("/gone"))
    (delivery_id,) = deliver(hook_id, 1)
    with db.session_scope() as session:
        from kwik_console.team.audit import CONSOLE

        health.pause_webhook(session=session, webhook_id=hook_id, actor=CONSOLE)
    page.goto(console.url + f"/webhooks/{hook_id}/events")
    page.get_by_role("row", name=f"Delivery {delivery_id}: payment.created").get_by_role(
        "button", name="Resend"
    ).click()
    expect(page.get_by_text(re.compile(r"is Paused: set its Status to Live to resend"))).to_be_visible()
    assert statuses(hook_id) == ["failure"]


def test_recover_failed_since_with_its_progress_bar(page: Page, console, receiver, make):
    from tests.e2e.axe import assert_clean

    hook_id, name = make("Recover", receiver.url("/gone"))
    count = 300
    deliver(hook_id, count)
    assert statuses(hook_id) == ["failure"] * count
    move_to(hook_id, receiver.url("/ok"))
    before = len(receiver.hits("/ok"))

    page.goto(console.url + f"/webhooks/{hook_id}")
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.get_by_role("region", name="Recovery")).to_have_count(0)  # never had one
    page.get_by_role("button", name="Recover failed since…").click()
    dialog = page.get_by_role("dialog")
    since = dialog.get_by_label("Failed since")
    expect(since).to_have_value(re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d$"))  # 24 h ago, in the browser's zone
    expect(dialog.get_by_text("In your time zone")).to_be_visible()
    shot(page, "recover-dialog")
    since.fill((dt.datetime.now() + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"))
    dialog.get_by_role("button", name="Start").click()
    expect(dialog.get_by_text("The date to recover from must be in the past.")).to_be_visible()
    since.fill((dt.datetime.now() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    dialog.get_by_role("button", name="Start").click()
    expect(page.get_by_text(f"Recovery started: {count} deliveries to send again.")).to_be_visible()

    panel = page.get_by_role("region", name="Recovery")
    expect(panel).to_be_visible()
    shot(page, "recovery-progress")
    # It refreshes itself, every second, until the job is done.
    expect(panel.get_by_text("Finished", exact=True).first).to_be_visible(timeout=60_000)
    expect(panel).to_contain_text(f"{count} of {count} sent · 100 %")
    for label, value in (("Queued", count), ("Sent", count), ("Succeeded", count), ("Failed", 0)):
        expect(panel).to_contain_text(f"{label}{value}")
    expect(panel.get_by_role("progressbar", name="Recovery progress")).to_be_visible()
    expect(panel.get_by_role("button", name="Cancel recovery")).to_have_count(0)
    assert statuses(hook_id) == ["success"] * count
    assert len(receiver.hits("/ok")) - before == count  # each once
    shot(page, "recovery-finished")
    # The "Recovery started" toast fades out by a CSS transition, which axe would measure half transparent.
    expect(page.locator("[data-sonner-toast]")).to_have_count(0, timeout=15_000)
    assert_clean(page, "the webhook page with its recovery panel")
    page.reload()  # the panel comes back from the database
    expect(page.get_by_role("region", name="Recovery")).to_contain_text(f"{count} of {count} sent")
    # Done with it: dismissed, it stays closed in this browser.
    page.get_by_role("button", name="Dismiss the recovery").click()
    expect(page.get_by_role("region", name="Recovery")).to_have_count(0)
    page.reload()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.get_by_role("region", name="Recovery")).to_have_count(0)


def test_a_recovery_that_fails_again_says_so_in_amber(page: Page, console, receiver, make):
    hook_id, name = make("Recover again", receiver.url("/gone"))
    deliver(hook_id, 4)  # 410 Gone: Failure at once, and the endpoint is still gone
    page.goto(console.url + f"/webhooks/{hook_id}")
    page.get_by_role("button", name="Recover failed since…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Failed since").fill((dt.datetime.now() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    dialog.get_by_role("button", name="Start").click()
    panel = page.get_by_role("region", name="Recovery")
    expect(panel.get_by_text("Finished with failures")).to_be_visible(timeout=60_000)
    expect(panel).to_contain_text("4 of 4 sent failed again (0 succeeded)")
    expect(panel.get_by_text("Finished", exact=True)).to_have_count(0)  # never the green word alone
    shot(page, "recovery-finished-with-failures")


def test_auto_disable_banner_then_re_enable(page: Page, console, receiver, make):
    hook_id, name = make("Disabled auto", receiver.url("/fail"))
    deliver(hook_id, 1)
    with db.session_scope() as session:
        hook = session.get(Webhook, hook_id)
        assert hook.failing_since is not None  # set by the dispatcher, from the real failed attempt
        # Test set-up: as if the endpoint had been down for 6 days.
        hook.failing_since = utcnow() - dt.timedelta(days=6)
        session.add(hook)
    page.goto(console.url)
    search_for(page, name)
    expect(row(page, name)).to_contain_text("Failing since")  # the 24 h warning, before it is disabled
    shot(page, "failing-badge")

    assert health.disable_failing(db.get_engine(), after_seconds=5 * 86400) == [hook_id]
    page.reload()
    banner = page.get_by_role("alert", name="Disabled automatically").filter(has_text=name)
    # The reason in words; its times apart, in the viewer's zone (no UTC time inside the sentence).
    expect(banner).to_contain_text("Disabled automatically: Every attempt failed for 5 days.")
    expect(banner).not_to_contain_text("UTC")
    expect(banner).to_contain_text(re.compile(r"Disabled \d+ \w+ \d{4}, \d\d:\d\d · failing since \d+ \w+ \d{4}"))
    search_for(page, name)
    expect(row(page, name)).to_contain_text("Disabled")
    shot(page, "auto-disabled-banner")
    from tests.e2e.axe import assert_clean

    assert_clean(page, "the webhook list with an auto-disabled banner")

    banner.get_by_role("button", name="Recover failed since…").click()
    expect(page).to_have_url(re.compile(rf"/webhooks/{hook_id}\?recover=1$"))
    expect(page.get_by_role("dialog").get_by_role("heading", name="Recover failed deliveries")).to_be_visible()
    page.keyboard.press("Escape")
    page_banner = page.get_by_role("alert", name="Disabled automatically")
    expect(page_banner).to_contain_text("Every attempt failed for 5 days")
    shot(page, "auto-disabled-webhook-page")

    page.goto(console.url)
    page.get_by_role("alert", name="Disabled automatically").filter(has_text=name).get_by_role(
        "button", name="Re-enable"
    ).click()
    expect(page.get_by_text(f"Webhook “{name}” re-enabled: it receives events again.")).to_be_visible()
    expect(page.get_by_role("alert", name="Disabled automatically").filter(has_text=name)).to_have_count(0)
    search_for(page, name)
    expect(row(page, name)).to_contain_text("Live")
    expect(row(page, name)).not_to_contain_text("Failing since")
    with db.session_scope() as session:
        hook = session.get(Webhook, hook_id)
        assert (hook.status, hook.disabled_reason, hook.failing_since) == ("live", None, None)


def test_pause_then_resume_from_the_row_menu(page: Page, console, receiver, make):
    from kwik_console.events.publishing import publish

    event_type = "customer.updated"  # no other webhook of this module subscribes to it
    hook_id, name = make("Pausable", receiver.url("/ok"), events=(event_type,))
    tag = uuid.uuid4().hex[:10]
    page.goto(console.url)
    search_for(page, name)
    action(page, name, "Pause")
    expect(page.get_by_text(f"Webhook “{name}” paused")).to_be_visible()
    expect(row(page, name)).to_contain_text("Paused")

    published = [
        publish(event_type, {"object": "customer", "id": f"cus_{tag}_{n}", "n": n}).event.id for n in range(10)
    ]

    def arrived() -> list[str]:
        return [h.headers["webhook-id"] for h in receiver.requests if tag.encode() in h.body]

    # Paused: recorded and waiting, none attempted. One more event, to another webhook and made after them, has
    # the console's dispatcher look again: once it arrives, that look passed them over (none taken, none sent).
    after_id, _ = make("After the paused", receiver.url("/ok"))
    after = publish("payment.created", {"object": "payment", "id": "pay_after"}, test=True, webhook_id=after_id)
    assert receiver.wait_for(lambda reqs: any(r.headers.get("webhook-id") == after.event.id for r in reqs), timeout=30)
    assert not any(tag.encode() in r.body for r in receiver.requests)
    assert statuses(hook_id) == ["pending"] * 10
    with db.session_scope() as session:
        assert not session.exec(
            select(Delivery.id).where(Delivery.webhook_id == hook_id, Delivery.leased_by.is_not(None))
        ).all()
    action(page, name, "Resume")
    expect(page.get_by_text(f"Webhook “{name}” resumed")).to_be_visible()
    expect(row(page, name)).to_contain_text("Live")
    assert receiver.wait_for(lambda reqs: len([r for r in reqs if tag.encode() in r.body]) == 10, timeout=30)
    assert sorted(arrived()) == sorted(published)  # all of them, once each
    # Oldest first: the attempts started in the order the events occurred (several may be in flight at once,
    # so the receiver may see them finish in another order).
    from kwik_console.store.tables import Attempt

    with db.session_scope() as session:
        started = session.exec(
            select(Attempt.delivery_id, Attempt.attempted_at)
            .join(Delivery, Delivery.id == Attempt.delivery_id)
            .where(Delivery.webhook_id == hook_id)
        ).all()
    assert [d for d, _ in sorted(started, key=lambda r: (r[1], r[0]))] == sorted(d for d, _ in started)


def test_status_explained_and_the_rate_limit_in_the_form(page: Page, console, make):
    _, name = make("Rate", "https://127.0.0.1:9/rate")
    page.goto(console.url)
    search_for(page, name)
    action(page, name, "Edit")
    dialog = page.get_by_role("dialog")
    for sentence in (
        "The webhook will receive events from Kwik as they occur.",
        "Events are recorded and their deliveries wait; on resume they go out, oldest first.",
        "The webhook is inactive and no events will be sent. Scheduled retries are cancelled.",
    ):
        expect(dialog.get_by_text(sentence)).to_be_visible()
    rate = dialog.get_by_label("Max deliveries per second")
    expect(rate).to_have_value("")
    rate.fill("lots")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_text("Max deliveries per second must be a number from 0.1 to 1,000")).to_be_visible()
    expect(rate).to_have_attribute("aria-invalid", "true")
    dialog.get_by_role("radio", name="Paused").click()
    rate.fill("5")
    rate.scroll_into_view_if_needed()
    shot(page, "form-status-and-rate")
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_text(f"Webhook “{name}” saved.")).to_be_visible()
    expect(row(page, name)).to_contain_text("Paused")
    row(page, name).get_by_role("link", name=name).click()
    settings = page.get_by_role("heading", name="Settings").locator("xpath=..")
    expect(settings).to_contain_text("Max deliveries per second5")
    page.get_by_role("button", name="Edit").click()
    page.get_by_role("dialog").get_by_label("Max deliveries per second").fill("")  # empty: no limit
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    expect(settings).to_contain_text("Max deliveries per secondNo limit")


def test_the_operational_webhook_on_the_developers_page(page: Page, console, receiver):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(console.url + "/developers")
    card = page.get_by_role("heading", name="Operational webhook").locator("xpath=../..")
    expect(card).to_be_visible()
    for event_type in ("webhook.disabled", "webhook.failing", "webhook.recovered", "delivery.exhausted"):
        expect(card.get_by_text(event_type, exact=True)).to_be_visible()
    url = card.get_by_label("Operational webhook URL")
    url.fill("not a url")
    card.get_by_role("button", name="Save").click()
    expect(card.get_by_role("alert")).to_contain_text("Webhook URL")
    url.fill(receiver.url("/ok"))
    card.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Operational webhook created")).to_be_visible()
    card.get_by_role("button", name="Reveal").click()
    expect(card.get_by_label("Operational webhook signing secret")).to_have_text(
        re.compile(r"^whsec_[A-Za-z0-9+/=]{44}$")
    )
    shot(page, "operational-webhook")
    card.get_by_role("link", name="Its deliveries, on its webhook page →").click()
    expect(page).to_have_url(re.compile(r"/webhooks/\d+$"))
    expect(page.get_by_role("heading", name="Operational webhook")).to_be_visible()
    expect(page.get_by_text("This is the operational webhook")).to_be_visible()
    expect(page.get_by_role("button", name="Edit")).to_have_count(0)
    page.goto(console.url + "/developers")
    card = page.get_by_role("heading", name="Operational webhook").locator("xpath=../..")
    expect(card.get_by_label("Operational webhook URL")).to_have_value(receiver.url("/ok"))
    card.get_by_role("button", name="Remove").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Remove").click()
    expect(page.get_by_text("Operational webhook removed")).to_be_visible()
    expect(card.get_by_label("Operational webhook URL")).to_have_value("")
