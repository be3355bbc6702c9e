"""The `kwik-console` command: run the console or the worker, manage webhooks, publish events, read deliveries.

Tables for people; `--json` for machines. Bad input, including a bad setting
or a malformed KWIK_DATABASE_URL, prints one line to stderr and exits with
status 2; a database that cannot be reached prints one line and exits with
status 1, since trying again later may work. Text for people never carries raw
control characters from stored data: they are shown escaped (`\x1b`, `\n`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from kwik_console.events import catalog, deliveries
from kwik_console.webhooks import service as webhooks
from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.events.publishing import DATA_MAX_DEPTH_MESSAGE
from kwik_console.store.tables import Delivery, DeliveryStatus, Webhook, WebhookStatus
from kwik_console.core.settings import SettingsError, get_settings
from kwik_console.runtime import wiring


class UsageError(Exception):
    """Bad command-line input."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see {self.prog} --help)")


# ---------------------------------------------------------------- output


def _shown(value: Any) -> str:
    """Text safe for a terminal: control characters (ANSI escapes, newlines, ...) escaped, not obeyed.

    Data stored before names were checked, or sent back by an endpoint, may hold them.
    """
    text = "" if value is None else str(value)
    escape = lambda m: ascii(m.group())[1:-1]  # noqa: E731
    return webhooks.LONE_SURROGATE.sub(escape, webhooks.CONTROL_CHARACTERS.sub(escape, text))


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value else None


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_shown(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _webhook_json(webhook: Webhook, events: list[str] | None = None, *, secret: bool = False) -> dict:
    data = {
        "id": webhook.id,
        "name": webhook.name,
        "url": webhook.url,
        "status": webhook.status,
        "max_per_second": webhook.max_per_second,
        "failing_since": _iso(webhook.failing_since),
        "disabled_reason": webhook.disabled_reason,
        "disabled_at": _iso(webhook.disabled_at),
        "created_at": _iso(webhook.created_at),
        "updated_at": _iso(webhook.updated_at),
    }
    if events is not None:
        data["events"] = events
    if secret:
        data["secret"] = webhook.secret
    return data


def _delivery_json(d: Delivery) -> dict:
    return {
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "http_code": d.last_http_code,
        "test": d.test,
        "retry_at": _iso(d.retry_at),
        "retry_counter": d.retry_counter,
        "created_at": _iso(d.created_at),
    }


def _emit(args, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


# ---------------------------------------------------------------- commands


def _session():
    from kwik_console.store.db import session_scope

    return session_scope()


def _split_events(text: str | None) -> list[str] | None:
    return None if text is None else [e.strip() for e in text.split(",") if e.strip()]


def _rate(webhook: Webhook) -> str:
    return f"{webhook.max_per_second:g}" if webhook.max_per_second else "no limit"


def _health_lines(webhook: Webhook) -> list[str]:
    """The banner's words: failing since when, and why the console disabled it."""
    lines = []
    if webhook.failing_since:
        lines.append(f"  Failing since   {_when(webhook.failing_since)}")
    if webhook.status == WebhookStatus.DISABLED and webhook.disabled_reason:
        lines.append(f"  Disabled        {_when(webhook.disabled_at)}: {_shown(webhook.disabled_reason)}")
    return lines


def _show_webhook(args, webhook: Webhook, events: list[str], *, secret: bool) -> None:
    text = "\n".join(
        [
            f"Webhook {webhook.id}: {_shown(webhook.name)}",
            f"  Webhook URL     {_shown(webhook.url)}",
            f"  Status          {WebhookStatus(webhook.status).label}",
            f"  Max per second  {_rate(webhook)}",
            f"  Events          {_shown(', '.join(events))}",
            f"  Created         {_when(webhook.created_at)}",
        ]
        + _health_lines(webhook)
        + ([f"  Signing secret  {webhook.secret}"] if secret else [])
    )
    _emit(args, _webhook_json(webhook, events, secret=secret), text)


def cmd_webhooks_list(args) -> None:
    with _session() as session:
        page = webhooks.list_webhooks(session=session, search=args.search, page=args.page)
    rows = [(w.id, _when(w.created_at), w.name, w.url, WebhookStatus(w.status).label,
             f"{w.max_per_second:g}" if w.max_per_second else "", _when(w.failing_since)) for w in page.items]
    text = (_table(["ID", "Created", "Name", "Webhook URL", "Status", "Max/s", "Failing since"], rows)
            if rows else "No webhooks yet.")
    # Why the console disabled a webhook is too long for a column: a line each, under the table.
    text += "".join(f"\nWebhook {w.id} disabled {_when(w.disabled_at)}: {_shown(w.disabled_reason)}"
                    for w in page.items if w.status == WebhookStatus.DISABLED and w.disabled_reason)
    if rows and page.pages > 1:
        text += f"\nPage {page.page} of {page.pages} ({page.total} webhooks)"
    _emit(args, {"items": [_webhook_json(w) for w in page.items], "total": page.total, "page": page.page}, text)


def cmd_webhooks_show(args) -> None:
    with _session() as session:
        webhook = webhooks.get_webhook(session=session, webhook_id=args.id)
        events = webhooks.webhook_events(session=session, webhook_id=args.id)
    _show_webhook(args, webhook, events, secret=True)


def cmd_webhooks_create(args) -> None:
    data = webhooks.WebhookInput(name=args.name, url=args.url, events=_split_events(args.events), status=args.status,
                                 max_per_second=_max_per_second(args.max_per_second))
    with _session() as session:
        webhook = webhooks.create_webhook(session=session, data=data)
        events = webhooks.webhook_events(session=session, webhook_id=webhook.id)
    _show_webhook(args, webhook, events, secret=True)


def _max_per_second(text: str | None) -> str | None:
    """--max-per-second: a number; "" or "none" for no limit (on update: removes it); absent: unchanged."""
    if text is None:
        return None
    return "" if text.strip().lower() in ("", "none") else text


def cmd_webhooks_update(args) -> None:
    data = webhooks.WebhookInput(name=args.name, url=args.url, events=_split_events(args.events), status=args.status,
                                 max_per_second=_max_per_second(args.max_per_second))
    if data == webhooks.WebhookInput():
        raise UsageError("nothing to change: give --name, --url, --events, --status or --max-per-second")
    with _session() as session:
        webhook = webhooks.update_webhook(session=session, webhook_id=args.id, data=data)
        events = webhooks.webhook_events(session=session, webhook_id=webhook.id)
    _show_webhook(args, webhook, events, secret=False)


def cmd_webhooks_delete(args) -> None:
    with _session() as session:
        webhook = webhooks.get_webhook(session=session, webhook_id=args.id)
        name = webhook.name
        webhooks.delete_webhook(session=session, webhook_id=args.id)
    _emit(args, {"id": args.id, "deleted": True}, f"Deleted webhook {args.id} ({_shown(name)}).")


def cmd_webhooks_rotate(args) -> None:
    with _session() as session:
        webhook = webhooks.rotate_secret(session=session, webhook_id=args.id)
        still_signing = webhooks.previous_secrets(session=session, webhook_id=args.id)
    replaced = still_signing[0]  # the secret this rotation replaced: the newest
    text = (f"New signing secret for webhook {webhook.id}: {webhook.secret}\n"
            f"The previous secret also signs until {_when(replaced.expires_at)}.")
    if len(still_signing) > 1:
        text += f"\nOlder secrets still signing: {len(still_signing) - 1} (each for 24 h after it was replaced)."
    _emit(
        args,
        {"id": webhook.id, "secret": webhook.secret,
         "previous_secret_expires_at": _iso(replaced.expires_at),
         "previous_secrets_expire_at": [_iso(p.expires_at) for p in still_signing]},
        text,
    )


def cmd_events_types(args) -> None:
    rows = [(t.name, t.description) for t in catalog.EVENT_TYPES.values()]
    _emit(args, [{"type": n, "description": d} for n, d in rows], _table(["Event", "Description"], rows))


def cmd_events_publish(args) -> None:
    from kwik_console.delivery import scheduler
    from kwik_console.events.publishing import publish

    if args.data is not None and args.sample:
        raise UsageError("give --data or --sample, not both")
    if args.data is not None:
        try:
            data = json.loads(args.data)
        except json.JSONDecodeError as exc:
            raise InvalidInput({"data": f"--data is not valid JSON: {exc.msg} at column {exc.colno}"}) from None
        except RecursionError:  # the parser gives up long before memory does
            raise InvalidInput({"data": DATA_MAX_DEPTH_MESSAGE}) from None
    elif catalog.is_event_type(args.type):
        data = catalog.sample_data(args.type)
    else:
        data = {}
    published = publish(args.type, data, test=args.test, webhook_id=args.webhook, wake=False)
    outcomes = asyncio.run(scheduler.deliver_now(published.delivery_ids)) if published.delivery_ids else []
    rows = [
        (o.delivery_id, DeliveryStatus(o.status).label, o.http_code, f"{o.duration_ms} ms",
         o.error or o.response_body[:60].replace("\n", " "))
        for o in outcomes
    ]
    text = f"Published {published.event.id} ({args.type}) to {len(published.delivery_ids)} webhook(s)."
    if rows:
        text += "\n" + _table(["Delivery", "Status", "HTTP Code", "Duration", "Response"], rows)
    _emit(
        args,
        {"event_id": published.event.id, "type": args.type, "test": args.test,
         "deliveries": [
             {"id": o.delivery_id, "status": o.status, "http_code": o.http_code, "duration_ms": o.duration_ms,
              "error": o.error, "retry_at": _iso(o.next_attempt_at)} for o in outcomes]},
        text,
    )


def cmd_deliveries_list(args) -> None:
    with _session() as session:
        page = deliveries.list_deliveries(
            session=session, webhook_id=args.webhook, status=args.status, before_id=args.before, limit=args.limit
        )
    rows = [
        (d.id, d.webhook_id, f"{d.event_type} {d.event_id}", DeliveryStatus(d.status).label, d.last_http_code,
         "yes" if d.test else "no",
         _when(d.retry_at), d.retry_counter)
        for d in page.items
    ]
    text = _table(["ID", "Webhook", "Event", "Status", "HTTP Code", "Test Event", "Retry Timestamp",
                   "Retry Counter"], rows) if rows else "No deliveries."
    if page.next_before_id:
        text += f"\nMore: --before {page.next_before_id}"
    _emit(args, {"items": [_delivery_json(d) for d in page.items], "next_before": page.next_before_id}, text)


def cmd_deliveries_show(args) -> None:
    with _session() as session:
        detail = deliveries.get_delivery(session=session, delivery_id=args.id)
    d = detail.delivery
    lines = [
        f"Delivery {d.id}: {d.event_type} {d.event_id} to webhook {d.webhook_id} ({_shown(detail.webhook.name)})",
        f"  Status           {DeliveryStatus(d.status).label}",
        f"  Test Event       {'yes' if d.test else 'no'}",
        f"  Retry Timestamp  {_when(d.retry_at)}",
        f"  Retry Counter    {d.retry_counter}",
        "",
    ]
    rows = [(a.number, _when(a.attempted_at), a.http_code, f"{a.duration_ms} ms",
             a.error or a.response_body[:60].replace("\n", " ")) for a in detail.attempts]
    lines.append(_table(["Attempt", "Time", "HTTP Code", "Duration", "Response / error"], rows)
                 if rows else "No attempts yet.")
    data = _delivery_json(d) | {
        "payload": json.loads(detail.event.body),
        "attempts": [
            {"number": a.number, "attempted_at": _iso(a.attempted_at), "http_code": a.http_code,
             "duration_ms": a.duration_ms, "request_headers": a.request_headers,
             "response_headers": a.response_headers, "response_body": a.response_body, "error": a.error}
            for a in detail.attempts
        ],
    }
    _emit(args, data, "\n".join(lines))


def cmd_worker(args) -> None:
    from kwik_console.runtime import launch
    from kwik_console.delivery import scheduler

    if args.processes < 1:
        raise UsageError("--processes must be 1 or more")

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # More processes share the work through the database's leases, each on a core of its own.
        helpers = [launch.start_helper_worker() for _ in range(args.processes - 1)]
        try:
            async with scheduler.running() as running:
                print("Kwik worker running: delivering webhooks until stopped (Ctrl+C).", flush=True)
                await stop.wait()
        finally:
            await asyncio.to_thread(launch.stop_helper_workers, helpers)
        print(f"Kwik worker stopped after {running.dispatcher.attempts_recorded} attempts.", flush=True)

    from kwik_console.core import logs

    logs.configure()  # KWIK_LOG_FORMAT: text or JSON lines, on stderr
    from kwik_console.store.db import get_engine

    get_engine()  # schema first, so a bad database URL fails before we say we're running
    asyncio.run(work())


def cmd_run(args) -> None:
    from kwik_console.runtime import launch

    raise SystemExit(launch.run_console(dev=args.dev, port=args.port, host=args.host, workers=args.workers))


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    out = _Parser(add_help=False)
    out.add_argument("--json", action="store_true", help="print JSON for machines")

    parser = _Parser(prog="kwik-console", description="Kwik Console: webhooks for Kwik merchants.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="start the console (with the delivery scheduler)")
    run.add_argument("--dev", action="store_true", help="hot reload for development")
    run.add_argument("--port", type=int, default=3000, help="port to serve on (default 3000)")
    run.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1; 0.0.0.0 to serve a network)")
    run.add_argument("--workers", type=int, default=1,
                     help="console processes serving the port (default 1; above 1 needs KWIK_REDIS_URL)")
    run.set_defaults(func=cmd_run)

    worker = commands.add_parser("worker", help="run the delivery dispatcher only, until SIGINT or SIGTERM")
    worker.add_argument("--processes", type=int, default=1,
                        help="dispatcher processes to run (default 1); they share the work through the database")
    worker.set_defaults(func=cmd_worker)

    wh = commands.add_parser("webhooks", help="manage webhooks").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    p = wh.add_parser("list", parents=[out], help="list webhooks, newest first")
    p.add_argument("--search", help="match name or URL")
    p.add_argument("--page", type=int, default=1)
    p.set_defaults(func=cmd_webhooks_list)
    p = wh.add_parser("show", parents=[out], help="show one webhook, with its signing secret")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_webhooks_show)
    for name, func, help_ in (("create", cmd_webhooks_create, "create a webhook"),
                              ("update", cmd_webhooks_update, "change a webhook")):
        p = wh.add_parser(name, parents=[out], help=help_)
        if name == "update":
            p.add_argument("id", type=int)
        required = name == "create"
        p.add_argument("--name", required=required)
        p.add_argument("--url", required=required, help="https:// endpoint")
        p.add_argument("--events", required=required, metavar="a,b,...", help="event types, comma-separated")
        p.add_argument("--status", choices=["live", "disabled"], type=str.lower,
                       help="live or disabled (`webhooks pause` holds deliveries back)")
        p.add_argument("--max-per-second", metavar="N",
                       help=f"max deliveries per second, {webhooks.RATE_MIN:g} to {webhooks.RATE_MAX:,.0f}"
                            + ("; \"none\" removes the limit" if name == "update" else " (default: no limit)"))
        p.set_defaults(func=func)
    p = wh.add_parser("delete", parents=[out], help="delete a webhook and its deliveries")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_webhooks_delete)
    p = wh.add_parser("rotate-secret", parents=[out], help="new signing secret (the old one signs for 24 h more)")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_webhooks_rotate)

    ev = commands.add_parser("events", help="event types and publishing").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    ev.add_parser("types", parents=[out], help="list the event types").set_defaults(func=cmd_events_types)
    p = ev.add_parser("publish", parents=[out], help="publish an event and attempt its deliveries at once")
    p.add_argument("type", help="event type, e.g. payment.created")
    p.add_argument("--data", help="the event's data, a JSON object")
    p.add_argument("--sample", action="store_true", help="use the catalogue's sample data (the default)")
    p.add_argument("--test", action="store_true", help="send as a test event (needs --webhook)")
    p.add_argument("--webhook", type=int, help="only this webhook")
    p.set_defaults(func=cmd_events_publish)

    dl = commands.add_parser("deliveries", help="the event log").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    p = dl.add_parser("list", parents=[out], help="deliveries, newest first")
    p.add_argument("--webhook", type=int)
    p.add_argument("--status", help="pending, success, retrying or failure")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--before", type=int, help="show deliveries older than this id (next page)")
    p.set_defaults(func=cmd_deliveries_list)
    p = dl.add_parser("show", parents=[out], help="a delivery and every attempt")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_deliveries_show)
    from kwik_console.cli import operations as cli_operations  # pause/resume, resend, `recover`, `operational-webhook`, `retention`

    cli_operations.register(commands, out, webhook_commands=wh, delivery_commands=dl)
    from kwik_console.cli import members as cli_members  # `users ...` (hosted mode's members) lives in its own module

    cli_members.register(commands, out)
    from kwik_console.cli import api as cli_api  # `tokens ...`, `listen`, `trigger`: the REST API

    cli_api.register(commands, out)
    from kwik_console.cli import secrets as cli_secrets  # `secrets new-key|rekey`

    cli_secrets.register(commands, out)
    from kwik_console.cli import schema as cli_db  # `db upgrade|current|history`: the schema's migrations

    cli_db.register(commands, out)
    return parser


def _fail(message: str, status: int) -> int:
    print(f"kwik-console: error: {_shown(message)}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    from kwik_console.team import access
    from kwik_console.store.db import DatabaseUnavailable
    from kwik_console.store.secret_box import SecretKeyError

    try:
        args = build_parser().parse_args(argv)
        args.json = getattr(args, "json", False)
        command = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
        if access.decide_command(command) != access.Decision.ALLOW:  # the one guard, as for events and routes
            raise UsageError(f"`{command}` has no rule in access.py")
        if not getattr(args, "settings_free", False):
            get_settings()  # a bad setting fails here, whatever the command
        wiring.install()  # the commands that deliver (worker, events publish, resend) run the engine
        args.func(args)
    except InvalidInput as exc:
        return _fail(exc.message, 2)
    except (UsageError, NotFound, SettingsError) as exc:
        return _fail(str(exc), 2)
    except DatabaseUnavailable as exc:
        return _fail(str(exc), 1)
    except SecretKeyError as exc:
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
