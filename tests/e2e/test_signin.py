"""Hosted mode in a real browser: the first admin, invitations, roles, the guard, the audit trail and signing out.

One hosted console (production build) and one database for the module. The team every test starts from (an
admin, a developer and a viewer with their passwords, and a webhook to work on) is made through the services
once; each test makes its own members and records beyond that, so each runs alone or in any order: an admin
signs in with the CLI's one-time link; an admin invites a developer and a viewer, who accept their links; the
viewer can change nothing and never receives a signing secret; the developer rotates a secret and turns alert
emails on and off (the console has a mail server on loopback); the admin reads the audit trail, then signs out.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import subprocess
import urllib.parse

import pytest
from playwright.sync_api import Browser, Page, expect

from kwik_console.core import settings
from kwik_console.core.errors import InvalidInput
from kwik_console.store import db
from kwik_console.team import audit, members, sessions
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import KWIK_CONSOLE, TEST_SECRET_KEY, configure
from tests.e2e.server import ConsoleServer
from tests.mailbox import Mailbox

pytestmark = pytest.mark.e2e

PASSWORDS = {
    "admin": "orchid tractor 1987 lamp",
    "developer": "violet harbour 2211 moss",
    "viewer": "quiet pebble 4410 fern",
}
EMAILS = {role: f"{role}@merchant.example" for role in PASSWORDS}
WEBHOOK = "Orders service"
API_KEY = "sk_live_orders_9f3a"  # the team webhook's custom header value: developers and admins only


@pytest.fixture(scope="module", autouse=True)
def patient_expectations():
    """A state's first load can take seconds on a loaded machine: expectations wait as long as actions do."""
    expect.set_options(timeout=15_000)
    yield
    expect.set_options(timeout=5_000)  # Playwright's own


@pytest.fixture(scope="module")
def hosted_db(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('hosted') / 'kwik.db'}"


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def hosted(hosted_db, mailbox, tmp_path_factory):
    server = ConsoleServer(
        hosted_db,
        tmp_path_factory.mktemp("hosted-logs") / "console.log",
        KWIK_MODE="hosted",
        KWIK_SECRET_KEY=TEST_SECRET_KEY,
        # A mail server on loopback: members are offered alert emails.
        KWIK_SMTP_URL=f"smtp://127.0.0.1:{mailbox.port}",
        KWIK_ALERT_FROM="Kwik Console <kwik@merchant.example>",
    )
    # The address members use; http is allowed because it is loopback.
    server.env["KWIK_PUBLIC_URL"] = server.url
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def on_the_consoles_database(hosted_db: str, monkeypatch: pytest.MonkeyPatch):
    """This test process on the console's database, to set up and check data directly."""
    configure(monkeypatch, KWIK_DATABASE_URL=hosted_db, KWIK_MODE="local", KWIK_SECRET_KEY=TEST_SECRET_KEY)
    try:
        yield
    finally:
        db._engine_for.cache_clear()
        settings.get_settings.cache_clear()


@pytest.fixture(scope="module")
def team(hosted, hosted_db) -> dict[str, int]:
    """An admin, a developer and a viewer with their passwords, and a webhook to work on (disabled, so nothing
    is ever sent anywhere): member ids by role, and the webhook's as "webhook"."""
    with pytest.MonkeyPatch.context() as monkeypatch, on_the_consoles_database(hosted_db, monkeypatch):
        made = {}
        with db.session_scope() as session:
            for role, password in PASSWORDS.items():
                link = members.invite(session=session, email=EMAILS[role], role=role, actor=audit.CLI)
                made[role] = members.accept_link(
                    session=session, token=link.token, password=password, confirm=password
                ).id
            made["webhook"] = webhooks.create_webhook(
                session=session,
                data=WebhookInput(
                    name=WEBHOOK,
                    url="https://orders.merchant.example/kwik",
                    events=["payment.created"],
                    status="disabled",
                    headers={"X-Api-Key": API_KEY},  # a custom header's value is often a secret
                ),
                actor=audit.CLI,
            ).id
    return made


@pytest.fixture
def local_db(monkeypatch, hosted_db):
    with on_the_consoles_database(hosted_db, monkeypatch):
        yield


def trail(email: str, action: str) -> int:
    """How many entries of the audit trail `email` has for `action`."""
    with db.session_scope() as session:
        return len(audit.list_entries(session=session, actor_email=email, action=action, limit=500).items)


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


def accept_link(page: Page, link: str, email: str, password: str) -> None:
    page.goto(link)
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    expect(page.get_by_text(email)).to_be_visible()
    page.get_by_label("New password").fill(password)
    page.get_by_label("Repeat the password").fill(password)
    page.get_by_role("button", name="Set password and sign in").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()


def sign_in(page: Page, base: str, role: str, password: str | None = None) -> None:
    page.goto(base + "/sign-in")
    page.get_by_label("Email").fill(EMAILS[role])
    page.get_by_label("Password").fill(password or PASSWORDS[role])
    page.get_by_role("button", name="Sign in").click()


def signed_in(browser: Browser, base: str, role: str, frames: list[str] | None = None) -> Page:
    """A new page with `role`'s member of the team signed in, on the webhook list."""
    page = new_page(browser, frames)
    sign_in(page, base, role)
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    return page


def session_cookie(page: Page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "kwik_session")


def action(page: Page, name: str, item: str) -> None:
    page.get_by_role("button", name=f"Actions for {name}").click()
    page.get_by_role("menuitem", name=item).click()


def test_a_first_admin_signs_in_with_the_clis_one_time_link(browser, hosted):
    owner, password = "owner@merchant.example", "saffron kettle 5521 dune"
    page = new_page(browser)
    page.goto(hosted.url + "/members")
    expect(page).to_have_url(re.compile(r"/sign-in/?\?next=%2Fmembers$"))  # nobody may claim the console by arriving
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    env = {**hosted.env}
    made = subprocess.run(
        [*KWIK_CONSOLE, "users", "create", "--email", owner, "--role", "admin", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    link = json.loads(made.stdout)["link"]
    assert link.startswith(hosted.url + "/accept?token=")

    accept_link(page, link, owner, password)
    page.get_by_role("button", name="Account menu").click()
    expect(page.get_by_role("menu")).to_contain_text(owner)
    page.keyboard.press("Escape")
    page.context.close()

    again = new_page(browser)
    again.goto(link)  # works once
    expect(again.get_by_role("heading", name="This link no longer works")).to_be_visible()
    again.context.close()


def test_a_member_turns_alert_emails_on_and_off_and_an_admin_always_gets_them(browser, hosted, team, local_db):
    def email_alerts() -> bool:
        with db.session_scope() as session:
            return members.get_member(session=session, member_id=team["developer"]).email_alerts

    page = signed_in(browser, hosted.url, "developer")
    page.get_by_role("button", name="Account menu").click()
    toggle = page.get_by_role("menuitemcheckbox", name="Email me alerts")
    expect(toggle).to_have_attribute("aria-checked", "false")
    toggle.click()
    expect(page.get_by_text("You will get alert emails.")).to_be_visible()
    assert email_alerts()

    page.reload()  # read back from the member, not kept by the tab
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    page.get_by_role("button", name="Account menu").click()
    expect(toggle).to_have_attribute("aria-checked", "true")
    toggle.click()
    expect(page.get_by_text("Alert emails turned off.")).to_be_visible()
    assert not email_alerts()
    page.context.close()

    admin = signed_in(browser, hosted.url, "admin")
    admin.get_by_role("button", name="Account menu").click()
    expect(admin.get_by_role("menuitem", name="Alert emails: always, as an admin")).to_be_disabled()
    expect(admin.get_by_role("menuitemcheckbox")).to_have_count(0)
    admin.context.close()


def test_a_wrong_password_gets_the_same_answer_as_an_unknown_email(browser, hosted, team):
    page = new_page(browser)
    sign_in(page, hosted.url, "admin", password="not the password at all")
    message = "That email and password don't match a member of this console."
    expect(page.get_by_role("alert")).to_have_text(message)
    # The email is kept, and never in the address the server sees; only the password is typed again.
    expect(page.get_by_label("Email")).to_have_value(EMAILS["admin"])
    expect(page.get_by_label("Password")).to_be_focused()
    assert EMAILS["admin"] not in page.url and "merchant.example" not in page.url
    page.get_by_label("Email").fill("nobody@merchant.example")
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text(message)
    page.context.close()


def test_the_admin_invites_a_developer_and_a_viewer_who_accept_their_links(browser, hosted, team):
    page = signed_in(browser, hosted.url, "admin")
    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members")).to_be_visible()
    invited = {role: f"{role}-joining@merchant.example" for role in ("developer", "viewer")}  # no other's name in it
    links = {}
    for role, email in invited.items():
        page.get_by_role("button", name="Invite", exact=True).click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Email").fill(email)
        dialog.get_by_text(role.capitalize(), exact=True).click()
        dialog.get_by_role("button", name="Make invitation link").click()
        link_box = page.get_by_label("One-time link", exact=True)
        expect(link_box).to_contain_text("/accept?token=")
        links[role] = link_box.inner_text()
        page.get_by_role("button", name="Done").click()
        row = page.get_by_role("row").filter(has_text=email)
        expect(row).to_contain_text("Invited")
        expect(row.get_by_role("combobox")).to_have_text(role.capitalize())
    page.context.close()

    for role, email in invited.items():
        joining = new_page(browser)
        accept_link(joining, links[role], email, PASSWORDS[role])
        # Signed in with the role they were given: only a developer may create a webhook.
        expect(joining.get_by_role("button", name="Create")).to_have_count(1 if role == "developer" else 0)
        joining.context.close()


def test_the_viewer_sees_and_receives_no_secret_and_a_crafted_event_is_refused(browser, hosted, team, local_db):
    refused_before = trail(EMAILS["viewer"], "access.refused")
    frames: list[str] = []
    page = signed_in(browser, hosted.url, "viewer", frames)
    row = page.get_by_role("row").filter(has_text=WEBHOOK)
    expect(row).to_be_visible()
    expect(page.get_by_role("button", name="Create")).to_have_count(0)
    expect(page.get_by_role("link", name="Members")).to_have_count(0)
    page.get_by_role("button", name=f"Actions for {WEBHOOK}").click()
    expect(page.get_by_role("menuitem", name="View Events")).to_be_visible()
    for hidden in ("Edit", "Delete", "Test Webhook"):
        expect(page.get_by_role("menuitem", name=hidden)).to_have_count(0)
    page.get_by_role("menuitem", name="View Events").click()
    expect(page.get_by_role("heading", name=f"Events · {WEBHOOK}")).to_be_visible()

    with db.session_scope() as session:
        webhook = webhooks.get_webhook(session=session, webhook_id=team["webhook"])
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
    assert trail(EMAILS["viewer"], "access.refused") > refused_before  # in the audit trail

    page.goto(hosted.url + "/")
    expect(page.get_by_role("row").filter(has_text=WEBHOOK)).to_be_visible()
    assert frames and any(WEBHOOK in f for f in frames)  # the capture works...
    assert not [f for f in frames + answers if "whsec_" in f]  # ...and never carried a signing secret

    page.goto(f"{hosted.url}/webhooks/{webhook.id}")  # its custom header: the name, and the value hidden
    expect(page.get_by_text("X-Api-Key")).to_be_visible()
    expect(page.get_by_text("••••••••").first).to_be_visible()
    assert not [f for f in frames + answers if API_KEY in f]
    page.context.close()


def test_the_developer_reveals_and_rotates_a_secret(browser, hosted, team, local_db):
    before = {action: trail(EMAILS["developer"], action) for action in ("secret.revealed", "secret.rotated")}
    page = signed_in(browser, hosted.url, "developer")
    expect(page.get_by_role("link", name="Members")).to_have_count(0)
    action(page, WEBHOOK, "Edit")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(re.compile(r"whsec_•+"))).to_be_visible()
    dialog.get_by_role("button", name="Reveal").click()
    revealed = dialog.get_by_text(re.compile(r"^whsec_[A-Za-z0-9+/=]{44}$")).inner_text()
    dialog.get_by_role("button", name="Rotate").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_text("New signing secret created.", exact=False)).to_be_visible()
    after = page.get_by_role("dialog").get_by_text(re.compile(r"^whsec_")).inner_text()
    assert after != revealed
    page.context.close()
    # Each in the audit trail, once, in the developer's name.
    assert {action: trail(EMAILS["developer"], action) - n for action, n in before.items()} == {
        "secret.revealed": 1,
        "secret.rotated": 1,
    }


INVITEE = "audited-newcomer@merchant.example"


def test_the_admin_reads_the_audit_trail_and_filters_it(browser, hosted, team, local_db):
    # What the trail is to show, done here through the services as the members would.
    developer = audit.Actor(team["developer"], EMAILS["developer"])
    with db.session_scope() as session:
        webhooks.reveal_secret(session=session, webhook_id=team["webhook"], actor=developer)
        webhooks.rotate_secret(session=session, webhook_id=team["webhook"], actor=developer)
        members.sign_in(session=session, email=EMAILS["developer"], password=PASSWORDS["developer"], address="::1")
        members.invite(session=session, email=INVITEE, role="viewer", actor=audit.Actor(team["admin"], EMAILS["admin"]))
        audit.record(
            session=session,
            actor=audit.Actor(team["viewer"], EMAILS["viewer"]),
            action="access.refused",
            target="WebhookFormState.rotate_secret",
        )
    with pytest.raises(InvalidInput), db.session_scope() as session:
        members.sign_in(session=session, email="nobody@merchant.example", password="not a password", address="::1")
    rotated, signed_in_count = (
        trail(EMAILS["developer"], "secret.rotated"),
        trail(EMAILS["developer"], "sign_in.succeeded"),
    )

    page = signed_in(browser, hosted.url, "admin")
    page.get_by_role("link", name="Audit trail").click()
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    rows = page.get_by_role("row")
    expect(rows.filter(has_text="Secret rotated").filter(has_text=EMAILS["developer"]).first).to_be_visible()
    expect(rows.filter(has_text="Secret revealed").filter(has_text=EMAILS["developer"]).first).to_be_visible()
    expect(rows.filter(has_text="Member invited").filter(has_text=INVITEE).first).to_be_visible()
    expect(rows.filter(has_text="Access refused").filter(has_text=EMAILS["viewer"]).first).to_be_visible()
    expect(rows.filter(has_text="Sign-in failed").first).to_be_visible()
    # Details a person reads: times in the viewer's zone, in the console's one form; no None, no raw ISO text.
    invited = rows.filter(has_text="Member invited").filter(has_text=INVITEE).first
    expect(invited).to_contain_text(re.compile(r"link expires: \d+ \w+ \d{4}, \d\d:\d\d:\d\d"))
    rotated_row = rows.filter(has_text="Secret rotated").filter(has_text=EMAILS["developer"]).first
    expect(rotated_row).to_contain_text(re.compile(r"previous secret signs until: \d+ \w+ \d{4}"))
    for entry in (invited, rotated_row):
        expect(entry).not_to_contain_text("None")
        expect(entry).not_to_contain_text(re.compile(r"\d{4}-\d\d-\d\dT"))

    page.get_by_role("combobox", name="Member").click()
    page.get_by_role("option", name=EMAILS["developer"], exact=True).click()
    expect(rows.filter(has_text=EMAILS["admin"])).to_have_count(0)
    expect(rows.filter(has_text="Secret rotated")).to_have_count(rotated)
    page.get_by_role("combobox", name="Action").click()
    page.get_by_role("option", name="Signed in").click()
    expect(rows).to_have_count(1 + signed_in_count)  # the header, and each of the developer's sign-ins
    page.context.close()


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


def test_a_session_cookie_on_another_origins_websocket_is_refused(hosted, team, local_db):
    with db.session_scope() as session:
        cookie = sessions.open_session(
            session=session, member=members.get_member(session=session, member_id=team["viewer"])
        )
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


def test_an_export_downloads_with_the_session_cookie_only(browser, hosted, team):
    page = signed_in(browser, hosted.url, "viewer")  # reading the event log is enough to export it
    page.get_by_role("button", name=f"Actions for {WEBHOOK}").click()
    page.get_by_role("menuitem", name="View Events").click()
    expect(page.get_by_role("heading", name=f"Events · {WEBHOOK}")).to_be_visible()
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
def test_axe_finds_nothing_serious_on_the_hosted_pages(browser, hosted, team, scheme, width):
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
        expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
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
        page.get_by_role("button", name="Invite", exact=True).click()
        expect(page.get_by_role("dialog")).to_be_visible()
        assert_clean(page, "the Invite dialog")
        page.keyboard.press("Escape")
        if phone:  # the top bar's links, in its Menu
            page.get_by_role("button", name="Menu", exact=True).click()
            page.get_by_role("menuitem", name="Audit trail").click()
            expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    finally:
        context.close()


def test_sign_out_ends_the_session(browser, hosted, team):
    page = signed_in(browser, hosted.url, "admin")
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
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    page.context.close()
