"""Alerts by email: people are told when a webhook starts failing, is disabled by the console, and recovers.

Queued where the change happens, sent later: each alert is a row written in the
transaction that changes the webhook's state (after_record.py, health.py), so a
mail server that is slow or down never holds up a delivery. The `alerts` job
(jobs.py) sends what is due off the event loop, retries, and records each alert
as sent or failed. Only with KWIK_SMTP_URL.

One email per change, never a flood:
- "failing" falls due once the webhook has failed for `health.failing_after`
  (a blip its retries absorb says nothing), and is dropped if it recovers first;
- a newer change replaces an alert not tried yet, and a change back to what the
  last email said needs no email;
- failing and recovered, which can flap, go at most once an hour per webhook:
  a later one waits for the hour, so the last word still arrives. "Disabled"
  goes at once: only a person can make the webhook Live again, so it cannot flap.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.message
import email.utils
import logging
import threading
import time
from urllib.parse import urlsplit

from sqlalchemy import Engine, delete, func, insert, or_, select, update

from kwik_console.core import mail
from kwik_console.core.clock import utcnow
from kwik_console.core.settings import Settings, get_settings
from kwik_console.store.tables import Alert, AlertState, Attempt, Delivery, Webhook, WebhookStatus
from kwik_console.store.team_tables import Member, Role
from kwik_console.store.writes import short_write

log = logging.getLogger(__name__)

A = Alert.__table__.c
D = Delivery.__table__.c
T = Attempt.__table__.c
M = Member.__table__.c
W = Webhook.__table__.c

FAILING, DISABLED, RECOVERED = "failing", "disabled", "recovered"
# At most one failing or recovered email an hour per webhook.
SPACING = dt.timedelta(hours=1)
# One try, every step of it (connecting, TLS, each command), within this many seconds.
TRY_TIMEOUT_SECONDS = 20.0
# A claimed alert waits this long before another process may take it over: longer than any try.
LEASE = dt.timedelta(seconds=3 * TRY_TIMEOUT_SECONDS)
# The waits after each failed try: about eight hours of tries before an alert is marked failed.
RETRY_AFTER = tuple(dt.timedelta(seconds=s) for s in (60, 300, 900, 1800, 3600, 7200, 14400))
MAX_TRIES = len(RETRY_AFTER) + 1
# One run of the job sends for at most this long; the next run carries on.
RUN_BUDGET_SECONDS = 30.0


# ---------------------------------------------------------------- queued with the change


def webhook_failing(conn, row, outcome, since: dt.datetime, *, due: dt.datetime) -> None:
    """`row` (id, name, url, status) has just started failing; the email falls due at `due` if it still is."""
    settings = get_settings()
    if settings.smtp is None or row.status == WebhookStatus.DISABLED:
        return
    _drop_untried(conn, row.id)
    if _last_told(conn, row.id) == FAILING:
        return  # what the last email said is true again
    _queue(conn, settings, row, FAILING, due=due, at=since, error=_error(outcome.http_code, outcome.error))


def webhook_recovered(conn, row, *, now: dt.datetime | None = None) -> None:
    """`row` succeeded after failing: an email if people were told it failed."""
    settings = get_settings()
    if settings.smtp is None or row.status == WebhookStatus.DISABLED:
        return  # an attempt in flight when it was disabled got through: it stays disabled until a person acts
    _drop_untried(conn, row.id)
    if _last_told(conn, row.id) not in (FAILING, DISABLED):
        return  # nobody heard it was failing
    now = now or utcnow()
    _queue(conn, settings, row, RECOVERED, due=now, at=now, error=None)


def webhook_disabled(conn, row, *, reason: str, disabled_at: dt.datetime) -> None:
    """The console disabled `row` after failing too long."""
    settings = get_settings()
    if settings.smtp is None:
        return
    _drop_untried(conn, row.id)
    error = _latest_error(conn, row.id)
    _queue(conn, settings, row, DISABLED, due=utcnow(), at=disabled_at, error=error, reason=reason)


def _drop_untried(conn, webhook_id: int) -> None:
    """An alert not tried yet is replaced by the newer change (or by none)."""
    conn.execute(delete(Alert).where(A.webhook_id == webhook_id, A.state == AlertState.PENDING.value, A.tries == 0))


def _last_told(conn, webhook_id: int) -> str | None:
    """What the last email about the webhook said: sent, or on its way (tried at least once)."""
    return conn.execute(
        select(A.kind)
        .where(
            A.webhook_id == webhook_id,
            or_(A.state == AlertState.SENT.value, (A.state == AlertState.PENDING.value) & (A.tries > 0)),
        )
        .order_by(A.id.desc())
        .limit(1)
    ).scalar()


def recipients(conn, settings: Settings) -> list[str]:
    """Local mode: KWIK_ALERT_TO. Hosted: the admins, and the members who turned alerts on, once they joined."""
    if settings.local_mode:
        return list(settings.alert_to)
    wanted = (M.role == Role.ADMIN.value) | M.email_alerts.is_(True)
    return list(conn.execute(select(M.email).where(wanted, M.password_hash.is_not(None)).order_by(M.email)).scalars())


def _queue(conn, settings: Settings, row, kind: str, *, due, at, error, reason=None) -> None:
    to = recipients(conn, settings)
    if not to:
        return
    subject, body = compose(settings, row, kind, at=at, error=error, reason=reason)
    conn.execute(
        insert(Alert).values(
            webhook_id=row.id,
            kind=kind,
            recipients=to,
            subject=subject,
            body=body,
            state=AlertState.PENDING.value,
            tries=0,
            next_try_at=due,
            created_at=utcnow(),
        )
    )


def _error(http_code: int | None, error: str | None) -> str:
    return ": ".join(part for part in (f"HTTP {http_code}" if http_code else "", error or "") if part) or "no answer"


def _latest_error(conn, webhook_id: int) -> str | None:
    """The error of the webhook's latest attempt (an auto-disable comes after many)."""
    delivery_id = conn.execute(
        select(D.id).where(D.webhook_id == webhook_id, D.attempt_count > 0).order_by(D.id.desc()).limit(1)
    ).scalar()
    if delivery_id is None:
        return None
    last = conn.execute(
        select(T.http_code, T.error).where(T.delivery_id == delivery_id).order_by(T.number.desc()).limit(1)
    ).first()
    return _error(last.http_code, last.error) if last else None


_OPENINGS = {
    FAILING: "Every attempt to deliver to the webhook {name} has failed since {when}.",
    DISABLED: "Kwik Console disabled the webhook {name} at {when}. {reason} It receives nothing until it is "
    "made Live again.",
    RECOVERED: "The webhook {name} is receiving events again: an attempt succeeded at {when}.",
}
_SUBJECTS = {
    FAILING: "Webhook {name} is failing",
    DISABLED: "Webhook {name} was disabled",
    RECOVERED: "Webhook {name} has recovered",
}


def compose(settings: Settings, row, kind: str, *, at: dt.datetime, error: str | None, reason: str | None = None):
    """The subject and the plain-text body: the webhook, what happened and when, the last error, its page."""
    name = '"' + " ".join(row.name.split()) + '"'  # one line, whatever was typed
    when = at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    why = (
        "You get this email as an admin of this console, or because you turned on email alerts in your account menu."
        if not settings.local_mode
        else "Kwik Console sends these to the address in KWIK_ALERT_TO."
    )
    body = "\n".join(
        [
            _OPENINGS[kind].format(name=name, when=when, reason=reason or ""),
            "",
            f"Webhook:    {' '.join(row.name.split())}",
            f"URL:        {row.url}",
            f"Last error: {error or 'none'}",
            f"Time:       {when}",
            "",
            f"Open it: {settings.console_url}/webhooks/{row.id}",
            "",
            "-- ",
            why,
            "",
        ]
    )
    return f"[Kwik] {_SUBJECTS[kind].format(name=name)}"[:300], body


# ---------------------------------------------------------------- sent by the job


@dataclasses.dataclass
class Sent:
    """What one run of the job did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0  # out of tries
    waiting: int = 0  # put off: the hourly limit, or an earlier alert about the same webhook still on its way


@dataclasses.dataclass(frozen=True)
class _Claimed:
    id: int
    webhook_id: int
    recipients: list
    subject: str
    body: str
    tries: int
    created_at: dt.datetime


_sender: threading.Thread | None = None
_sender_lock = threading.Lock()


def start_sending(engine: Engine, settings: Settings) -> bool:
    """The alerts job's run: `send_due` on a thread of its own, unless the last one is still at it.

    The job returns at once, so the scheduler never finds it still running (a try may wait its whole
    timeout on a mail server that never answers), and the thread is a daemon: stopping the process does
    not wait for a mail server either (a try cut short is taken over when its lease ends).
    """
    global _sender
    if settings.smtp is None:
        return False
    with _sender_lock:
        if _sender is not None and _sender.is_alive():
            return False
        _sender = threading.Thread(target=_send_logged, args=(engine, settings), name="kwik-alerts", daemon=True)
        _sender.start()
    return True


def _send_logged(engine: Engine, settings: Settings) -> None:
    try:
        send_due(engine, settings)
    except Exception:  # noqa: BLE001  the job's next run tries again
        log.exception("sending alerts failed")


def send_due(engine: Engine, settings: Settings, *, now: dt.datetime | None = None, budget_seconds=None) -> Sent:
    """Send the alerts that are due, one at a time, for up to a run's budget; safe in several processes at once.

    Each is claimed first (its tries counted, its next try pushed past a lease), so one process sends it;
    the mail server is spoken to outside any transaction. An unreachable server ends the run: the others
    would fare no better, and wait for the next.
    """
    done = Sent()
    if settings.smtp is None:
        return done
    began, budget = time.monotonic(), RUN_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    while time.monotonic() - began < budget:
        claimed = _claim_next(engine, now or utcnow(), done)
        if claimed is None:
            break
        try:
            refused = mail.send(
                settings.smtp,
                _message(settings, claimed, now or utcnow()),
                timeout=TRY_TIMEOUT_SECONDS,
                local_hostname=urlsplit(settings.public_url).hostname or "localhost",
            )
        except mail.MailError as exc:
            _record_failure(engine, claimed, str(exc), now or utcnow(), done)
            if exc.unreachable:
                break
            continue
        _record(engine, claimed, state=AlertState.SENT, sent_at=now or utcnow(), last_error=_refused(refused))
        done.sent += 1
        log.info("alert %s about webhook %s sent to %d", claimed.id, claimed.webhook_id, len(claimed.recipients))
    return done


def _claim_next(engine: Engine, now: dt.datetime, done: Sent) -> _Claimed | None:
    """Take the next due alert (after putting off those that must wait), or None when nothing is due."""
    while True:
        with short_write(engine) as conn:
            due = conn.execute(
                select(A.id, A.webhook_id, A.kind, A.tries, A.next_try_at)
                .where(A.state == AlertState.PENDING.value, A.next_try_at <= now)
                .order_by(A.next_try_at, A.id)
                .limit(20)
            ).all()
            if not due:
                return None
            for row in due:
                mine = (A.id == row.id, A.state == AlertState.PENDING.value, A.tries == row.tries)
                if row.tries == 0 and conn.execute(select(W.id).where(W.id == row.webhook_id)).first() is None:
                    conn.execute(delete(Alert).where(*mine))  # deleted since: nobody needs to hear of it
                    continue
                wait = _wait_until(conn, row, now)
                if wait is not None:
                    moved = conn.execute(
                        update(Alert).where(*mine, A.next_try_at == row.next_try_at).values(next_try_at=wait)
                    )
                    done.waiting += moved.rowcount
                    continue
                taken = conn.execute(
                    update(Alert)
                    .where(*mine, A.next_try_at <= now)
                    .values(tries=row.tries + 1, next_try_at=now + LEASE)
                ).rowcount
                if taken:
                    got = conn.execute(
                        select(A.id, A.webhook_id, A.recipients, A.subject, A.body, A.tries, A.created_at).where(
                            A.id == row.id
                        )
                    ).one()
                    return _Claimed(*got)


def _wait_until(conn, row, now: dt.datetime) -> dt.datetime | None:
    """When an alert may go, if not now: after an earlier one about the webhook still on its way, and (failing,
    recovered) an hour after the last one sent."""
    ahead = conn.execute(
        select(func.max(A.next_try_at)).where(
            A.webhook_id == row.webhook_id, A.id < row.id, A.state == AlertState.PENDING.value, A.tries > 0
        )
    ).scalar()
    if ahead is not None:
        return max(_aware(ahead), now) + dt.timedelta(seconds=1)
    if row.kind == DISABLED:
        return None
    last = conn.execute(
        select(func.max(A.sent_at)).where(A.webhook_id == row.webhook_id, A.state == AlertState.SENT.value)
    ).scalar()
    if last is not None and _aware(last) + SPACING > now:
        return _aware(last) + SPACING
    return None


def _aware(value: dt.datetime) -> dt.datetime:
    """UTC, whichever way the database handed it back."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _message(settings: Settings, alert: _Claimed, now: dt.datetime) -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"] = settings.alert_from
    message["To"] = ", ".join(alert.recipients)
    message["Subject"] = alert.subject
    message["Date"] = email.utils.format_datetime(now)
    # The same on every try: a mail client shows a message that went twice once.
    domain = email.utils.parseaddr(settings.alert_from)[1].rpartition("@")[2]
    message["Message-ID"] = f"<kwik-alert-{alert.id}-{int(alert.created_at.timestamp())}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"  # no out-of-office replies
    message.set_content(alert.body)
    return message


def _refused(addresses: list[str]) -> str | None:
    return f"refused by the mail server: {', '.join(addresses)}"[:500] if addresses else None


def _record(engine: Engine, claimed: _Claimed, **values) -> None:
    with short_write(engine) as conn:
        moved = conn.execute(
            update(Alert)
            .where(A.id == claimed.id, A.tries == claimed.tries, A.state == AlertState.PENDING.value)
            .values(**{k: (v.value if isinstance(v, AlertState) else v) for k, v in values.items()})
        ).rowcount
    if not moved:
        log.warning("alert %s: taken over by another process before its try was recorded", claimed.id)


def _record_failure(engine: Engine, claimed: _Claimed, error: str, now: dt.datetime, done: Sent) -> None:
    if claimed.tries >= MAX_TRIES:
        _record(engine, claimed, state=AlertState.FAILED, last_error=error[:500])
        done.failed += 1
        log.error(
            "alert %s about webhook %s failed after %d tries: %s", claimed.id, claimed.webhook_id, claimed.tries, error
        )
        return
    _record(engine, claimed, next_try_at=now + RETRY_AFTER[claimed.tries - 1], last_error=error[:500])
    done.retrying += 1
    log.warning("alert %s about webhook %s: try %d failed: %s", claimed.id, claimed.webhook_id, claimed.tries, error)
