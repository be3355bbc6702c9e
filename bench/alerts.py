"""Alerts benchmark: deliveries while the mail server is down, beside the same run without alerts. A script.

    .venv/bin/python bench/alerts.py [--database sqlite|postgresql] [--pairs N] [--events N] [--quick] [--json]

Every run is the same but for the mail server:
  off        no KWIK_SMTP_URL: no alerts at all;
  blackhole  KWIK_SMTP_URL at a loopback port that listens and never answers: each try waits its whole
             timeout (alerts.TRY_TIMEOUT_SECONDS, 20 s) for a greeting that never comes;
  refused    KWIK_SMTP_URL at a closed loopback port: each try fails at once.
(with KWIK_ALERT_FROM and KWIK_ALERT_TO, which do nothing without KWIK_SMTP_URL). Nothing else is tuned.

Each run has a fresh database with one healthy webhook on bench/receiver.py (200 at once), 20 webhooks
pointing at a closed loopback port (every attempt fails at once, so each starts failing and, with alerts on,
queues an alert in the transaction that records its attempt), and 200 alerts already due in the alert table,
about 200 more webhooks that receive nothing (with alerts on, the alerts job tries them, one try in flight
at a time). N events (default 5,000) are published to the healthy webhook and one to the failing ones, with
the worker stopped; then a `kwik-console worker` starts, as users run it, and the backlog drains.
Throughput = healthy deliveries / (last success recorded - the worker's start), as bench/delivery.py's (a)
measures it.

The settings take turns for --pairs rounds (off, blackhole, refused; then blackhole, refused, off; ...),
so that each comes first, second and third as often, on the shared machine; the medians are compared:
blackhole / off and refused / off. Also reported: how many alert tries the mail server saw during the run,
and their last error, so a run whose alerts never ran shows up.
Nothing is asserted; the exit status is 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.delivery import Bench, Worker, say, wait_for  # noqa: E402
from bench.receiver import BenchReceiver  # noqa: E402

SETTINGS = ("off", "blackhole", "refused")
FAILING_WEBHOOKS = 20
DUE_ALERTS = 200
HEALTHY_TYPE, FAILING_TYPE, QUIET_TYPE = "payment.created", "payout.created", "customer.created"
ALERT_ENV = {"KWIK_ALERT_FROM": "kwik-bench@example.com", "KWIK_ALERT_TO": "oncall@example.com"}


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AlertsBench:
    def __init__(self, args, tmp: Path, receiver: BenchReceiver):
        self.base = Bench(argparse.Namespace(database=args.database, processes=1, quick=args.quick), tmp, receiver)
        self.events = args.events or (1000 if args.quick else 5000)
        self.receiver = receiver
        self.tmp = tmp
        # Listens and never accepts: connections complete, then nothing is ever said.
        self.hole = socket.socket()
        self.hole.bind(("127.0.0.1", 0))
        self.hole.listen(1024)
        self.refused_port = closed_port()
        self.dead_endpoint = f"http://127.0.0.1:{closed_port()}/hook"
        self.runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}

    def close(self) -> None:
        self.hole.close()
        self.base.drop_database()

    def smtp_env(self, setting: str) -> dict[str, str]:
        if setting == "off":
            return {}
        port = self.hole.getsockname()[1] if setting == "blackhole" else self.refused_port
        return {"KWIK_SMTP_URL": f"smtp://127.0.0.1:{port}", **ALERT_ENV}

    def seed(self) -> None:
        from sqlalchemy import insert

        from kwik_console.core.clock import utcnow
        from kwik_console.events import catalog
        from kwik_console.events.publishing import publish_together
        from kwik_console.store import db
        from kwik_console.store.tables import Alert
        from kwik_console.team import audit
        from kwik_console.webhooks import rules
        from kwik_console.webhooks import service as webhooks

        def hook(name: str, url: str, event_type: str) -> int:
            data = rules.WebhookInput(name=name, url=url, events=[event_type])
            return webhooks.create_webhook(session=session, data=data, actor=audit.CLI).id

        with db.session_scope() as session:
            hook("Healthy", self.receiver.url("/w/healthy"), HEALTHY_TYPE)
            for n in range(FAILING_WEBHOOKS):
                hook(f"Failing {n}", self.dead_endpoint, FAILING_TYPE)
            # What the seeded alerts are about: webhooks that receive nothing in the run, so keep their state.
            quiet = [hook(f"Quiet {n}", self.dead_endpoint, QUIET_TYPE) for n in range(DUE_ALERTS)]
        now = utcnow()
        with db.get_engine().begin() as conn:
            conn.execute(
                insert(Alert),
                [
                    {
                        "webhook_id": quiet[n],
                        "kind": "failing",
                        "recipients": ["oncall@example.com"],
                        "subject": f"[Kwik] Webhook bench {n} is failing",
                        "body": "A seeded alert.",
                        "state": "pending",
                        "tries": 0,
                        "next_try_at": now - dt.timedelta(seconds=n),
                        "created_at": now,
                    }
                    for n in range(DUE_ALERTS)
                ],
            )
        data = catalog.sample_data(HEALTHY_TYPE)
        for start in range(0, self.events, 1000):
            with db.session_scope() as session:
                publish_together(session, [(HEALTHY_TYPE, data)] * min(1000, self.events - start))
        with db.session_scope() as session:
            publish_together(session, [(FAILING_TYPE, catalog.sample_data(FAILING_TYPE))])

    def run(self, setting: str, round_number: int) -> dict:
        from sqlalchemy import func, select

        from kwik_console.core.clock import utcnow
        from kwik_console.store.tables import Alert, Delivery

        name = f"{setting}-{round_number}"
        self.base.fresh_database(name)
        self.seed()
        seeded_at = utcnow()
        env = {**self.base.worker_env(), **self.smtp_env(setting)}
        worker = Worker(env, self.tmp, self.tmp / f"worker-{name}.log")
        try:
            worker.wait_ready()
            healthy = Delivery.event_type == HEALTHY_TYPE
            complete = wait_for(
                lambda: self.base.count(healthy, Delivery.status == "success") >= self.events, 120, interval=0.05
            )
        finally:
            worker.stop()
        stats = self.base.drain_stats()
        start = min(t for t in (worker.ready, stats["first_attempt"]) if t is not None)
        elapsed = (stats["last_success"] or start) - start
        with self.base.engine.connect() as conn:
            tries, last_error = conn.execute(select(func.sum(Alert.tries), func.max(Alert.last_error))).one()
            queued = conn.execute(
                select(func.count()).select_from(Alert).where(Alert.created_at > seeded_at)
            ).scalar_one()
        figures = {
            "setting": setting,
            "delivered": stats["success"],
            "complete": complete,
            "throughput": round(stats["success"] / elapsed, 1) if elapsed > 0 else 0.0,
            "drain_seconds": round(elapsed, 2),
            "alert_tries": int(tries or 0),
            "alerts_queued_by_failing_webhooks": queued,
            "last_alert_error": last_error,
        }
        say(
            f"  {name}: {figures['throughput']:,.0f}/s ({figures['delivered']:,} in {elapsed:.2f} s), "
            f"alert tries {figures['alert_tries']}, queued {queued}"
        )
        self.runs[setting].append(figures)
        return figures

    def report(self) -> dict:
        medians = {s: statistics.median(r["throughput"] for r in runs) for s, runs in self.runs.items() if runs}
        out = {
            "database": self.base.kind,
            "events": self.events,
            "runs": self.runs,
            "median_throughput": medians,
        }
        if medians.get("off"):
            out["ratio_blackhole_to_off"] = round(medians.get("blackhole", 0) / medians["off"], 3)
            out["ratio_refused_to_off"] = round(medians.get("refused", 0) / medians["off"], 3)
        return out


def table(figures: dict) -> str:
    lines = [
        f"alerts bench, {figures['database']}, {figures['events']:,} events to one healthy webhook per run",
        "",
        "| mail server | runs (deliveries/s) | median | ratio to off | alert tries in a run | last alert error |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    off = figures["median_throughput"].get("off")
    for setting, runs in figures["runs"].items():
        if not runs:
            continue
        median = figures["median_throughput"][setting]
        ratio = f"{median / off:.2f}" if off else ""
        tries = ", ".join(str(r["alert_tries"]) for r in runs)
        error = next((r["last_alert_error"] for r in reversed(runs) if r["last_alert_error"]), "") or ""
        rates = ", ".join(f"{r['throughput']:,.0f}" + ("" if r["complete"] else " (incomplete)") for r in runs)
        lines.append(f"| {setting} | {rates} | {median:,.0f}/s | {ratio} | {tries} | {error[:60]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pairs", type=int, default=3, help="rounds of the three settings (default 3)")
    parser.add_argument("--events", type=int, default=0, help="events to the healthy webhook per run (5,000)")
    parser.add_argument("--quick", action="store_true", help="one round of 1,000 events: a smoke run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for key in [k for k in os.environ if k.startswith("KWIK_")]:  # the defaults, for this process and the worker
        del os.environ[key]

    began = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    tmp = Path(tempfile.mkdtemp(prefix="kwik-bench-alerts-"))
    # The receiver forks: start it before this process opens threads or database connections.
    with BenchReceiver() as receiver:
        bench = AlertsBench(args, tmp, receiver)
        try:
            for round_number in range(1 if args.quick else args.pairs):
                # Each setting takes each place in turn: the load drifts within a round too.
                turn = round_number % len(SETTINGS)
                order = SETTINGS[turn:] + SETTINGS[:turn]
                for setting in order:
                    say(f"[{time.perf_counter() - began:5.0f} s] {setting}, round {round_number + 1}")
                    bench.run(setting, round_number + 1)
        finally:
            bench.close()
            shutil.rmtree(tmp, ignore_errors=True)
    figures = bench.report()
    figures["load_average"] = {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]}
    figures["seconds"] = round(time.perf_counter() - began, 1)
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
    else:
        print(table(figures))
        print(f"\nload average {figures['load_average']['start']} -> {figures['load_average']['end']}; ", end="")
        print(f"{figures['seconds']:.0f} s in all")


if __name__ == "__main__":
    main()
