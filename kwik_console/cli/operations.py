"""Operating deliveries from the command line: pause and resume, resend, recover, notices, retention.

    kwik-console webhooks pause 1
    kwik-console deliveries resend 42
    kwik-console recover start 1 --since 2025-06-01 --type payment.created --status failure
    kwik-console recover status 3 --watch
    kwik-console operational-webhook set https://ops.example.com/kwik
    kwik-console retention purge --days 30

The services record their own audit entries; the command line acts as audit.CLI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

from kwik_console.cli.output import emit, shown, table, when
from kwik_console.cli.webhooks import show_webhook
from kwik_console.core.clock import iso
from kwik_console.core.errors import InvalidInput
from kwik_console.core.settings import get_settings
from kwik_console.delivery.resend import resend
from kwik_console.events import catalog
from kwik_console.operations import health, notices, recovery, retention
from kwik_console.store.db import get_engine, session_scope
from kwik_console.store.tables import DeliveryStatus, RecoveryState
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks

# How often `recover status --watch` looks again: the job itself moves on about once a second.
WATCH_SECONDS = 1.0


# ---------------------------------------------------------------- pause and resume


def cmd_webhooks_pause(args) -> None:
    with session_scope() as session:
        webhook = health.pause_webhook(session=session, webhook_id=args.id, actor=audit.CLI)
        events = webhooks.webhook_events(session=session, webhook_id=webhook.id)
    show_webhook(args, webhook, events, secret=False)


def cmd_webhooks_resume(args) -> None:
    with session_scope() as session:
        webhook = health.resume_webhook(session=session, webhook_id=args.id, actor=audit.CLI)
        events = webhooks.webhook_events(session=session, webhook_id=webhook.id)
    show_webhook(args, webhook, events, secret=False)


# ---------------------------------------------------------------- resend


def outcome_json(delivery_id: int, outcome) -> dict:
    """A resend's outcome; `outcome` None: no attempt came back in time (it is queued and shows in the log)."""
    if outcome is None:
        return {
            "delivery_id": delivery_id,
            "attempt": None,
            "status": DeliveryStatus.PENDING.value,
            "http_code": None,
            "duration_ms": None,
            "response_body": "",
            "error": None,
            "retry_at": None,
        }
    return {
        "delivery_id": outcome.delivery_id,
        "attempt": outcome.attempt_number,
        "status": outcome.status,
        "http_code": outcome.http_code,
        "duration_ms": outcome.duration_ms,
        "response_body": outcome.response_body[:2000],
        "error": outcome.error,
        "retry_at": iso(outcome.next_attempt_at),
    }


def cmd_deliveries_resend(args) -> None:
    outcome = asyncio.run(resend(args.id, actor=audit.CLI))
    data = outcome_json(args.id, outcome)
    if outcome is None:
        text = (
            f"Resent delivery {args.id}: the attempt is queued; "
            f"see `kwik-console deliveries show {args.id}` in a moment."
        )
    else:
        code = f"HTTP {outcome.http_code}" if outcome.http_code is not None else "no HTTP code"
        text = (
            f"Resent delivery {args.id} (attempt {outcome.attempt_number}): "
            f"{DeliveryStatus(outcome.status).label}, {code}, {outcome.duration_ms} ms"
        )
        if outcome.error:
            text += f"\n  Error: {shown(outcome.error)}"
        elif outcome.response_body:
            text += f"\n  Response: {shown(outcome.response_body[:200])}"
        if outcome.next_attempt_at:
            text += f"\n  Next retry: {when(outcome.next_attempt_at)}"
    emit(args, data, text)


# ---------------------------------------------------------------- recover failed since


def parse_since(text: str) -> dt.datetime:
    """An ISO date (midnight UTC) or date-time; without an offset, UTC."""
    value = text.strip()
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            {"since": f"--since {value!r} is not a date or date-time, such as 2025-06-01 or 2025-06-01T09:30:00Z."}
        ) from None
    # In UTC, as the database gives it back: `start --json` and `status --json` then agree.
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _split(values: list[str] | None) -> list[str] | None:
    """--type a b --type c,d: every name, once given; None when none was."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _progress_line(p) -> str:
    line = (
        f"Recovery {p.id} of webhook {p.webhook_id}: {RecoveryState(p.state).label}, {p.percent}% — "
        f"{p.sent} of {p.total} sent ({p.succeeded} succeeded, {p.failed} failed), {p.queued} queued"
    )
    return line + ("" if p.queuing_done or not p.running else ", still queuing")


def _progress_text(p) -> str:
    lines = [
        _progress_line(p),
        f"  Since        {when(p.since)}",
        f"  Event types  {shown(', '.join(p.event_types)) or 'all'}",
        f"  Statuses     {', '.join(DeliveryStatus(s).label for s in p.statuses)}",
        f"  Started      {when(p.created_at)} by {shown(p.created_by)}",
    ]
    if p.finished_at:
        lines.append(f"  {RecoveryState(p.state).label:<12} {when(p.finished_at)}")
    return "\n".join(lines)


def cmd_recover_start(args) -> None:
    since = parse_since(args.since)
    with session_scope() as session:
        progress = recovery.start_recovery(
            session=session,
            webhook_id=args.webhook_id,
            since=since,
            event_types=_split(args.types),
            statuses=_split(args.statuses),
            actor=audit.CLI,
        )
    text = _progress_text(progress)
    if progress.running:
        text += (
            f"\nIt runs in `kwik-console run` or `kwik-console worker`; "
            f"follow it with `kwik-console recover status {progress.id} --watch`."
        )
    emit(args, progress.as_dict(), text)


def cmd_recover_status(args) -> None:
    def look():
        with session_scope() as session:
            return recovery.get_recovery(session=session, recovery_id=args.id)

    progress = look()
    if not args.watch:
        emit(args, progress.as_dict(), _progress_text(progress))
        return
    # One line (or one JSON object) each time the progress changes, until the recovery ends.
    shown = None
    while True:
        if progress != shown:
            print(json.dumps(progress.as_dict()) if args.json else _progress_line(progress), flush=True)
            shown = progress
        if not progress.running:
            return
        time.sleep(WATCH_SECONDS)
        progress = look()


def cmd_recover_cancel(args) -> None:
    with session_scope() as session:
        progress = recovery.cancel_recovery(session=session, recovery_id=args.id, actor=audit.CLI)
    emit(
        args,
        progress.as_dict(),
        _progress_line(progress) + "\nDeliveries it queued and has not sent yet go back to where they were.",
    )


def cmd_recover_list(args) -> None:
    with session_scope() as session:
        webhooks.get_webhook(session=session, webhook_id=args.webhook_id)  # an unknown webhook is an error
        found = recovery.list_recoveries(session=session, webhook_id=args.webhook_id)
    rows = [
        (
            p.id,
            when(p.created_at),
            RecoveryState(p.state).label,
            f"{p.percent}%",
            f"{p.sent}/{p.total}",
            p.succeeded,
            p.failed,
            when(p.since),
            p.created_by,
        )
        for p in found
    ]
    text = (
        table(["ID", "Started", "State", "Done", "Sent", "Succeeded", "Failed", "Since", "By"], rows)
        if rows
        else f"No recoveries of webhook {args.webhook_id} yet."
    )
    emit(args, [p.as_dict() for p in found], text)


# ---------------------------------------------------------------- the operational webhook (admins)


def _operational_json(webhook, *, secret: bool) -> dict:
    data = {
        "id": webhook.id,
        "url": webhook.url,
        "status": webhook.status,
        "events": catalog.operational_type_names(),
        "failing_since": iso(webhook.failing_since),
        "created_at": iso(webhook.created_at),
        "updated_at": iso(webhook.updated_at),
    }
    return data | ({"secret": webhook.secret} if secret else {})


def _operational_text(webhook) -> str:
    return "\n".join(
        [
            f"Operational webhook: {shown(webhook.url)}",
            f"  Events          {', '.join(catalog.operational_type_names())}",
            f"  Updated         {when(webhook.updated_at)}",
            f"  Signing secret  {webhook.secret}",
        ]
    )


def cmd_operational_set(args) -> None:
    with session_scope() as session:
        webhook = notices.set_operational_webhook(session=session, url=args.url, actor=audit.CLI)
    emit(args, _operational_json(webhook, secret=True), _operational_text(webhook))


def cmd_operational_show(args) -> None:
    with session_scope() as session:
        webhook = notices.operational_webhook(session=session)
    if webhook is None:
        emit(args, None, "No operational webhook: set one with `kwik-console operational-webhook set URL`.")
        return
    emit(args, _operational_json(webhook, secret=True), _operational_text(webhook))


def cmd_operational_remove(args) -> None:
    with session_scope() as session:
        removed = notices.remove_operational_webhook(session=session, actor=audit.CLI)
    emit(
        args,
        {"removed": removed},
        "Removed the operational webhook: no more notices are sent."
        if removed
        else "No operational webhook to remove.",
    )


# ---------------------------------------------------------------- retention


def cmd_retention_purge(args) -> None:
    days = get_settings().retention_days if args.days is None else retention.check_days(args.days, label="--days")
    purged = retention.purge(get_engine(), days=days)
    data = {
        "days": days,
        "cutoff": iso(purged.cutoff) if purged.cutoff else None,
        "events": purged.events,
        "deliveries": purged.deliveries,
        "attempts": purged.attempts,
        "alerts": purged.alerts,
        "batches": purged.batches,
        "longest_lock_ms": round(purged.longest_lock_ms, 1),
        "seconds": round(purged.seconds, 3),
    }
    if not days:
        text = "Retention is off (0 days): nothing was purged."
    else:
        text = (
            f"Purged {purged.events} events, {purged.deliveries} deliveries and {purged.attempts} attempts "
            f"older than {days:g} days ({when(purged.cutoff)}) in {purged.batches} batches.\n"
            f"Longest write lock: {purged.longest_lock_ms:.1f} ms."
        )
    emit(args, data, text)


# ---------------------------------------------------------------- parser


def _group(commands, name: str, help_: str):
    return commands.add_parser(name, help=help_).add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=commands._parser_class
    )


def register(commands, out, *, webhook_commands, delivery_commands) -> None:
    """Add the commands of operating deliveries (`out` is the shared --json parent; `webhook_commands` and
    `delivery_commands` are the `webhooks` and `deliveries` groups, which get pause, resume and resend)."""
    p = webhook_commands.add_parser("pause", parents=[out], help="hold deliveries back; events are still recorded")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_webhooks_pause)
    p = webhook_commands.add_parser(
        "resume", parents=[out], help="Live again (from Paused, or Disabled): what waited goes out, oldest first"
    )
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_webhooks_resume)

    p = delivery_commands.add_parser("resend", parents=[out], help="send a delivery again now and print the outcome")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_deliveries_resend)

    group = _group(commands, "recover", "recover failed deliveries since a date (a job in the database)")
    p = group.add_parser("start", parents=[out], help="queue a webhook's failed deliveries since a date again")
    p.add_argument("webhook_id", type=int)
    p.add_argument(
        "--since",
        required=True,
        metavar="DATE",
        help="ISO date or date-time, e.g. 2025-06-01 or 2025-06-01T09:30:00Z (UTC unless given)",
    )
    p.add_argument(
        "--type", dest="types", action="extend", nargs="+", metavar="TYPE", help="only these event types (default: all)"
    )
    p.add_argument(
        "--status",
        dest="statuses",
        action="extend",
        nargs="+",
        metavar="STATUS",
        type=str.lower,
        choices=["failure", "retrying"],
        help="failure (the default) and/or retrying",
    )
    p.set_defaults(func=cmd_recover_start)
    p = group.add_parser("status", parents=[out], help="a recovery's progress")
    p.add_argument("id", type=int)
    p.add_argument(
        "--watch",
        action="store_true",
        help="print each change until the recovery ends (with --json: a JSON object a line)",
    )
    p.set_defaults(func=cmd_recover_status)
    p = group.add_parser("cancel", parents=[out], help="stop a recovery; what it queued and did not send goes back")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_recover_cancel)
    p = group.add_parser("list", parents=[out], help="a webhook's recoveries, newest first")
    p.add_argument("webhook_id", type=int)
    p.set_defaults(func=cmd_recover_list)

    group = _group(commands, "operational-webhook", "where the console sends its notices about webhooks (admins)")
    p = group.add_parser("set", parents=[out], help="set (or change) the operational webhook's URL")
    p.add_argument("url")
    p.set_defaults(func=cmd_operational_set)
    group.add_parser("show", parents=[out], help="the operational webhook, with its signing secret").set_defaults(
        func=cmd_operational_show
    )
    group.add_parser("remove", parents=[out], help="remove it: no more notices").set_defaults(
        func=cmd_operational_remove
    )

    group = _group(commands, "retention", "old events, deliveries and attempts")
    p = group.add_parser("purge", parents=[out], help="purge what is older than the retention window, once")
    p.add_argument("--days", type=float, help="the window in days (default KWIK_RETENTION_DAYS)")
    p.set_defaults(func=cmd_retention_purge)
