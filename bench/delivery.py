"""Delivery benchmark: a script, not a test. Prints a table, then a JSON line.

    .venv/bin/python bench/delivery.py [--events 3000] [--concurrency 8] [--rate 200] [--seconds 10]

Measured side by side in one run, against one local receiver process:
  (c) ceiling     the same httpx client POSTing the same bodies at the same
                  concurrency, no database: the most this machine can send
                  (measured before and after the rest, and averaged);
  (a) throughput  events published one transaction each by another process
                  (the platform, as in production) while the dispatcher runs;
                  sustained = deliveries recorded per second between 10 % and
                  90 % done; end to end = from the first publish to the last 2xx
                  recorded. Also shown: the publisher as a thread of the
                  dispatcher's own process, sharing its GIL;
  (b) latency     publish-to-first-attempt at a steady --rate events/s, publish
                  in the console's process (which wakes the dispatcher), p50 and p99.
The ratio sustained throughput / ceiling is what to compare between machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.receiver import BenchReceiver  # noqa: E402


def configure(db_path: str, concurrency: int) -> None:
    os.environ.update(
        KWIK_DATABASE_URL=f"sqlite:///{db_path}",
        KWIK_MAX_IN_FLIGHT=str(concurrency),
        KWIK_MAX_IN_FLIGHT_PER_WEBHOOK=str(concurrency),
    )
    from kwik_console import settings

    settings.get_settings.cache_clear()


def sample_body() -> bytes:
    from kwik_console import catalog
    from kwik_console.events import envelope, new_event_id
    from kwik_console.models import utcnow

    return envelope(event_id=new_event_id(), event_type="payment.created", created_at=utcnow(), test=False,
                    data=catalog.sample_data("payment.created")).encode()


async def ceiling(url: str, events: int, concurrency: int) -> float:
    from kwik_console.delivery.client import make_client, send
    from kwik_console.delivery.signing import signature_headers
    from kwik_console.settings import get_settings
    from kwik_console.webhooks import new_secret

    settings = get_settings()
    body, secret = sample_body(), new_secret()
    queue = iter(range(events))
    async with make_client(settings) as client:
        async def worker():
            for _ in queue:
                headers = signature_headers([secret], "evt_bench", int(time.time()), body)
                result = await send(client, url, body, headers, settings)
                assert result.http_code == 200, result

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return events / (time.perf_counter() - started)


def make_webhook(url: str) -> int:
    from kwik_console import catalog, db, webhooks

    with db.session_scope() as s:
        return webhooks.create_webhook(
            session=s, data=webhooks.WebhookInput(name="Bench", url=url, events=catalog.event_type_names())
        ).id


def count_success() -> int:
    from sqlmodel import Session, func, select

    from kwik_console import db
    from kwik_console.models import Delivery

    with Session(db.get_engine()) as s:
        return s.exec(select(func.count()).select_from(Delivery).where(Delivery.status == "success")).one()


PUBLISHER = """
import sys
from kwik_console import catalog
from kwik_console.events import publish
data = catalog.sample_data("payment.created")
for _ in range(int(sys.argv[1])):
    publish("payment.created", data)
"""


async def throughput(events: int, *, in_process: bool) -> tuple[float, float]:
    """(sustained, end to end) deliveries per second, publishing from another process or a thread."""
    from kwik_console.delivery import scheduler

    async with scheduler.running():
        started = time.perf_counter()
        if in_process:
            publisher = threading.Thread(target=_publish_here, args=(events,))
            publisher.start()
        else:
            publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(events)], env=os.environ,
                                         cwd=Path(__file__).resolve().parent.parent)
        marks: dict[float, tuple[float, int]] = {}
        while (done := await asyncio.to_thread(count_success)) < events:
            for share in (0.1, 0.9):
                if done >= share * events and share not in marks:
                    marks[share] = (time.perf_counter(), done)
            await asyncio.sleep(0.02)
        end_to_end = events / (time.perf_counter() - started)
        publisher.join() if in_process else publisher.wait()
    (t1, n1), (t2, n2) = marks[0.1], marks[0.9]
    return (n2 - n1) / (t2 - t1), end_to_end


def _publish_here(events: int) -> None:
    from kwik_console import catalog
    from kwik_console.events import publish

    data = catalog.sample_data("payment.created")
    for _ in range(events):
        publish("payment.created", data)


async def latency(rate: float, seconds: float) -> list[float]:
    from sqlmodel import Session, select

    from kwik_console import catalog, db
    from kwik_console.delivery import scheduler
    from kwik_console.events import publish
    from kwik_console.models import Attempt, Delivery, Event

    data = catalog.sample_data("payment.created")
    total = int(rate * seconds)
    event_ids = []

    def publisher():
        start = time.perf_counter()
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            event_ids.append(publish("payment.created", data).event.id)

    async with scheduler.running():
        thread = threading.Thread(target=publisher)
        thread.start()
        await asyncio.to_thread(thread.join)
        while await asyncio.to_thread(count_success) < total:
            await asyncio.sleep(0.05)

    with Session(db.get_engine()) as s:
        rows = s.exec(
            select(Event.created_at, Attempt.attempted_at)
            .join(Delivery, Delivery.event_id == Event.id)
            .join(Attempt, Attempt.delivery_id == Delivery.id)
            .where(Attempt.number == 1, Event.id.in_(event_ids))
        ).all()
    return [(attempted - created).total_seconds() * 1000 for created, attempted in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, BenchReceiver() as receiver:
        configure(f"{tmp}/ceiling.db", args.concurrency)
        ceilings = [asyncio.run(ceiling(receiver.url, args.events, args.concurrency))]
        configure(f"{tmp}/throughput.db", args.concurrency)
        make_webhook(receiver.url)
        sustained, end_to_end = asyncio.run(throughput(args.events, in_process=False))
        configure(f"{tmp}/in-process.db", args.concurrency)
        make_webhook(receiver.url)
        in_process, _ = asyncio.run(throughput(args.events, in_process=True))
        ceilings.append(asyncio.run(ceiling(receiver.url, args.events, args.concurrency)))
        configure(f"{tmp}/latency.db", args.concurrency)
        make_webhook(receiver.url)
        latencies = sorted(asyncio.run(latency(args.rate, args.seconds)))

    ceiling_rate = statistics.mean(ceilings)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    rows = [
        ("(c) ceiling: httpx only, no database", f"{ceiling_rate:,.0f} deliveries/s", ""),
        ("(a) throughput, sustained", f"{sustained:,.0f} deliveries/s", f"{sustained / ceiling_rate:.2f}"),
        ("    end to end, first publish to last 2xx", f"{end_to_end:,.0f} deliveries/s",
         f"{end_to_end / ceiling_rate:.2f}"),
        ("    publisher in the dispatcher's process", f"{in_process:,.0f} deliveries/s",
         f"{in_process / ceiling_rate:.2f}"),
        (f"(b) publish -> first attempt at {args.rate:g}/s, p50", f"{p50:.1f} ms", ""),
        (f"    p99 ({len(latencies)} events)", f"{p99:.1f} ms", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"Delivery benchmark: {args.events} events, concurrency {args.concurrency}, SQLite, "
          f"{os.cpu_count()} cores")
    print(f"  {'measure'.ljust(width)}  {'figure':>20}  ratio to (c)")
    for name, value, ratio in rows:
        print(f"  {name.ljust(width)}  {value:>20}  {ratio}")
    print(json.dumps({"throughput": round(sustained, 1), "ceiling": round(ceiling_rate, 1),
                      "ratio": round(sustained / ceiling_rate, 3), "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
                      "end_to_end": round(end_to_end, 1), "in_process": round(in_process, 1)}))


if __name__ == "__main__":
    main()
