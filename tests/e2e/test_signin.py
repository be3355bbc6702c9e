"""Hosted mode in a real browser: the first admin, invitations, roles, the guard, the audit trail and signing out.

One hosted console (production build) and one database for the module; the tests run in order, like a team's
first day: the admin signs in with the CLI's one-time link, invites a developer and a viewer, who accept
their links; the viewer can change nothing and never receives a signing secret; the developer rotates a
secret; the admin reads it all in the audit trail, then signs out.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import subprocess
import urllib.parse

import pytest
from playwright.sync_api import Browser, Page, expect

from kwik_console.store import db
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import KWIK_CONSOLE, TEST_SECRET_KEY, configure
from tests.e2e.server import ConsoleServer

pytestmark = pytest.mark.e2e

PASSWORDS = {
    "admin": "orchid tractor 1987 lamp",
    "developer": "violet harbour 2211 moss",
    "viewer": "quiet pebble 4410 fern",
}
EMAILS = {role: f"{role}@merchant.example" for role in PASSWORDS}
shared: dict = {}


@pytest.fixture(scope="module")
def hosted_db(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('hosted') / 'kwik.db'}"


@pytest.fixture(scope="module")
def hosted(hosted_db, tmp_path_factory):
    server = ConsoleServer(
        hosted_db,
        tmp_path_factory.mktemp("hosted-logs") / "console.log",
        KWIK_MODE="hosted",
        KWIK_SECRET_KEY=TEST_SECRET_KEY,
    )
    # The address members use; http is allowed because it is loopback.
    server.env["KWIK_PUBLIC_URL"] = server.url
    server.start()
    yield server
    server.stop()


@pytest.fixture
def local_db(monkeypatch, hosted_db):
    """This test process on the console's database, to set up and check data directly."""
    configure(monkeypatch, KWIK_DATABASE_URL=hosted_db, KWIK_MODE="local", KWIK_SECRET_KEY=TEST_SECRET_KEY)
    yield
    db._engine_for.cache_clear()


def new_page(browser: Browser, frames: list[str] | None = None) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    if frames is not None:

        def on_socket(ws):
            ws.on(
                "framereceived",
                lambda payload: frames.append(
                    payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
                ),
            )
            ws.on(
                "framesent",
                lambda payload: frames.append(
                    payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
                ),
            )

        page.on("websocket", on_socket)
    return page


def accept_link(page: Page, link: str, role: str) -> None:
    page.goto(link)
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    expect(page.get_by_text(EMAILS[role])).to_be_visible()
    page.get_by_label("New password").fill(PASSWORDS[role])
    page.get_by_label("Repeat the password").fill(PASSWORDS[role])
    page.get_by_role("button", name="Set password and sign in").click()
    expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()


def sign_in(page: Page, base: str, role: str, password: str | None = None) -> None:
    page.goto(base + "/sign-in")
    page.get_by_label("Email").fill(EMAILS[role])
    page.get_by_label("Password").fill(password or PASSWORDS[role])
    page.get_by_role("button", name="Sign in").click()


def session_cookie(page: Page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "kwik_session")


def action(page: Page, name: str, item: str) -> None:
    page.get_by_role("button", name=f"Actions for {name}").click()
    page.get_by_role("menuitem", name=item).click()


def test_a_first_admin_signs_in_with_the_clis_one_time_link(browser, hosted):
    page = new_page(browser)
    page.goto(hosted.url + "/members")
    expect(page).to_have_url(re.compile(r"/sign-in/?\?next=%2Fmembers$"))  # nobody may claim the console by arriving
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    env = {**hosted.env}
    made = subprocess.run(
        [*KWIK_CONSOLE, "users", "create", "--email", EMAILS["admin"], "--role", "admin", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    link = json.loads(made.stdout)["link"]
    assert link.startswith(hosted.url + "/accept?token=")

    accept_link(page, link, "admin")
    page.get_by_role("button", name="Account menu").click()
    expect(page.get_by_role("menu")).to_contain_text(EMAILS["admin"])
    page.keyboard.press("Escape")
    shared["admin"] = page

    again = new_page(browser)
    again.goto(link)  # works once
    expect(again.get_by_role("heading", name="This link no longer works")).to_be_visible()
    again.context.close()


def test_a_wrong_password_gets_the_same_answer_as_an_unknown_email(browser, hosted):
    page = new_page(browser)
    sign_in(page, hosted.url, "admin", password="not the password at all")
    message = "That email and password don't match a member of this console."
    expect(page.get_by_role("alert")).to_have_text(message)
    page.get_by_label("Email").fill("nobody@merchant.example")
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text(message)
    page.context.close()


def test_the_admin_invites_a_developer_and_a_viewer(hosted, local_db):
    with db.session_scope() as session:  # a webhook to work on; disabled, so nothing is ever sent anywhere
        webhooks.create_webhook(
            session=session,
            data=WebhookInput(
                name="Orders service",
                url="https://orders.merchant.example/kwik",
                events=["payment.created"],
                status="disabled",
            ),
            actor=audit.CLI,
        )
    page: Page = shared["admin"]
    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members")).to_be_visible()
    for role in ("developer", "viewer"):
        page.get_by_role("button", name="Invite").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Email").fill(EMAILS[role])
        dialog.get_by_text(role.capitalize(), exact=True).click()
        dialog.get_by_role("button", name="Make invitation link").click()
        link_box = page.get_by_label("One-time link", exact=True)
        expect(link_box).to_contain_text("/accept?token=")
        shared[f"{role}_link"] = link_box.inner_text()
        page.get_by_role("button", name="Done").click()
        row = page.get_by_role("row").filter(has_text=EMAILS[role])
        expect(row).to_contain_text("Invited")
        expect(row.get_by_role("combobox")).to_have_text(role.capitalize())


def test_the_viewer_sees_and_receives_no_secret_and_a_crafted_event_is_refused(browser, hosted, local_db):
    frames: list[str] = []
    page = new_page(browser, frames)
    accept_link(page, shared["viewer_link"], "viewer")
    row = page.get_by_role("row").filter(has_text="Orders service")
    expect(row).to_be_visible()
    expect(page.get_by_role("button", name="Create")).to_have_count(0)
    expect(page.get_by_role("link", name="Members")).to_have_count(0)
    page.get_by_role("button", name="Actions for Orders service").click()
    expect(page.get_by_role("menuitem", name="View Events")).to_be_visible()
    for hidden in ("Edit", "Delete", "Test Webhook"):
        expect(page.get_by_role("menuitem", name=hidden)).to_have_count(0)
    page.get_by_role("menuitem", name="View Events").click()
    expect(page.get_by_role("heading", name="Events · Orders service")).to_be_visible()

    with db.session_scope() as session:
        webhook = webhooks.list_webhooks(session=session).items[0]
        secret_before = webhook.secret

    # Crafted from the viewer's own page: their cookie, their origin, their Reflex token, straight onto the socket.
    prefix = "reflex___state____state.kwik_console___ui___state___webhooks____"
    crafted = [
        (prefix + "webhook_form_state.open_edit", {"webhook_id": webhook.id}),
        (prefix + "webhook_form_state.toggle_secret", {}),
        (prefix + "webhook_form_state.rotate_secret", {}),
        (prefix + "delete_state.ask", {"webhook_id": webhook.id, "name": webhook.name}),
        (prefix + "delete_state.confirm", {}),
        ("reflex___state____state.setvar", {"var_name": "is_hydrated", "value": True}),
    ]
    answers = page.evaluate(
        """async (events) => {
          const url = location.origin.replace('http', 'ws') + '/_event/?EIO=4&transport=websocket&token=' +
                      sessionStorage.getItem('token');
          const ws = new WebSocket(url);
          const got = [];
          await new Promise((resolve, reject) => {
            ws.onerror = reject;
            setTimeout(resolve, 15000);  // a safety net only: normally every refusal has arrived long before
            ws.onmessage = (m) => {
              got.push(m.data);
              if (got.filter((d) => d.includes('does not allow this')).length >= events.length) resolve();
              if (m.data.startsWith('0')) ws.send('40/_event,');
              else if (m.data.startsWith('40/_event')) {
                for (const [name, payload] of events) {
                  ws.send('42/_event,' + JSON.stringify(['event', {name, payload,
                    router_data: {pathname: '/', asPath: '/', query: {}}}]));
                }
              }
            };
          });
          ws.close();
          return got;
        }""",
        [list(e) for e in crafted],
    )
    refusals = [a for a in answers if "does not allow this" in a]
    assert len(refusals) == len(crafted), answers
    with db.session_scope() as session:
        still = webhooks.get_webhook(session=session, webhook_id=webhook.id)
        assert still.secret == secret_before  # not rotated, not deleted

    page.goto(hosted.url + "/")
    expect(page.get_by_role("row").filter(has_text="Orders service")).to_be_visible()
    assert frames and any("Orders service" in f for f in frames)  # the capture works...
    assert not [f for f in frames + answers if "whsec_" in f]  # ...and never carried a signing secret
    shared["viewer_cookie"] = session_cookie(page)
    page.context.close()


def test_the_developer_reveals_and_rotates_a_secret(browser, hosted):
    page = new_page(browser)
    accept_link(page, shared["developer_link"], "developer")
    expect(page.get_by_role("link", name="Members")).to_have_count(0)
    action(page, "Orders service", "Edit")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(re.compile(r"whsec_•+"))).to_be_visible()
    dialog.get_by_role("button", name="Reveal").click()
    before = dialog.get_by_text(re.compile(r"^whsec_[A-Za-z0-9+/=]{44}$")).inner_text()
    dialog.get_by_role("button", name="Rotate").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_text("New signing secret created.", exact=False)).to_be_visible()
    after = page.get_by_role("dialog").get_by_text(re.compile(r"^whsec_")).inner_text()
    assert after != before
    page.context.close()


def test_the_admin_reads_it_all_in_the_audit_trail(hosted):
    page: Page = shared["admin"]
    page.get_by_role("link", name="Audit trail").click()
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    rows = page.get_by_role("row")
    expect(rows.filter(has_text="Secret rotated").filter(has_text=EMAILS["developer"])).to_have_count(1)
    expect(rows.filter(has_text="Secret revealed").filter(has_text=EMAILS["developer"])).to_have_count(1)
    expect(rows.filter(has_text="Member invited").filter(has_text=EMAILS["viewer"])).to_have_count(1)
    expect(rows.filter(has_text="Access refused").filter(has_text=EMAILS["viewer"]).first).to_be_visible()
    expect(rows.filter(has_text="Sign-in failed").first).to_be_visible()

    page.get_by_role("combobox", name="Member").click()
    page.get_by_role("option", name=EMAILS["developer"]).click()
    expect(rows.filter(has_text=EMAILS["admin"])).to_have_count(0)
    expect(rows.filter(has_text="Secret rotated")).to_have_count(1)
    page.get_by_role("combobox", name="Action").click()
    page.get_by_role("option", name="Signed in").click()
    expect(rows).to_have_count(2)  # header + the developer's one sign-in (through the link)


def _handshake(base: str, origin: str, cookie: str) -> int:
    parts = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request(
        "GET",
        "/_event/?EIO=4&transport=websocket&token=e2e-origin-check",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Origin": origin,
            "Cookie": f"kwik_session={cookie}",
        },
    )
    status = connection.getresponse().status
    connection.close()
    return status


def test_a_session_cookie_on_another_origins_websocket_is_refused(hosted):
    cookie = shared["viewer_cookie"]
    assert _handshake(hosted.url, "https://evil.example", cookie) == 403
    assert _handshake(hosted.url, hosted.url.replace("127.0.0.1", "localhost"), cookie) == 403
    assert _handshake(hosted.url, hosted.url, cookie) == 101  # the console's own origin still connects


def test_a_cross_site_sign_in_form_is_refused(hosted):
    parts = urllib.parse.urlsplit(hosted.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    body = urllib.parse.urlencode({"email": EMAILS["admin"], "password": PASSWORDS["admin"]})
    connection.request(
        "POST",
        "/auth/sign-in",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"},
    )
    response = connection.getresponse()
    assert response.status == 403 and "set-cookie" not in {k.lower() for k in response.headers}
    connection.close()


def test_an_export_downloads_with_the_session_cookie_only(browser, hosted):
    page = new_page(browser)
    sign_in(page, hosted.url, "viewer")  # reading the event log is enough to export it
    expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
    page.get_by_role("button", name="Actions for Orders service").click()
    page.get_by_role("menuitem", name="View Events").click()
    expect(page.get_by_role("heading", name="Events · Orders service")).to_be_visible()
    with page.expect_download() as got:
        page.get_by_role("link", name="CSV").click()
    assert open(got.value.path()).readline().startswith("time,event_id,event,status")
    href = page.get_by_role("link", name="CSV").get_attribute("href")
    page.context.close()
    parts = urllib.parse.urlsplit(hosted.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", href)  # the same link without the cookie
    assert connection.getresponse().status == 401
    connection.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 390])
def test_axe_finds_nothing_serious_on_the_hosted_pages(browser, hosted, scheme, width):
    from tests.e2e.axe import assert_clean

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
        page.goto(hosted.url + "/sign-in")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert_clean(page, f"the sign-in page ({scheme}, {width} px)")
        sign_in(page, hosted.url, "admin")
        expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
        for path, heading, shown in (
            ("/members", "Members", EMAILS["viewer"]),
            ("/audit", "Audit trail", "Signed in"),
            ("/tokens", "Access tokens", "New token"),
        ):
            page.goto(hosted.url + path)
            expect(page.get_by_role("heading", name=heading)).to_be_visible()
            expect(page.get_by_text(shown).filter(visible=True).first).to_be_visible()  # loaded
            assert page.evaluate("document.documentElement.scrollWidth") <= width, path
            assert_clean(page, f"{path} ({scheme}, {width} px)")
        page.goto(hosted.url + "/members")
        page.get_by_role("button", name="Invite").click()
        expect(page.get_by_role("dialog")).to_be_visible()
        assert_clean(page, "the Invite dialog")
        page.keyboard.press("Escape")
        if phone:  # the top bar's links, in its Menu
            page.get_by_role("button", name="Menu", exact=True).click()
            page.get_by_role("menuitem", name="Audit trail").click()
            expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    finally:
        context.close()


def test_sign_out_ends_the_session(browser, hosted):
    page: Page = shared["admin"]
    cookie = session_cookie(page)
    page.get_by_role("button", name="Account menu").click()
    page.get_by_role("menuitem", name="Sign out", exact=True).click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.goto(hosted.url + "/")
    expect(page).to_have_url(re.compile(r"/sign-in"))

    # The old cookie, presented again, opens nothing: the session record is gone.
    stale = new_page(browser)
    stale.context.add_cookies([{"name": "kwik_session", "value": cookie, "url": hosted.url}])
    stale.goto(hosted.url + "/audit")
    expect(stale).to_have_url(re.compile(r"/sign-in/?\?next=%2Faudit$"))
    stale.context.close()

    sign_in(page, hosted.url, "admin")
    expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
    page.context.close()
