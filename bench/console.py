"""Console backend benchmark: what the pages' handlers do, timed against a seeded database.

    .venv/bin/python bench/seed.py --database sqlite:////tmp/kwik-bench.db
    .venv/bin/python bench/console.py --database sqlite:////tmp/kwik-bench.db [--runs 30] [--no-export-memory]

Each measure runs the same service calls and view building as the console's
state handler for it (WebhooksState.load, WebhookPageState.load / load_charts,
EventLogState.refresh), on a fresh session or connection, --runs times; it
prints the median and p95, the ratio of the median to a primary-key lookup
measured in the same run (the machine's yardstick), and, where the issue sets
one, the target and whether the p95 meets it:

- each chart (1 h, 24 h, 7 d, 30 d: rollups.series), the webhook page's
  summary (24 h and 7 d: rollups.summary) and the list's overview
  (rollups.overview): 150 ms;
- the event log's payload search (deliveries.list_deliveries with `search`,
  as EventLogState.refresh calls it) for a payment id, a customer's email, an
  exact event id, a common word and a text that matches nothing: 300 ms;
- export: rows per second of export.csv_lines / jsonl_lines over the log
  filtered to Failure, in this process; then the whole log, served by granian
  from bench/export_memory.py's route, with the server's peak memory above its
  warmed-up baseline: at most 50 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHART_MS = 150
SEARCH_MS = 300
EXPORT_MB = 50


def timed(fn, runs: int) -> tuple[float, float]:
    fn()  # warm caches, as a console that has been running would have them
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def verdict(value: float, target: float | None, unit: str = "") -> str:
    if target is None:
        return ""
    return f"  <= {target:g}{unit}  {'met' if value <= target else 'NOT MET'}"


def search_terms(session, deliveries, newest_id: int, total: int) -> dict[str, str]:
    """What the searches look for, read from the event of the delivery halfway down the log."""
    middle = deliveries.get_delivery(session=session, delivery_id=max(1, newest_id - total // 2))
    data = json.loads(middle.event.body)["data"]
    terms = {"event id": middle.event.id}
    if "payment" in data:
        terms["payment id (1 match)"] = data["payment"]
        terms["customer email (~20 matches)"] = data["customer"]["email"]
    else:  # a database seeded before seed.py wrote payment ids: its one sequence number
        terms["'\"n\":N,' (1 match)"] = f'"n":{data["n"]},'
    terms["common word 'invoice' (~10% of events)"] = "invoice"
    terms["no match"] = "pay_0000NoSuchPayment0000"
    return terms


def export_throughput(export, webhook_id: int, runs: int) -> list[tuple[str, float, float, int]]:
    """(name, median rows/s, p95-slow rows/s, rows) for CSV and JSON Lines over the log filtered to Failure."""
    filters = export.filters_from({"status": "failure"})
    out = []
    for fmt, lines in (("csv", export.csv_lines), ("jsonl", export.jsonl_lines)):
        samples, rows = [], 0
        for _ in range(runs):
            started = time.perf_counter()
            rows = sum(chunk.count("\n") for chunk in lines(webhook_id, filters)) - (fmt == "csv")
            samples.append(time.perf_counter() - started)
        samples.sort()
        slow = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
        out.append(
            (f"export {fmt}, status Failure ({rows:,} rows)", rows / statistics.median(samples), rows / slow, rows)
        )
    return out


def export_memory(database: str, webhook_id: int) -> dict[str, dict]:
    """The whole log exported by bench/export_memory.py's server (granian, one worker), per format."""
    from bench import export_memory as em

    port = em.free_port()
    env = {**os.environ, "KWIK_DATABASE_URL": database, "PYTHONPATH": str(em.ROOT)}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "granian"),
            "--interface",
            "asgi",
            "--factory",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "bench.export_memory:app",
        ],
        cwd=em.ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}/export/webhooks/{webhook_id}/events"
    results = {}
    try:
        em.wait_ready(base + ".csv?q=warm-up-nothing-matches", server)
        for fmt in ("csv", "jsonl"):
            em.export(f"{base}.{fmt}?status=failure", em.tree(server.pid))  # warm up: imports, pools, caches
        pids = em.tree(server.pid)
        for fmt in ("csv", "jsonl"):
            before = em.rss(pids)
            em.reset_peak(pids)
            lines, size, seconds, sampled = em.export(f"{base}.{fmt}", pids)
            top = max(em.peak(pids), sampled)
            results[fmt] = {
                "rows": lines - (fmt == "csv"),
                "mb": size / em.MB,
                "seconds": seconds,
                "before_mb": before / em.MB,
                "peak_mb": top / em.MB,
                "delta_mb": (top - before) / em.MB,
            }
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--export-runs", type=int, default=3, help="runs of each in-process filtered export")
    parser.add_argument("--no-export-memory", action="store_true", help="skip the whole-log export by the server")
    args = parser.parse_args()
    os.environ["KWIK_DATABASE_URL"] = args.database

    from sqlmodel import Session, func, select

    from kwik_console.core.clock import utcnow
    from kwik_console.events import deliveries, rollups
    from kwik_console.store import db
    from kwik_console.store.tables import Delivery, Webhook
    from kwik_console.ui.state.webhook_page import chart_points, viewer_zone
    from kwik_console.ui.views import DeliveryRow, FiguresView, OverviewRow, WebhookRow
    from kwik_console.web import export
    from kwik_console.webhooks import service as webhooks

    engine = db.get_engine()
    with Session(engine) as s:
        total_webhooks = s.exec(select(func.count()).select_from(Webhook)).one()
        webhook_id, total_deliveries = s.exec(
            select(Delivery.webhook_id, func.count()).group_by(Delivery.webhook_id).order_by(func.count().desc())
        ).first()
        first = deliveries.list_deliveries(session=s, webhook_id=webhook_id, limit=25)
        second_cursor = first.next_before_id
        terms = search_terms(s, deliveries, first.items[0].id, total_deliveries)

    def search(term):
        def run():
            with Session(engine) as s:
                page = webhooks.list_webhooks(session=s, search=term)
                [WebhookRow.of(w) for w in page.items]

        return run

    def log_page(before_id=None, **filters):
        def run():
            with Session(engine) as s:
                page = deliveries.list_deliveries(
                    session=s, webhook_id=webhook_id, before_id=before_id, limit=25, **filters
                )
                webhooks.get_webhook(session=s, webhook_id=webhook_id)
                [DeliveryRow.of(d) for d in page.items]

        return run

    def chart(range_key):  # WebhookPageState.load_charts
        def run():
            with engine.connect() as conn:
                points = rollups.series(conn, webhook_id, range_key, now=utcnow())
            chart_points(points, range_key, viewer_zone("Europe/Paris"))

        return run

    def summary():  # WebhookPageState.load, its rollup part
        with engine.connect() as conn:
            figures = rollups.summary(conn, webhook_id, now=utcnow())
        FiguresView.of(figures["24h"]), FiguresView.of(figures["7d"])

    def overview():  # WebhooksState.load, its rollup part
        with engine.connect() as conn:
            overall, worst = rollups.overview(conn, now=utcnow())
        FiguresView.of(overall)
        [OverviewRow(w.webhook_id, w.name, w.status, FiguresView.of(w.figures)) for w in worst]

    def lookup():
        with Session(engine) as s:
            s.get(Webhook, webhook_id)

    measures = [
        ("webhook list, page 1, no search", search(""), None),
        ("webhook list, search 'ledger' (many matches)", search("ledger"), None),
        ("webhook list, search 'erp4242' (one match)", search("erp4242"), None),
        ("event log, first page", log_page(), None),
        ("event log, next page", log_page(second_cursor), None),
        ("event log, first page, status Failure", log_page(status="failure"), None),
        ("event log, first page, one event type", log_page(event_type="invoice.updated"), None),
        ("event log, first page, test events", log_page(test=True), None),
        ("event log, a page near the oldest", log_page(total_deliveries // 50), None),
        *[(f"chart {key}", chart(key), CHART_MS) for key in rollups.RANGES],
        ("webhook summary, 24 h and 7 d", summary, CHART_MS),
        ("webhook list overview, 24 h", overview, CHART_MS),
        *[(f"payload search: {name}", log_page(search=term), SEARCH_MS) for name, term in terms.items()],
    ]
    load = os.getloadavg()
    base, _ = timed(lookup, args.runs)
    results = {}
    print(
        f"Console backend: {total_webhooks:,} webhooks, {total_deliveries:,} deliveries on webhook {webhook_id}, "
        f"{engine.dialect.name}, {args.runs} runs each; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"  search terms: {json.dumps(terms)}")
    with Session(engine) as s:  # what each search's first page holds (at most 25 rows)
        found = {
            name: len(deliveries.list_deliveries(session=s, webhook_id=webhook_id, limit=25, search=term).items)
            for name, term in terms.items()
        }
    print(f"  rows on each search's first page: {json.dumps(found)}")
    print(f"  {'measure':<52} {'median':>9} {'p95':>9}  {'ratio':>6}  target (p95, ms); key lookup {base:.2f} ms")
    for name, fn, target in measures:
        median, p95 = timed(fn, args.runs)
        results[name] = {"median_ms": round(median, 2), "p95_ms": round(p95, 2)}
        if target is not None:
            results[name]["met"] = p95 <= target
        print(f"  {name:<52} {median:>7.1f}ms {p95:>7.1f}ms  {median / base:>5.1f}x{verdict(p95, target)}", flush=True)

    print(f"  {'export, in process':<52} {'rows/s':>9} {'slowest':>9}")
    for name, per_s, slow, _rows in export_throughput(export, webhook_id, args.export_runs):
        results[name] = {"rows_per_s": round(per_s), "slowest_rows_per_s": round(slow)}
        print(f"  {name:<52} {per_s:>9,.0f} {slow:>9,.0f}", flush=True)

    if not args.no_export_memory:
        for fmt, r in export_memory(args.database, webhook_id).items():
            name = f"export {fmt}, whole log, granian ({r['rows']:,} rows)"
            results[name] = {k: round(v, 1) for k, v in r.items()} | {"met": r["delta_mb"] <= EXPORT_MB}
            print(
                f"  {name:<52} {r['rows'] / r['seconds']:>9,.0f} rows/s, {r['mb']:,.0f} MB in "
                f"{r['seconds']:.1f} s; server RSS {r['before_mb']:.1f} -> peak {r['peak_mb']:.1f} MB: "
                f"+{r['delta_mb']:.1f} MB{verdict(r['delta_mb'], EXPORT_MB, ' MB')}",
                flush=True,
            )
    load = os.getloadavg()
    print(f"  load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        json.dumps(
            {
                "dialect": engine.dialect.name,
                "deliveries": total_deliveries,
                "lookup_ms": round(base, 3),
                "search_ms": results["webhook list, search 'ledger' (many matches)"]["median_ms"],
                "log_first_page_ms": results["event log, first page"]["median_ms"],
                "log_next_page_ms": results["event log, next page"]["median_ms"],
                "measures": results,
            }
        )
    )


if __name__ == "__main__":
    main()
