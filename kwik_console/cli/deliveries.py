"""`kwik-console deliveries ...`: the event log, a delivery at a time with every attempt."""

from __future__ import annotations

import json

from kwik_console.cli.output import emit, shown, table, when
from kwik_console.core.clock import iso
from kwik_console.events import deliveries
from kwik_console.store.db import session_scope
from kwik_console.store.tables import Delivery, DeliveryStatus


def delivery_json(d: Delivery) -> dict:
    return {
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "http_code": d.last_http_code,
        "test": d.test,
        "retry_at": iso(d.retry_at),
        "retry_counter": d.retry_counter,
        "created_at": iso(d.created_at),
    }


def cmd_deliveries_list(args) -> None:
    with session_scope() as session:
        page = deliveries.list_deliveries(
            session=session, webhook_id=args.webhook, status=args.status, before_id=args.before, limit=args.limit
        )
    rows = [
        (
            d.id,
            d.webhook_id,
            f"{d.event_type} {d.event_id}",
            DeliveryStatus(d.status).label,
            d.last_http_code,
            "yes" if d.test else "no",
            when(d.retry_at),
            d.retry_counter,
        )
        for d in page.items
    ]
    text = (
        table(["ID", "Webhook", "Event", "Status", "HTTP Code", "Test Event", "Retry Timestamp", "Retry Counter"], rows)
        if rows
        else "No deliveries."
    )
    if page.next_before_id:
        text += f"\nMore: --before {page.next_before_id}"
    emit(args, {"items": [delivery_json(d) for d in page.items], "next_before": page.next_before_id}, text)


def cmd_deliveries_show(args) -> None:
    with session_scope() as session:
        detail = deliveries.get_delivery(session=session, delivery_id=args.id)
    d = detail.delivery
    lines = [
        f"Delivery {d.id}: {d.event_type} {d.event_id} to webhook {d.webhook_id} ({shown(detail.webhook.name)})",
        f"  Status           {DeliveryStatus(d.status).label}",
        f"  Test Event       {'yes' if d.test else 'no'}",
        f"  Retry Timestamp  {when(d.retry_at)}",
        f"  Retry Counter    {d.retry_counter}",
        "",
    ]
    rows = [
        (
            a.number,
            when(a.attempted_at),
            a.http_code,
            f"{a.duration_ms} ms",
            a.error or a.response_body[:60].replace("\n", " "),
        )
        for a in detail.attempts
    ]
    lines.append(
        table(["Attempt", "Time", "HTTP Code", "Duration", "Response / error"], rows) if rows else "No attempts yet."
    )
    data = delivery_json(d) | {
        "payload": json.loads(detail.event.body),
        "attempts": [
            {
                "number": a.number,
                "attempted_at": iso(a.attempted_at),
                "http_code": a.http_code,
                "duration_ms": a.duration_ms,
                "request_headers": a.request_headers,
                "response_headers": a.response_headers,
                "response_body": a.response_body,
                "error": a.error,
            }
            for a in detail.attempts
        ],
    }
    emit(args, data, "\n".join(lines))


def register(commands, out):
    """Add `deliveries` to the kwik-console parser (`out` is the shared --json parent); returns its group of
    actions, which `cli.operations` adds resend to."""
    dl = commands.add_parser("deliveries", help="the event log").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=commands._parser_class
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
    return dl
