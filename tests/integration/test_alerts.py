"""Alerts by email, read from a real SMTP server on 127.0.0.1 (aiosmtpd), with real deliveries to a real receiver.

The alerts' clock is driven (`Clock`): an hour passes without waiting for it.
Deliveries are real attempts (Test Webhook's path: published, attempted,
recorded with everything that moves on with them), so each alert is queued by
the same transaction that changes the webhook's state.
"""

from __future__ import annotations

import datetime as dt
import email.message
import ipaddress
import socket
import ssl
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlmodel import Session, select

from kwik_console.core import clock
from kwik_console.core.mail import MailError, parse_smtp_url
from kwik_console.core.mail import send as send_mail
from kwik_console.core.settings import SettingsError, from_env, get_settings
from kwik_console.events.publishing import publish
from kwik_console.operations import alerts, health
from kwik_console.store import db
from kwik_console.store.tables import Alert
from kwik_console.store.team_tables import Role
from kwik_console.team import audit, members
from kwik_console.webhooks import service as webhooks
from tests.conftest import TEST_SECRET_KEY, configure
from tests.factories import make_hook, send_test
from tests.integration.test_engine import run_scheduler, until
from tests.integration.test_operations import set_url
from tests.mailbox import Mailbox

ALERT_TO = "oncall@example.com, dev@example.org"
PASSWORD = "kettle orbit lantern 42"


class Clock:
    """The alerts' clock, moved on by the test: real time plus what the test made pass."""

    def __init__(self):
        self.ahead = dt.timedelta()

    def now(self) -> dt.datetime:
        return clock.utcnow() + self.ahead

    def advance(self, **delta) -> None:
        self.ahead += dt.timedelta(**delta)


@pytest.fixture
def mailbox():
    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture
def alerting(kwik, monkeypatch, mailbox):
    return configure(
        monkeypatch,
        KWIK_SMTP_URL=f"smtp://127.0.0.1:{mailbox.port}",
        KWIK_ALERT_FROM="Kwik Console <kwik@example.com>",
        KWIK_ALERT_TO=ALERT_TO,
    )


@pytest.fixture
def alert_clock(monkeypatch) -> Clock:
    moved = Clock()
    monkeypatch.setattr(alerts, "utcnow", moved.now)
    return moved


def send_alerts() -> alerts.Sent:
    """One run of the alerts job, as the scheduler runs it."""
    return alerts.send_due(db.get_engine(), get_settings())


def attempt(webhook_id: int, receiver, path: str) -> None:
    """One real attempt to the webhook, at `path` of the receiver (/ok or /fail)."""
    set_url(webhook_id, receiver.url(path))
    send_test(webhook_id)


def alert_rows() -> list[Alert]:
    with Session(db.get_engine()) as s:
        return list(s.exec(select(Alert).order_by(Alert.id)).all())


def failing_email_sent(webhook_id: int, receiver, mailbox, alert_clock) -> None:
    """The webhook fails, and an hour later the failing email goes."""
    attempt(webhook_id, receiver, "/fail")
    assert send_alerts().sent == 0  # not failing long enough yet
    alert_clock.advance(minutes=61)
    assert send_alerts().sent == 1
    assert [m["Subject"] for m in mailbox.messages] == ['[Kwik] Webhook "Orders" is failing']


# ---------------------------------------------------------------- one email per change


def test_a_webhook_failing_for_an_hour_sends_one_email_naming_it(alerting, receiver, mailbox, alert_clock):
    webhook_id = make_hook(receiver.url("/fail"), name="Orders").id
    before = clock.utcnow()
    failing_email_sent(webhook_id, receiver, mailbox, alert_clock)
    attempt(webhook_id, receiver, "/fail")  # still failing: nothing new to say
    alert_clock.advance(hours=3)
    assert send_alerts().sent == 0

    [(to, message)] = mailbox.received
    assert to == ["oncall@example.com", "dev@example.org"]
    assert message["From"] == "Kwik Console <kwik@example.com>"
    assert message["To"] == ALERT_TO
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_content()
    assert 'the webhook "Orders" has failed since' in body
    assert f"URL:        {receiver.url('/fail')}" in body
    assert "Last error: HTTP 500" in body
    assert f"Open it: http://127.0.0.1:3000/webhooks/{webhook_id}" in body
    [row] = alert_rows()
    assert (row.kind, row.state, row.tries, row.recipients) == ("failing", "sent", 1, ALERT_TO.split(", "))
    failed_at = dt.datetime.strptime(body.split("Time:")[1].strip().splitlines()[0], "%Y-%m-%d %H:%M:%S UTC")
    assert before - dt.timedelta(seconds=1) <= failed_at.replace(tzinfo=dt.UTC) <= clock.utcnow()


def test_a_blip_the_retries_absorb_sends_nothing(alerting, receiver, mailbox, alert_clock):
    webhook_id = make_hook(receiver.url("/fail"), name="Orders").id
    attempt(webhook_id, receiver, "/fail")
    alert_clock.advance(minutes=30)
    attempt(webhook_id, receiver, "/ok")  # recovered before it counted as failing
    alert_clock.advance(hours=2)
    assert send_alerts().sent == 0
    assert mailbox.received == [] and alert_rows() == []


def test_flapping_for_ten_minutes_sends_one_email_and_the_last_word_an_hour_on(
    alerting, receiver, mailbox, alert_clock
):
    webhook_id = make_hook(receiver.url("/fail"), name="Orders").id
    failing_email_sent(webhook_id, receiver, mailbox, alert_clock)
    for minute in range(10):  # ok, fail, ok, ... ending ok
        alert_clock.advance(minutes=1)
        attempt(webhook_id, receiver, "/ok" if minute % 2 == 0 else "/fail")
        send_alerts()
    alert_clock.advance(minutes=1)
    attempt(webhook_id, receiver, "/ok")
    send_alerts()
    assert len(mailbox.messages) == 1
    # The hour since the failing email passes: the webhook's state now (recovered) is said once.
    alert_clock.advance(minutes=50)
    assert send_alerts().sent == 1
    assert [m["Subject"] for m in mailbox.messages] == [
        '[Kwik] Webhook "Orders" is failing',
        '[Kwik] Webhook "Orders" has recovered',
    ]
    assert send_alerts().sent == 0


def test_recovered_sends_one_email(alerting, receiver, mailbox, alert_clock):
    webhook_id = make_hook(receiver.url("/fail"), name="Orders").id
    failing_email_sent(webhook_id, receiver, mailbox, alert_clock)
    alert_clock.advance(hours=2)
    attempt(webhook_id, receiver, "/ok")
    attempt(webhook_id, receiver, "/ok")
    assert send_alerts().sent == 1
    assert send_alerts().sent == 0
    recovered = mailbox.messages[-1]
    assert recovered["Subject"] == '[Kwik] Webhook "Orders" has recovered'
    assert "is receiving events again" in recovered.get_content()
    assert "Last error: none" in recovered.get_content()
    assert [(r.kind, r.state) for r in alert_rows()] == [("failing", "sent"), ("recovered", "sent")]


def test_disabled_by_the_console_sends_one_email_at_once(alerting, receiver, mailbox, alert_clock):
    webhook_id = make_hook(receiver.url("/fail"), name="Orders").id
    failing_email_sent(webhook_id, receiver, mailbox, alert_clock)
    alert_clock.advance(minutes=5)  # within the hour of the failing email: a disable is not held back
    disabled = health.disable_failing(db.get_engine(), after_seconds=1, now=alert_clock.now())
    assert disabled == [webhook_id]
    assert send_alerts().sent == 1
    message = mailbox.messages[-1]
    assert message["Subject"] == '[Kwik] Webhook "Orders" was disabled'
    body = message.get_content()
    assert "Kwik Console disabled the webhook" in body and "Every attempt failed" in body
    assert "Last error: HTTP 500" in body
    # A person makes it Live again (they know), and it works: no email.
    with db.session_scope() as s:
        health.resume_webhook(session=s, webhook_id=webhook_id, actor=audit.CLI)
    attempt(webhook_id, receiver, "/ok")
    alert_clock.advance(hours=2)
    assert send_alerts().sent == 0
    assert len(mailbox.messages) == 2


def test_disabled_before_the_failing_email_went_sends_only_that_one(alerting, receiver, mailbox, alert_clock):
    webhook_id = make_hook(receiver.url("/fail"), name="Orders").id
    attempt(webhook_id, receiver, "/fail")
    alert_clock.advance(seconds=5)
    assert health.disable_failing(db.get_engine(), after_seconds=1, now=alert_clock.now()) == [webhook_id]
    alert_clock.advance(hours=2)
    assert send_alerts().sent == 1
    assert [m["Subject"] for m in mailbox.messages] == ['[Kwik] Webhook "Orders" was disabled']


def test_a_webhook_deleted_before_its_alert_went_is_not_mentioned(alerting, receiver, mailbox, alert_clock):
    webhook_id = make_hook(receiver.url("/fail"), name="Orders").id
    attempt(webhook_id, receiver, "/fail")
    with db.session_scope() as s:
        webhooks.delete_webhook(session=s, webhook_id=webhook_id, actor=audit.CLI)
    alert_clock.advance(minutes=61)
    assert send_alerts().sent == 0
    assert mailbox.received == [] and alert_rows() == []


# ---------------------------------------------------------------- who gets them


def test_hosted_mode_emails_the_admins_and_the_members_who_turned_alerts_on(
    alerting, receiver, mailbox, alert_clock, monkeypatch
):
    webhook_id = make_hook(receiver.url("/fail"), name="Orders").id  # made while local: a loopback URL
    configure(
        monkeypatch,
        KWIK_MODE="hosted",
        KWIK_SECRET_KEY=TEST_SECRET_KEY,
        KWIK_PUBLIC_URL="https://kwik.example.com",
        KWIK_ALERT_TO="",
    )
    with db.session_scope() as s:
        for who, role in [("ada", Role.ADMIN), ("dev", Role.DEVELOPER), ("val", Role.VIEWER), ("vic", Role.VIEWER)]:
            link = members.invite(session=s, email=f"{who}@example.com", role=role, actor=audit.CLI)
            members.accept_link(session=s, token=link.token, password=PASSWORD, confirm=PASSWORD)
        members.invite(session=s, email="new-admin@example.com", role=Role.ADMIN, actor=audit.CLI)  # not joined
        for who in ("dev", "vic"):
            members.set_email_alerts(
                session=s, member_id=members.find_member(session=s, email=f"{who}@example.com").id, on=True
            )
        vic = members.find_member(session=s, email="vic@example.com").id
    with db.session_scope() as s:
        members.set_email_alerts(session=s, member_id=vic, on=False)  # and off again

    send_test(webhook_id)  # refused by hosted mode's address policy: a failure like any other
    alert_clock.advance(minutes=61)
    assert send_alerts().sent == 1
    [(to, message)] = mailbox.received
    assert to == ["ada@example.com", "dev@example.com"]
    assert f"Open it: https://kwik.example.com/webhooks/{webhook_id}" in message.get_content()
    assert "as an admin of this console, or because you turned on email alerts" in message.get_content()


# ---------------------------------------------------------------- a mail server that is down


def test_alerts_wait_while_the_mail_server_is_down_and_go_once_it_is_back(alerting, receiver, mailbox, alert_clock):
    """The scheduler's own job sends them, in the background, while deliveries go on."""
    mailbox.stop()
    webhook_id = make_hook(receiver.url("/fail"), name="Orders").id
    healthy = make_hook(receiver.url("/ok"), events=["payout.created"], name="Healthy").id
    publish("payment.created", {"n": 1}, wake=False)

    def alert() -> Alert | None:
        rows = alert_rows()
        return rows[0] if rows else None

    async def body(running):
        running.wake()
        assert await until(lambda: alert() is not None, timeout=20)
        alert_clock.advance(minutes=61)
        assert await until(lambda: alert().last_error is not None, timeout=20)  # a try made and recorded
        down = alert()
        assert down.state == "pending" and "connection refused" in down.last_error
        # Deliveries go on meanwhile.
        for n in range(20):
            publish("payout.created", {"n": n})
        assert await until(lambda: len(receiver.hits("/ok")) == 20, timeout=20)
        mailbox.start()
        alert_clock.advance(minutes=2)  # the next try's time
        assert await until(lambda: alert().state == "sent", timeout=30)

    run_scheduler(body)
    sent = alert()
    assert sent.tries == 2 and sent.sent_at is not None
    assert [m["Subject"] for m in mailbox.messages] == ['[Kwik] Webhook "Orders" is failing']
    assert healthy != webhook_id


def test_an_alert_is_marked_failed_after_its_tries(alerting, receiver, mailbox, alert_clock):
    mailbox.stop()
    webhook_id = make_hook(receiver.url("/fail"), name="Orders").id
    attempt(webhook_id, receiver, "/fail")
    alert_clock.advance(minutes=61)
    for wait in alerts.RETRY_AFTER:
        assert send_alerts().retrying == 1
        assert send_alerts().retrying == 0  # not yet time for the next try
        alert_clock.advance(seconds=wait.total_seconds() + 1)
    assert send_alerts().failed == 1
    [row] = alert_rows()
    assert (row.state, row.tries) == ("failed", alerts.MAX_TRIES) and "connection refused" in row.last_error
    mailbox.start()
    alert_clock.advance(days=1)
    assert send_alerts().sent == 0 and mailbox.received == []


def test_several_senders_send_each_alert_once(alerting, receiver, alert_clock, monkeypatch):
    slow = Mailbox(delay=0.3).start()  # each message takes a while: the senders overlap
    try:
        configure(monkeypatch, KWIK_SMTP_URL=f"smtp://127.0.0.1:{slow.port}")
        for n in range(6):
            attempt(make_hook(receiver.url("/fail"), name=f"Orders {n}").id, receiver, "/fail")
        alert_clock.advance(minutes=61)
        runs = []
        senders = [threading.Thread(target=lambda: runs.append(send_alerts())) for _ in range(3)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert sum(r.sent for r in runs) == 6
        assert sorted(m["Subject"] for m in slow.messages) == [
            f'[Kwik] Webhook "Orders {n}" is failing' for n in range(6)
        ]
        assert all(row.state == "sent" and row.tries == 1 for row in alert_rows())
    finally:
        slow.stop()


def test_a_claimed_alert_is_taken_over_once_its_lease_ends(alerting, receiver, mailbox, alert_clock, monkeypatch):
    webhook_id = make_hook(receiver.url("/fail"), name="Orders").id
    attempt(webhook_id, receiver, "/fail")
    alert_clock.advance(minutes=61)
    # A sender that claims the alert and dies before it speaks to the mail server.
    claimed = alerts._claim_next(db.get_engine(), alert_clock.now(), alerts.Sent())
    assert claimed is not None and claimed.tries == 1
    assert send_alerts().sent == 0  # another sender leaves it alone while the lease lasts
    alert_clock.advance(seconds=alerts.LEASE.total_seconds() + 1)
    assert send_alerts().sent == 1
    [row] = alert_rows()
    assert (row.state, row.tries) == ("sent", 2) and len(mailbox.messages) == 1


def test_a_mail_server_that_never_answers_holds_a_try_no_longer_than_its_timeout(
    alerting, receiver, alert_clock, monkeypatch
):
    with socket.socket() as hole:  # listens, never accepts: connections are made and then nothing is said
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        configure(monkeypatch, KWIK_SMTP_URL=f"smtp://127.0.0.1:{hole.getsockname()[1]}")
        monkeypatch.setattr(alerts, "TRY_TIMEOUT_SECONDS", 0.5)
        attempt(make_hook(receiver.url("/fail"), name="Orders").id, receiver, "/fail")
        alert_clock.advance(minutes=61)
        began = time.monotonic()
        assert send_alerts().retrying == 1
        took = time.monotonic() - began
    [row] = alert_rows()
    assert row.state == "pending" and "no answer in time" in row.last_error
    assert took < 10  # the try's timeout, not the operating system's (minutes)


# ---------------------------------------------------------------- TLS and passwords


def certificate_for_loopback(folder) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: (the server's context, a client's that trusts only it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kwik test mail server")])
    now = clock.utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return server, ssl.create_default_context(cadata=pem.decode())


def a_message() -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = "kwik@example.com", "oncall@example.com", "Hello"
    message.set_content("Over TLS.")
    return message


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_starttls_and_implicit_tls_carry_the_password_encrypted(tmp_path, scheme):
    server_tls, client_tls = certificate_for_loopback(tmp_path)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((mechanism, auth_data.login, auth_data.password, session.ssl is not None))
        return AuthResult(success=True)

    box = Mailbox()
    if scheme == "smtp":  # the password only after STARTTLS
        tls = {"tls_context": server_tls, "require_starttls": True, "auth_require_tls": True}
    else:  # TLS from the first byte (aiosmtpd's session does not know it, so it must not insist on STARTTLS)
        tls = {"ssl_context": server_tls, "auth_require_tls": False}
    box._controller = Controller(box, hostname="127.0.0.1", port=box.port, authenticator=authenticator, **tls)
    box._controller.start()
    try:
        server = parse_smtp_url(f"{scheme}://kwik:s%3Dcret@127.0.0.1:{box.port}")
        assert send_mail(server, a_message(), timeout=5, tls=client_tls) == []
        with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED"):  # a certificate nobody vouches for
            send_mail(server, a_message(), timeout=5)
    finally:
        box.stop()
    assert [m["Subject"] for m in box.messages] == ["Hello"]
    assert [(login, password) for _, login, password, _ in logins] == [(b"kwik", b"s=cret")]
    if scheme == "smtp":
        assert logins[0][3], "the password went before STARTTLS"


# ---------------------------------------------------------------- settings


def test_alert_settings_are_checked_at_start():
    base = {"KWIK_SMTP_URL": "smtp://u:p%40ss@mail.example.com:587", "KWIK_ALERT_FROM": "kwik@example.com"}
    local = from_env({**base, "KWIK_ALERT_TO": "a@example.com,b@example.org"})
    assert local.smtp == parse_smtp_url("smtp://u:p%40ss@mail.example.com:587")
    assert (local.smtp.password, local.smtp.starttls_required) == ("p@ss", True)
    assert local.alert_to == ("a@example.com", "b@example.org")
    assert "p@ss" not in repr(local) and "p%40ss" not in repr(local)
    assert from_env({}).smtp is None
    implicit = parse_smtp_url("smtps://mail.example.com")
    assert (implicit.port, implicit.implicit_tls) == (465, True)
    assert parse_smtp_url("smtp://127.0.0.1").port == 25
    bad = {
        "smtp URL": (
            {**base, "KWIK_SMTP_URL": "http://mail.example.com", "KWIK_ALERT_TO": "a@example.com"},
            "SMTP_URL",
        ),
        "path": ({**base, "KWIK_SMTP_URL": "smtp://mail.example.com/x", "KWIK_ALERT_TO": "a@example.com"}, "SMTP_URL"),
        "port": ({**base, "KWIK_SMTP_URL": "smtp://mail.example.com:70000", "KWIK_ALERT_TO": "a@x.org"}, "SMTP_URL"),
        "no sender": ({"KWIK_SMTP_URL": "smtp://127.0.0.1", "KWIK_ALERT_TO": "a@example.com"}, "KWIK_ALERT_FROM"),
        "bad sender": ({**base, "KWIK_ALERT_FROM": "kwik", "KWIK_ALERT_TO": "a@example.com"}, "KWIK_ALERT_FROM"),
        "no recipient": (base, "KWIK_ALERT_TO"),
        "bad recipient": ({**base, "KWIK_ALERT_TO": "a@example.com, b"}, "KWIK_ALERT_TO"),
        "hosted with ALERT_TO": (
            {**base, "KWIK_ALERT_TO": "a@example.com", "KWIK_MODE": "hosted", "KWIK_SECRET_KEY": TEST_SECRET_KEY},
            "KWIK_ALERT_TO is for local mode",
        ),
        "hosted without a public URL": (
            {**base, "KWIK_MODE": "hosted", "KWIK_SECRET_KEY": TEST_SECRET_KEY},
            "KWIK_PUBLIC_URL",
        ),
    }
    for case, (env, says) in bad.items():
        with pytest.raises(SettingsError, match=says) as refused:
            from_env(env)
        assert "p@ss" not in str(refused.value) and "p%40ss" not in str(refused.value), case


def test_the_failing_threshold_is_an_hour_or_half_the_auto_disable_time():
    assert health.failing_after(5 * 86400) == dt.timedelta(hours=1)
    assert health.failing_after(1800) == dt.timedelta(minutes=15)
    assert health.failing_after(0) == dt.timedelta(hours=1)  # auto-disable off
