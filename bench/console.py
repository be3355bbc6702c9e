"""Console backend benchmark: what the pages' handlers do, timed against a seeded database.

    .venv/bin/python bench/seed.py --database sqlite:////tmp/kwik-bench.db
    .venv/bin/python bench/console.py --database sqlite:////tmp/kwik-bench.db [--runs 30]

Each measure runs the same service calls and view building as the console's
state handler for it (WebhooksState.load, EventLogState.refresh), on a fresh
session, --runs times; it prints the median and p95, and the ratio of the median
to a primary-key lookup measured in the same run (the machine's yardstick).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(fn, runs: int) -> tuple[float, float]:
    fn()  # warm caches, as a console that has been running would have them
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    os.environ["KWIK_DATABASE_URL"] = args.database

    from sqlmodel import Session, func, select

    from kwik_console import db, deliveries, webhooks
    from kwik_console.models import Delivery, Webhook
    from kwik_console.ui.views import DeliveryRow, WebhookRow

    engine = db.get_engine()
    with Session(engine) as s:
        total_webhooks = s.exec(select(func.count()).select_from(Webhook)).one()
        webhook_id, total_deliveries = s.exec(
            select(Delivery.webhook_id, func.count()).group_by(Delivery.webhook_id).order_by(func.count().desc())
        ).first()
        first = deliveries.list_deliveries(session=s, webhook_id=webhook_id, limit=25)
        second_cursor = first.next_before_id

    def search(term):
        def run():
            with Session(engine) as s:
                page = webhooks.list_webhooks(session=s, search=term)
                [WebhookRow.of(w) for w in page.items]
        return run

    def log_page(before_id=None, **filters):
        def run():
            with Session(engine) as s:
                page = deliveries.list_deliveries(session=s, webhook_id=webhook_id, before_id=before_id, limit=25,
                                                  **filters)
                webhooks.get_webhook(session=s, webhook_id=webhook_id)
                [DeliveryRow.of(d) for d in page.items]
        return run

    def lookup():
        with Session(engine) as s:
            s.get(Webhook, webhook_id)

    measures = [
        ("webhook list, page 1, no search", search("")),
        ("webhook list, search 'ledger' (many matches)", search("ledger")),
        ("webhook list, search 'erp4242' (one match)", search("erp4242")),
        ("event log, first page", log_page()),
        ("event log, next page", log_page(second_cursor)),
        ("event log, first page, status Failure", log_page(status="failure")),
        ("event log, first page, one event type", log_page(event_type="invoice.updated")),
        ("event log, first page, test events", log_page(test=True)),
        ("event log, a page near the oldest", log_page(total_deliveries // 50)),
    ]
    base, _ = timed(lookup, args.runs)
    results = {}
    print(f"Console backend: {total_webhooks:,} webhooks, {total_deliveries:,} deliveries on webhook {webhook_id}, "
          f"{engine.dialect.name}, {args.runs} runs each")
    print(f"  {'measure':<48} {'median':>9} {'p95':>9}  ratio to a key lookup ({base:.2f} ms)")
    for name, fn in measures:
        median, p95 = timed(fn, args.runs)
        results[name] = round(median, 2)
        print(f"  {name:<48} {median:>7.1f}ms {p95:>7.1f}ms  {median / base:>6.0f}x")
    print(json.dumps({"search_ms": results["webhook list, search 'ledger' (many matches)"],
                      "log_first_page_ms": results["event log, first page"],
                      "log_next_page_ms": results["event log, next page"], "lookup_ms": round(base, 3)}))


if __name__ == "__main__":
    main()
