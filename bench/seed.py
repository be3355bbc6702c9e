"""Seed a database for the console benchmark: 10,000 webhooks, and 1,000,000 deliveries on one of them.

    .venv/bin/python bench/seed.py --database sqlite:////tmp/kwik-bench.db [--webhooks 10000] [--deliveries 1000000]

Rows go in with bulk INSERTs in large transactions; each delivery has its own
event, a mix of statuses, event types and test flags, and one attempt per
hundred deliveries so the details drawer has something to show. The charts'
rollups are filled from every delivery's attempts (1 or 3, with durations).
Each body's data carries what the payload search looks for: a unique payment id
(`pay_` and 24 letters and digits), an amount, and a customer's email address
(50,000 customers, so about 20 events each at 1,000,000).

A console started on this database sends nothing anywhere: every URL is on
`.invalid` (a name that never resolves), and no delivery is due for 30 days.
The deliveries end now, two seconds apart, so the charts and the last 24 h have data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True, help="a KWIK_DATABASE_URL; an existing SQLite file is replaced")
    parser.add_argument("--webhooks", type=int, default=10_000)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.database.startswith("sqlite:///"):
        Path(args.database.removeprefix("sqlite:///")).unlink(missing_ok=True)
    os.environ["KWIK_DATABASE_URL"] = args.database

    from sqlalchemy import insert

    from kwik_console.events import catalog, rollups
    from kwik_console.events.publishing import envelope, new_event_id
    from kwik_console.store import db
    from kwik_console.store.tables import Attempt, Delivery, Event, Subscription, Webhook
    from kwik_console.webhooks.service import new_secret

    engine = db.get_engine()
    rng = random.Random(7)
    types = catalog.event_type_names()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    spacing = dt.timedelta(seconds=2)
    start = now - spacing * args.deliveries
    not_due = now + dt.timedelta(days=30)
    alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    first_names = ["ana", "ben", "chloe", "david", "emma", "farid", "grace", "hugo", "ines", "jonas"]
    last_names = ["lima", "meyer", "novak", "okafor", "petit", "quinn", "rossi", "silva", "tanaka", "weber"]
    customers = 50_000
    words = ["orders", "billing", "crm", "ledger", "payouts", "analytics", "shop", "erp", "invoices", "alerts"]
    began = time.perf_counter()

    with engine.begin() as conn:
        rows = []
        for i in range(args.webhooks):
            name = f"{rng.choice(words).title()} {rng.choice(words)} {i}"
            url = f"https://{rng.choice(words)}{i}.kwik-bench.invalid/kwik/webhooks"
            when = start + dt.timedelta(minutes=i)
            rows.append(
                {
                    "name": name,
                    "url": url,
                    "status": "live" if i % 7 else "disabled",
                    "secret": new_secret(),
                    "search_text": f"{name} {url}".lower(),
                    "created_at": when,
                    "updated_at": when,
                }
            )
        conn.execute(insert(Webhook), rows)
        conn.execute(
            insert(Subscription),
            [{"webhook_id": i + 1, "event_type": t} for i in range(args.webhooks) for t in rng.sample(types, 3)],
        )
    print(f"{args.webhooks:,} webhooks in {time.perf_counter() - began:.1f} s", flush=True)

    def data_of(n: int, event_type: str) -> dict:
        customer = rng.randrange(customers)
        email = f"{first_names[customer % 10]}.{last_names[customer // 10 % 10]}{customer}@customers.kwik-bench.invalid"
        return {
            "object": event_type.split(".")[0],
            "n": n,
            "payment": "pay_" + "".join(rng.choices(alnum, k=24)),
            "amount": rng.randrange(100, 500_000),
            "currency": "eur",
            "customer": {"email": email},
        }

    target = args.webhooks  # the newest webhook: first in the list
    statuses = ["success"] * 90 + ["failure"] * 4 + ["retrying"] * 5 + ["pending"]
    batch = 50_000
    for offset in range(0, args.deliveries, batch):
        events, deliveries, attempts, tried = [], [], [], []
        for n in range(offset, min(offset + batch, args.deliveries)):
            when = start + spacing * n
            event_type, test = types[n % len(types)], n % 50 == 0
            event_id = new_event_id()
            events.append(
                {
                    "id": event_id,
                    "type": event_type,
                    "test": test,
                    "created_at": when,
                    "body": envelope(
                        event_id=event_id,
                        event_type=event_type,
                        created_at=when,
                        test=test,
                        data=data_of(n, event_type),
                    ),
                }
            )
            status = statuses[n % len(statuses)]
            tries = 1 if status in ("success", "pending") else 3
            deliveries.append(
                {
                    "event_id": event_id,
                    "webhook_id": target,
                    "event_type": event_type,
                    "test": test,
                    "status": status,
                    "attempt_count": 0 if status == "pending" else tries,
                    "last_http_code": None if status == "pending" else (200 if status == "success" else 500),
                    "next_attempt_at": not_due if status in ("retrying", "pending") else None,
                    "created_at": when,
                    "updated_at": when,
                }
            )
            if status != "pending":
                for k in range(tries):
                    ok = status == "success"
                    tried.append(
                        (
                            target,
                            when + dt.timedelta(seconds=k),
                            200 if ok else 500,
                            int(rng.lognormvariate(4.0 if ok else 6.5, 0.6)),
                        )
                    )
            if n % 100 == 0 and status != "pending":
                attempts.append(
                    {
                        "delivery_id": n + 1,
                        "number": 1,
                        "attempted_at": when,
                        "duration_ms": 42,
                        "http_code": 200,
                        "request_headers": {},
                        "response_headers": {},
                        "response_body": "ok",
                    }
                )
        with engine.begin() as conn:
            conn.execute(insert(Event), events)
            conn.execute(insert(Delivery), deliveries)
            if attempts:
                conn.execute(insert(Attempt), attempts)
            rollups.add_rows(conn, tried)
        done = min(offset + batch, args.deliveries)
        print(f"  {done:,} / {args.deliveries:,} deliveries ({time.perf_counter() - began:.0f} s)", flush=True)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:  # statistics and the visibility map now, as autovacuum would give them a little later
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    print(f"Seeded {args.database} in {time.perf_counter() - began:.0f} s; deliveries are on webhook {target}.")


if __name__ == "__main__":
    main()
