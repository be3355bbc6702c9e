"""`kwik-console webhooks ...`: list, show, create, update, delete a webhook, and rotate its signing secret."""

from __future__ import annotations

from kwik_console.cli.output import UsageError, emit, shown, table, when
from kwik_console.core.clock import iso
from kwik_console.store.db import session_scope
from kwik_console.store.tables import Webhook, WebhookStatus
from kwik_console.team import audit
from kwik_console.webhooks import rules
from kwik_console.webhooks import service as webhooks


def webhook_json(webhook: Webhook, events: list[str] | None = None, *, secret: bool = False) -> dict:
    data = {
        "id": webhook.id,
        "name": webhook.name,
        "url": webhook.url,
        "status": webhook.status,
        "max_per_second": webhook.max_per_second,
        "headers": dict(webhook.headers or {}),
        "failing_since": iso(webhook.failing_since),
        "disabled_reason": webhook.disabled_reason,
        "disabled_at": iso(webhook.disabled_at),
        "created_at": iso(webhook.created_at),
        "updated_at": iso(webhook.updated_at),
    }
    if events is not None:
        data["events"] = events
    if secret:
        data["secret"] = webhook.secret
    return data


def _split_events(text: str | None) -> list[str] | None:
    return None if text is None else [e.strip() for e in text.split(",") if e.strip()]


def _events_text(events: list[str]) -> str:
    return "All events" if events == [rules.ALL_EVENTS] else ", ".join(events)


def _headers(args) -> list[tuple[str, str]] | None:
    """--header 'Name: value' (repeatable) as pairs, [] with --clear-headers, None when neither is given."""
    if getattr(args, "clear_headers", False):
        if args.header:
            raise UsageError("give --header or --clear-headers, not both")
        return []
    if args.header is None:
        return None
    return [rules.parse_header_line(line) for line in args.header]


def _rate(webhook: Webhook) -> str:
    return f"{webhook.max_per_second:g}" if webhook.max_per_second else "no limit"


def _health_lines(webhook: Webhook) -> list[str]:
    """The banner's words: failing since when, and why the console disabled it."""
    lines = []
    if webhook.failing_since:
        lines.append(f"  Failing since   {when(webhook.failing_since)}")
    if webhook.status == WebhookStatus.DISABLED and webhook.disabled_reason:
        lines.append(f"  Disabled        {when(webhook.disabled_at)}: {shown(webhook.disabled_reason)}")
    return lines


def show_webhook(args, webhook: Webhook, events: list[str], *, secret: bool) -> None:
    text = "\n".join(
        [
            f"Webhook {webhook.id}: {shown(webhook.name)}",
            f"  Webhook URL     {shown(webhook.url)}",
            f"  Status          {WebhookStatus(webhook.status).label}",
            f"  Max per second  {_rate(webhook)}",
            f"  Events          {shown(_events_text(events))}",
            f"  Created         {when(webhook.created_at)}",
        ]
        + [f"  Header          {shown(name)}: {shown(value)}" for name, value in (webhook.headers or {}).items()]
        + _health_lines(webhook)
        + ([f"  Signing secret  {webhook.secret}"] if secret else [])
    )
    emit(args, webhook_json(webhook, events, secret=secret), text)


def cmd_webhooks_list(args) -> None:
    with session_scope() as session:
        page = webhooks.list_webhooks(session=session, search=args.search, page=args.page)
    rows = [
        (
            w.id,
            when(w.created_at),
            w.name,
            w.url,
            WebhookStatus(w.status).label,
            f"{w.max_per_second:g}" if w.max_per_second else "",
            when(w.failing_since),
        )
        for w in page.items
    ]
    text = (
        table(["ID", "Created", "Name", "Webhook URL", "Status", "Max/s", "Failing since"], rows)
        if rows
        else "No webhooks yet."
    )
    # Why the console disabled a webhook is too long for a column: a line each, under the table.
    text += "".join(
        f"\nWebhook {w.id} disabled {when(w.disabled_at)}: {shown(w.disabled_reason)}"
        for w in page.items
        if w.status == WebhookStatus.DISABLED and w.disabled_reason
    )
    if rows and page.pages > 1:
        text += f"\nPage {page.page} of {page.pages} ({page.total} webhooks)"
    emit(args, {"items": [webhook_json(w) for w in page.items], "total": page.total, "page": page.page}, text)


def cmd_webhooks_show(args) -> None:
    with session_scope() as session:
        webhook = webhooks.get_webhook(session=session, webhook_id=args.id)
        events = webhooks.webhook_events(session=session, webhook_id=args.id)
    show_webhook(args, webhook, events, secret=True)


def _webhook_input(args) -> rules.WebhookInput:
    """The webhook fields given on the command line; an option left out is None (unchanged, on update)."""
    return rules.WebhookInput(
        name=args.name,
        url=args.url,
        events=_split_events(args.events),
        status=args.status,
        max_per_second=_max_per_second(args.max_per_second),
        headers=_headers(args),
    )


def cmd_webhooks_create(args) -> None:
    data = _webhook_input(args)
    with session_scope() as session:
        webhook = webhooks.create_webhook(session=session, data=data, actor=audit.CLI)
        events = webhooks.webhook_events(session=session, webhook_id=webhook.id)
    show_webhook(args, webhook, events, secret=True)


def _max_per_second(text: str | None) -> str | None:
    """--max-per-second: a number; "" or "none" for no limit (on update: removes it); absent: unchanged."""
    if text is None:
        return None
    return "" if text.strip().lower() in ("", "none") else text


def cmd_webhooks_update(args) -> None:
    data = _webhook_input(args)
    if data == rules.WebhookInput():
        raise UsageError(
            "nothing to change: give --name, --url, --events, --status, --max-per-second, --header or --clear-headers"
        )
    with session_scope() as session:
        webhook = webhooks.update_webhook(session=session, webhook_id=args.id, data=data, actor=audit.CLI)
        events = webhooks.webhook_events(session=session, webhook_id=webhook.id)
    show_webhook(args, webhook, events, secret=False)


def cmd_webhooks_delete(args) -> None:
    with session_scope() as session:
        webhook = webhooks.get_webhook(session=session, webhook_id=args.id)
        name = webhook.name
        webhooks.delete_webhook(session=session, webhook_id=args.id, actor=audit.CLI)
    emit(args, {"id": args.id, "deleted": True}, f"Deleted webhook {args.id} ({shown(name)}).")


def cmd_webhooks_rotate(args) -> None:
    with session_scope() as session:
        webhook = webhooks.rotate_secret(session=session, webhook_id=args.id, actor=audit.CLI)
        still_signing = webhooks.previous_secrets(session=session, webhook_id=args.id)
    replaced = still_signing[0]  # the secret this rotation replaced: the newest
    text = (
        f"New signing secret for webhook {webhook.id}: {webhook.secret}\n"
        f"The previous secret also signs until {when(replaced.expires_at)}."
    )
    if len(still_signing) > 1:
        text += f"\nOlder secrets still signing: {len(still_signing) - 1} (each for 24 h after it was replaced)."
    emit(
        args,
        {
            "id": webhook.id,
            "secret": webhook.secret,
            "previous_secret_expires_at": iso(replaced.expires_at),
            "previous_secrets_expire_at": [iso(p.expires_at) for p in still_signing],
        },
        text,
    )


def register(commands, out):
    """Add `webhooks` to the kwik-console parser (`out` is the shared --json parent); returns its group of actions,
    which `cli.operations` adds pause and resume to."""
    wh = commands.add_parser("webhooks", help="manage webhooks").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=commands._parser_class
    )
    p = wh.add_parser("list", parents=[out], help="list webhooks, newest first")
    p.add_argument("--search", help="match name or URL")
    p.add_argument("--page", type=int, default=1)
    p.set_defaults(func=cmd_webhooks_list)
    p = wh.add_parser("show", parents=[out], help="show one webhook, with its signing secret")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_webhooks_show)
    for name, func, help_ in (
        ("create", cmd_webhooks_create, "create a webhook"),
        ("update", cmd_webhooks_update, "change a webhook"),
    ):
        p = wh.add_parser(name, parents=[out], help=help_)
        if name == "update":
            p.add_argument("id", type=int)
        required = name == "create"
        p.add_argument("--name", required=required)
        p.add_argument("--url", required=required, help="https:// endpoint")
        p.add_argument(
            "--events",
            required=required,
            metavar="a,b,...",
            help="event types, comma-separated; '*' for all events, including types added later",
        )
        p.add_argument(
            "--status",
            choices=["live", "disabled"],
            type=str.lower,
            help="live or disabled (`webhooks pause` holds deliveries back)",
        )
        p.add_argument(
            "--max-per-second",
            metavar="N",
            help=f"max deliveries per second, {rules.RATE_MIN:g} to {rules.RATE_MAX:,.0f}"
            + ('; "none" removes the limit' if name == "update" else " (default: no limit)"),
        )
        p.add_argument(
            "--header",
            action="append",
            metavar="'NAME: VALUE'",
            help=f"a custom header sent with each delivery; repeat for more (at most {rules.HEADERS_MAX})"
            + ("; replaces all the webhook's headers" if name == "update" else ""),
        )
        if name == "update":
            p.add_argument("--clear-headers", action="store_true", help="remove all custom headers")
        p.set_defaults(func=func)
    p = wh.add_parser("delete", parents=[out], help="delete a webhook and its deliveries")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_webhooks_delete)
    p = wh.add_parser("rotate-secret", parents=[out], help="new signing secret (the old one signs for 24 h more)")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_webhooks_rotate)
    return wh
