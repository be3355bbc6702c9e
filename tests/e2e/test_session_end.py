"""A session's end ends what the tab holds: hosted mode on Redis, in Chromium.

An admin reveals a webhook's signing secret, makes an API access token and an invitation link; the session
is then ended from another browser ("Sign out everywhere"); the first tab drops its cookie and reloads. The
tab keeps its Reflex token (the same state in Redis), but the sign-in page it lands on receives none of what it
held: no secret, no token, no link, no webhook URL, neither on the page nor in any websocket frame. Redis never
holds the secret, the token or the link, before or after. And a crafted `next` cannot send the browser away
after signing in.
Nothing here sends a delivery: the webhook is Disabled and its host is `.invalid`.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from tests.conftest import KWIK_CONSOLE, TEST_SECRET_KEY
from tests.e2e.server import ConsoleServer

pytestmark = pytest.mark.e2e
expect.set_options(timeout=15_000)  # a loaded machine: the page's default, not expect's 5 s

REDIS_DB = 13  # a database of its own on the machine's Redis, emptied first
EMAIL = "admin@merchant.example"
PASSWORD = "orchid tractor 1987 lamp"
TAG = uuid.uuid4().hex[:6]
WEBHOOK_HOST = f"ledger-{TAG}.merchant.invalid"
SECRET_SHAPE = re.compile(r"whsec_[A-Za-z0-9+/=]{20,}")


@pytest.fixture(scope="module")
def redis_client():
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="module")
def hosted(tmp_path_factory, redis_client):
    database = f"sqlite:///{tmp_path_factory.mktemp('session-end') / 'kwik.db'}"
    server = ConsoleServer(
        database,
        tmp_path_factory.mktemp("session-end-logs") / "console.log",
        KWIK_MODE="hosted",
        KWIK_SECRET_KEY=TEST_SECRET_KEY,
        KWIK_REDIS_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
    )
    server.env["KWIK_PUBLIC_URL"] = server.url  # http is allowed because it is loopback
    server.start()
    try:
        link = json.loads(_cli(server, "users", "create", "--email", EMAIL, "--role", "admin", "--json"))["link"]
        made = _cli(
            server,
            *("webhooks", "create", "--json", "--name", f"Ledger {TAG}", "--url", f"https://{WEBHOOK_HOST}/kwik"),
            *("--events", "payment.created", "--status", "disabled"),
        )
        server.first_link, server.webhook_id = link, json.loads(made)["id"]
        yield server
    finally:
        server.stop()


def _cli(server: ConsoleServer, *args: str) -> str:
    done = subprocess.run([*KWIK_CONSOLE, *args], env=server.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def new_page(browser: Browser, frames: list[str] | None = None) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    if frames is not None:
        page.on(
            "websocket",
            lambda ws: ws.on(
                "framereceived",
                lambda payload: frames.append(
                    payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
                ),
            ),
        )
    return page


def signed_in(browser: Browser, hosted, frames: list[str] | None = None) -> Page:
    """A new browser with the admin signed in (the first time through the CLI's one-time link)."""
    page = new_page(browser, frames)
    if hosted.first_link:
        page.goto(hosted.first_link)
        page.get_by_label("New password").fill(PASSWORD)
        page.get_by_label("Repeat the password").fill(PASSWORD)
        page.get_by_role("button", name="Set password and sign in").click()
        hosted.first_link = None
    else:
        page.goto(hosted.url + "/sign-in")
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    return page


def redis_holds(client: redis.Redis, *values: str, match: str = "*") -> list[str]:
    """Which of `values` any key of the console's Redis database holds (of the keys `match` names)."""
    found = set()
    for key in client.scan_iter(match=match, count=1000):
        if client.type(key) != b"string":
            continue
        stored = client.get(key) or b""
        found |= {v for v in values if v.encode() in stored}
    return sorted(found)


def test_a_tab_whose_session_ended_elsewhere_gets_back_nothing_it_held(browser, hosted, redis_client):
    frames: list[str] = []
    page = signed_in(browser, hosted, frames)

    # An access token, shown once.
    page.goto(hosted.url + "/tokens")
    page.get_by_role("button", name="New token").click()
    page.get_by_role("dialog").get_by_label("Name").fill(f"CI {TAG}")
    page.get_by_role("button", name="Make token").click()
    token_box = page.get_by_label("Access token", exact=True)
    expect(token_box).to_have_text(re.compile(r"^kwik_[A-Za-z0-9_-]{20,}$"))
    token = token_box.inner_text()
    page.get_by_role("button", name="Done").click()

    # An invitation link, shown once.
    page.goto(hosted.url + "/members")
    page.get_by_role("button", name="Invite").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Email").fill(f"new-{TAG}@merchant.example")
    dialog.get_by_text("Viewer", exact=True).click()
    dialog.get_by_role("button", name="Make invitation link").click()
    link = page.get_by_label("One-time link", exact=True).inner_text()
    assert "/accept?token=" in link
    link_token = link.rsplit("=", 1)[1]

    # The signing secret, revealed and left on screen.
    page.goto(f"{hosted.url}/webhooks/{hosted.webhook_id}")
    expect(page.get_by_text(WEBHOOK_HOST, exact=False).first).to_be_visible()
    page.get_by_role("button", name="Reveal").click()
    secret_box = page.get_by_label("Signing secret")
    expect(secret_box).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/=]{20,}$"))
    secret = secret_box.inner_text()
    assert any(secret in f for f in frames) and any(token in f for f in frames)  # the browser did get them

    # The server forgot each once the browser had it: Redis, where the tab's state lives, never held one.
    assert redis_holds(redis_client, secret, token, link_token) == []
    hidden = page.get_by_role("button", name="Hide")
    hidden.click()  # Hide and Reveal still work with no copy on the server
    expect(secret_box).to_have_text(re.compile(r"^whsec_•+$"))
    page.get_by_role("button", name="Reveal").click()
    expect(secret_box).to_have_text(secret)
    tab_token = page.evaluate("window.sessionStorage.getItem('token')")
    assert redis_holds(redis_client, WEBHOOK_HOST, match=f"{tab_token}_*") == [WEBHOOK_HOST]  # the page's data

    # Another browser: the same admin signs out everywhere.
    other = signed_in(browser, hosted)
    other.get_by_role("button", name="Account menu").click()
    other.get_by_role("menuitem", name="Sign out everywhere").click()
    expect(other.get_by_text("You are signed out on every device.")).to_be_visible()
    other.context.close()

    # The first tab loses its cookie and reloads: the same tab token, so the same state in Redis ...
    page.context.clear_cookies()
    frames.clear()
    page.reload()
    expect(page).to_have_url(re.compile(r"/sign-in"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    # ... and once the sign-in page's own event has answered (after the hydrate), nothing it held came back.
    wait_for_frame(page, frames, f"/webhooks/{hosted.webhook_id}")
    assert page.evaluate("window.sessionStorage.getItem('token')") == tab_token
    content = page.content()
    held = (secret, token, link_token, "/accept?token=", WEBHOOK_HOST, f"Ledger {TAG}")
    for value in (*held, "whsec_"):
        assert value not in content, value
    for value in held:
        assert not [f for f in frames if value in f], value
    # Nor any webhook's secret. The frames may still hold the bare prefix: a reset of the tab's states
    # sends the code samples again, and their text names it.
    assert not [f for f in frames if SECRET_SHAPE.search(f)]
    assert redis_holds(redis_client, secret, token, link_token) == []
    # The tab's own state in Redis was reset too (the other browser's list stays until Redis expires it).
    assert redis_holds(redis_client, WEBHOOK_HOST, f"Ledger {TAG}", match=f"{tab_token}_*") == []
    page.context.close()


def wait_for_frame(page: Page, frames: list[str], text: str, tries: int = 400) -> None:
    """Until a websocket frame holding `text` has arrived (the page's events are answered in order)."""
    for _ in range(tries):
        if any(text in f for f in frames):
            return
        page.wait_for_timeout(50)  # lets Playwright deliver the frames that came in meanwhile
    raise AssertionError(f"no websocket frame with {text!r}: {frames[-5:]}")


@pytest.mark.parametrize(
    "crafted",
    ["%2F%09%2Fevil.example%2Fphish", "%2F%2F%2Fevil.example", "%2F%5Cevil.example", "%2F%252F%2Fevil.example"],
)
def test_a_crafted_next_keeps_the_browser_on_the_console(browser, hosted, crafted):
    signed_in(browser, hosted).context.close()  # the admin has a password
    page = new_page(browser)
    page.goto(f"{hosted.url}/sign-in?next={crafted}")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    assert page.url.startswith(hosted.url + "/"), page.url
    page.context.close()
