"""`kwik-console events ...`: the event types, and publishing an event with its deliveries attempted at once."""

from __future__ import annotations

import asyncio

from kwik_console.cli.output import UsageError, emit, table
from kwik_console.core.clock import iso
from kwik_console.events import catalog, payloads
from kwik_console.events.publishing import publish
from kwik_console.store.tables import DeliveryStatus
from kwik_console.team import audit


def cmd_events_types(args) -> None:
    rows = [(t.name, t.description) for t in catalog.EVENT_TYPES.values()]
    emit(args, [{"type": n, "description": d} for n, d in rows], table(["Event", "Description"], rows))


def event_data(args) -> dict:
    """The event's `data` from `--data` (the whole object) or the type's sample, with each `--override` set."""
    if args.data is not None and getattr(args, "sample", False):
        raise UsageError("give --data or --sample, not both")
    if args.data is not None:
        data = payloads.parse_data(args.data, what="--data")
    elif catalog.is_event_type(args.type):
        data = catalog.sample_data(args.type)
    else:
        data = {}
    return payloads.override(data, args.override or [])


def add_payload_arguments(parser) -> None:
    """`--data` and `--override`, for `events publish` and `trigger`."""
    parser.add_argument("--data", metavar="JSON", help="the event's whole data object (default: the type's sample)")
    parser.add_argument(
        "--override",
        action="append",
        metavar="PATH=VALUE",
        help="set one field of the data, e.g. amount=5000 or metadata.crm_id=abc (dotted path; "
        "VALUE read as JSON when it parses, else as text); repeatable",
    )


def cmd_events_publish(args) -> None:
    from kwik_console.delivery import scheduler  # the delivery engine (apscheduler, httpx): only this command pays
    from kwik_console.delivery.test_webhook import send_test  # likewise

    data = event_data(args)
    if args.test and args.webhook is not None:
        # A test, as Test Webhook sends it: its data checked against the type's schema, the send audited.
        published, outcome = asyncio.run(
            send_test(webhook_id=args.webhook, event_type=args.type, data=data, actor=audit.CLI)
        )
        outcomes = [outcome] if outcome else []
    else:
        published = publish(args.type, data, test=args.test, webhook_id=args.webhook, wake=False)
        outcomes = asyncio.run(scheduler.deliver_now(published.delivery_ids)) if published.delivery_ids else []
    rows = [
        (
            o.delivery_id,
            DeliveryStatus(o.status).label,
            o.http_code,
            f"{o.duration_ms} ms",
            o.error or o.response_body[:60].replace("\n", " "),
        )
        for o in outcomes
    ]
    text = f"Published {published.event.id} ({args.type}) to {len(published.delivery_ids)} webhook(s)."
    if rows:
        text += "\n" + table(["Delivery", "Status", "HTTP Code", "Duration", "Response"], rows)
    emit(
        args,
        {
            "event_id": published.event.id,
            "type": args.type,
            "test": args.test,
            "deliveries": [
                {
                    "id": o.delivery_id,
                    "status": o.status,
                    "http_code": o.http_code,
                    "duration_ms": o.duration_ms,
                    "error": o.error,
                    "retry_at": iso(o.next_attempt_at),
                }
                for o in outcomes
            ],
        },
        text,
    )


def register(commands, out) -> None:
    """Add `events` to the kwik-console parser (`out` is the shared --json parent)."""
    ev = commands.add_parser("events", help="event types and publishing").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=commands._parser_class
    )
    ev.add_parser("types", parents=[out], help="list the event types").set_defaults(func=cmd_events_types)
    p = ev.add_parser("publish", parents=[out], help="publish an event and attempt its deliveries at once")
    p.add_argument("type", help="event type, e.g. payment.created")
    add_payload_arguments(p)
    p.add_argument("--sample", action="store_true", help="use the catalogue's sample data (the default)")
    p.add_argument("--test", action="store_true", help="send as a test event (needs --webhook)")
    p.add_argument("--webhook", type=int, help="only this webhook")
    p.set_defaults(func=cmd_events_publish)
