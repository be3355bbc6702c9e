"""The /metrics scrape: every process's counters (core/metrics.py), plus gauges read from the database.

Read from the database when /metrics is scraped: unfinished deliveries by
status (pending, retrying), the due backlog and the age of the oldest due
delivery. Every process reads the same rows, so these are right by
construction, whichever process answers. Each reads only unfinished rows
(a partial index), so a scrape costs the size of the queue, never of the
history: finished deliveries are counted as they end
(`kwik_deliveries_ended_total`), not by scanning them.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select, text

from kwik_console.core import metrics
from kwik_console.core.clock import utcnow
from kwik_console.store.db import get_engine
from kwik_console.store.tables import Delivery

log = logging.getLogger(__name__)

UNFINISHED = ("pending", "retrying")  # the queue: read from the database at each scrape
# Scrape-time queries may take this long on PostgreSQL before they are cancelled.
QUERY_TIMEOUT_MS = 2000


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def forget_dead_processes(path: Path) -> list[int]:
    """Drop the live gauges (in flight) of processes that have exited; their counters stay."""
    dead = set()
    for name in os.listdir(path):
        match = _LIVE_GAUGE_FILE.fullmatch(name)
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))
    return sorted(dead)


def unfinished_by_status():
    """Pending and retrying deliveries: ix_delivery_due holds only unfinished rows, the queue, never the history."""
    return select(Delivery.status, func.count()).where(Delivery.next_attempt_at.is_not(None)).group_by(Delivery.status)


class DatabaseCollector:
    """The gauges read from the database at scrape time, with cheap, indexed queries."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        up = GaugeMetricFamily("kwik_database_up", "1 if this scrape could read the database, else 0.")
        try:
            now = utcnow()
            with self.engine.connect() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text(f"SET LOCAL statement_timeout = {QUERY_TIMEOUT_MS}"))
                by_status = dict(conn.execute(unfinished_by_status()).all())
                # ix_delivery_due: a range scan over due rows only, and the oldest is its first entry.
                due, oldest = conn.execute(
                    select(func.count(), func.min(Delivery.next_attempt_at)).where(
                        Delivery.next_attempt_at.is_not(None), Delivery.next_attempt_at <= now
                    )
                ).one()
        except Exception:  # noqa: BLE001  the process's own counters are still worth serving
            log.warning("reading delivery metrics from the database failed", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        statuses = GaugeMetricFamily(
            "kwik_deliveries", "Unfinished deliveries by status, from the database.", labels=["status"]
        )
        for status in sorted(set(UNFINISHED) | set(by_status)):
            statuses.add_metric([status], by_status.get(status, 0))
        yield statuses
        yield GaugeMetricFamily(
            "kwik_deliveries_due",
            "Deliveries whose next attempt is due now (the backlog), including those being attempted.",
            value=due,
        )
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "kwik_oldest_due_delivery_age_seconds",
            "How long the oldest due delivery has waited past its attempt time; 0 when none is due.",
            value=age,
        )


def render(engine=None) -> bytes:
    """The Prometheus text for /metrics: every process's counters, plus the database's gauges. Blocking."""
    registry = CollectorRegistry()
    path = metrics.counting_directory()
    if path is not None:
        forget_dead_processes(path)
        multiprocess.MultiProcessCollector(registry, path=str(path))
    if engine is None:
        try:
            engine = get_engine()
        except Exception:  # noqa: BLE001  reported as kwik_database_up 0
            log.warning("the database cannot be opened for /metrics", exc_info=True)
            engine = _Unavailable()
    registry.register(DatabaseCollector(engine))
    return generate_latest(registry)


class _Unavailable:
    def connect(self):
        raise ConnectionError("the database cannot be opened")


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
