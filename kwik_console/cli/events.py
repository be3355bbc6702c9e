"""`kwik-console events ...`: the event types, and publishing an event with its deliveries attempted at once."""

from __future__ import annotations

import asyncio
import json

from kwik_console.cli.output import UsageError, emit, table
from kwik_console.core import json_scan
from kwik_console.core.clock import iso
from kwik_console.core.errors import InvalidInput
from kwik_console.events import catalog
from kwik_console.events.publishing import DATA_MAX_DEPTH, DATA_MAX_DEPTH_MESSAGE, DATA_NUMBER_MESSAGE, publish
from kwik_console.store.tables import DeliveryStatus


def cmd_events_types(args) -> None:
    rows = [(t.name, t.description) for t in catalog.EVENT_TYPES.values()]
    emit(args, [{"type": n, "description": d} for n, d in rows], table(["Event", "Description"], rows))


def cmd_events_publish(args) -> None:
    from kwik_console.delivery import scheduler  # the delivery engine (apscheduler, httpx): only this command pays

    if args.data is not None and args.sample:
        raise UsageError("give --data or --sample, not both")
    if args.data is not None:
        try:
            data = json_scan.loads(args.data, max_depth=DATA_MAX_DEPTH)
        except json.JSONDecodeError as exc:
            raise InvalidInput({"data": f"--data is not valid JSON: {exc.msg} at column {exc.colno}"}) from None
        except json_scan.TooDeep:
            raise InvalidInput({"data": DATA_MAX_DEPTH_MESSAGE}) from None
        except json_scan.NumberTooLong:
            raise InvalidInput({"data": DATA_NUMBER_MESSAGE}) from None
    elif catalog.is_event_type(args.type):
        data = catalog.sample_data(args.type)
    else:
        data = {}
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
    p.add_argument("--data", help="the event's data, a JSON object")
    p.add_argument("--sample", action="store_true", help="use the catalogue's sample data (the default)")
    p.add_argument("--test", action="store_true", help="send as a test event (needs --webhook)")
    p.add_argument("--webhook", type=int, help="only this webhook")
    p.set_defaults(func=cmd_events_publish)
