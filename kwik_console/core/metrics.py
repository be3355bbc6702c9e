"""Prometheus metrics, added up over every Kwik process of a deployment on one host.

Two kinds, each added up in the way that makes it right:

- Counted by each process as it works: attempts by outcome and their
  durations, claims and their latency, record latency, attempts in flight.
  Each process writes its own files in the metrics directory
  (prometheus-client's multiprocess mode) and /metrics sums every process's
  files, so the console's backend workers and `kwik-console worker` processes
  add up. The dispatcher reports through the plain functions below.
- Read from the database when /metrics is scraped: unfinished deliveries by
  status (pending, retrying), the due backlog and the age of the oldest due
  delivery. Every process reads the same rows, so these are right by
  construction, whichever process answers. Each reads only unfinished rows
  (a partial index), so a scrape costs the size of the queue, never of the
  history: finished deliveries are counted as they end
  (`kwik_deliveries_ended_total`), not by scanning them.

The metrics directory is KWIK_METRICS_DIR, or by default
`<temp dir>/kwik-metrics-<uid>-<hash of the database URL>`, so every process of
one deployment (one database) on a host shares it and two deployments never
mix. It must be local to the host and its process ids (not a volume shared by
containers). Counters of processes that have exited stay, so totals never go
back; the in-flight gauge of a dead process is dropped at the next scrape.
Empty the directory when every process is stopped (systemd's
`RuntimeDirectory=` does it): Prometheus then sees a counter reset, as after
any restart.

Metrics never stop a delivery: if the directory cannot be written, a warning
is logged once and this process's counts are left out.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import logging
import os
import re
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

OUTCOMES = ("success", "failure", "error")  # 2xx; any other HTTP code; no response at all
UNFINISHED = ("pending", "retrying")  # the queue: read from the database at each scrape
ENDED = ("success", "failure")  # counted by the dispatcher as attempts end them
# Attempts are capped by KWIK_ATTEMPT_TIMEOUT (15 s by default); database steps take milliseconds.
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)
DATABASE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Scrape-time queries may take this long on PostgreSQL before they are cancelled.
QUERY_TIMEOUT_MS = 2000


def outcome_of(http_code: int | None) -> str:
    """An attempt's outcome: "success" (2xx), "failure" (any other HTTP code) or "error" (no response)."""
    if http_code is None:
        return "error"
    return "success" if 200 <= http_code < 300 else "failure"


def directory() -> Path:
    """This deployment's metrics directory (see the module's docstring)."""
    from kwik_console.core.settings import get_settings

    settings = get_settings()
    return _directory(settings.metrics_dir, settings.database_url)


@functools.lru_cache(maxsize=16)
def _directory(metrics_dir: str, database_url: str) -> Path:
    # Cached: the dispatcher reports several metrics per attempt.
    if metrics_dir:
        return Path(metrics_dir)
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"kwik-metrics-{os.getuid()}-{digest}"


# ---------------------------------------------------------------- counted by each process


@dataclasses.dataclass
class _Metrics:
    # Labelled series by label, made once: looking one up takes a lock.
    attempts: dict
    attempt_seconds: dict
    claim_seconds: object
    claimed: object
    record_seconds: object
    in_flight: object
    ended: dict


_lock = threading.Lock()
_by_directory: dict[Path, _Metrics | None] = {}


def _create(path: Path) -> _Metrics:
    from prometheus_client import Counter, Gauge, Histogram, values

    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"cannot write to {path}")
    # prometheus-client picks each value's file from this variable, and its
    # multiprocess mode when first imported; set both, whatever was imported before.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    values.ValueClass = values.MultiProcessValue()
    # Every labelled series is made here, at 0: none is created later, when the variable may name another folder.
    attempts = Counter("kwik_attempts", "Attempts made and recorded, by outcome: success (2xx), failure "
                       "(another HTTP code), error (no response).", ["outcome"], registry=None)
    durations = Histogram("kwik_attempt_duration_seconds", "How long attempts took, by outcome.", ["outcome"],
                          buckets=ATTEMPT_BUCKETS, registry=None)
    ended = Counter("kwik_deliveries_ended", "Deliveries whose last attempt was recorded, by final status: "
                    "success, or failure when retries ran out.", ["status"], registry=None)
    metrics = _Metrics(
        attempts={o: attempts.labels(o) for o in OUTCOMES},
        attempt_seconds={o: durations.labels(o) for o in OUTCOMES},
        claim_seconds=Histogram("kwik_claim_duration_seconds", "How long claiming due deliveries took in the "
                                "database.", buckets=DATABASE_BUCKETS, registry=None),
        claimed=Counter("kwik_deliveries_claimed", "Deliveries claimed for an attempt.", registry=None),
        record_seconds=Histogram("kwik_record_duration_seconds", "How long recording a batch of attempts took in "
                                 "the database.", buckets=DATABASE_BUCKETS, registry=None),
        in_flight=Gauge("kwik_attempts_in_flight", "Attempts on the wire now, in every live process.",
                        multiprocess_mode="livesum", registry=None),
        ended={status: ended.labels(status) for status in ENDED},
    )
    return metrics


def _metrics() -> _Metrics | None:
    path = directory()
    found = _by_directory.get(path, False)
    if found is not False:
        return found
    with _lock:
        if path not in _by_directory:
            try:
                _by_directory[path] = _create(path)
            except OSError as exc:
                log.warning("metrics are off in this process: the metrics directory %s cannot be used (%s); "
                            "set KWIK_METRICS_DIR to a writable folder", path, exc)
                _by_directory[path] = None
        return _by_directory[path]


def _safely(report) -> None:
    metrics = _metrics()
    if metrics is None:
        return
    try:
        report(metrics)
    except OSError:  # a full disk, say: lose a count, never a delivery
        log.warning("recording a metric failed", exc_info=True)


def observe_claim(seconds: float, claimed: int) -> None:
    """A claim ran in the database for `seconds` and took `claimed` deliveries (0 is a claim too)."""
    def report(m: _Metrics) -> None:
        m.claim_seconds.observe(seconds)
        if claimed:
            m.claimed.inc(claimed)

    _safely(report)


def observe_record(seconds: float) -> None:
    """Recording one batch of attempts took `seconds` in the database."""
    _safely(lambda m: m.record_seconds.observe(seconds))


def observe_attempt(outcome: str, seconds: float, *, ended: str | None = None) -> None:
    """An attempt was recorded: outcome "success" (2xx), "failure" (non-2xx) or "error" (no response).

    `ended` is its delivery's final status when this attempt was its last.
    """
    observe_attempts([(outcome, seconds, ended)])


def observe_attempts(attempts: list[tuple[str, float, str | None]]) -> None:
    """A batch of recorded attempts, each (outcome, seconds, ended) as `observe_attempt` takes them.

    Counted once per batch: each count is a write to a shared file."""
    for outcome, _, ended in attempts:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
        if ended is not None and ended not in ENDED:
            raise ValueError(f"ended must be one of {', '.join(ENDED)}; got {ended!r}")

    def report(m: _Metrics) -> None:
        by_outcome = collections.Counter(outcome for outcome, _, _ in attempts)
        by_end = collections.Counter(ended for _, _, ended in attempts if ended is not None)
        for outcome, n in by_outcome.items():
            m.attempts[outcome].inc(n)
        for ended, n in by_end.items():
            m.ended[ended].inc(n)
        for outcome, seconds, _ in attempts:
            m.attempt_seconds[outcome].observe(seconds)

    _safely(report)


def set_in_flight(n: int) -> None:
    """This process has `n` attempts on the wire now (the scheduler says so at each look, once a second)."""
    _safely(lambda m: m.in_flight.set(n))


# ---------------------------------------------------------------- the scrape

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
    from prometheus_client import multiprocess

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
    from sqlalchemy import func, select

    from kwik_console.store.tables import Delivery

    return (select(Delivery.status, func.count()).where(Delivery.next_attempt_at.is_not(None))
            .group_by(Delivery.status))


class DatabaseCollector:
    """The gauges read from the database at scrape time, with cheap, indexed queries."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        from sqlalchemy import func, select, text

        from kwik_console.store.tables import Delivery
        from kwik_console.core.clock import utcnow

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
                        Delivery.next_attempt_at.is_not(None), Delivery.next_attempt_at <= now)
                ).one()
        except Exception:  # noqa: BLE001  the process's own counters are still worth serving
            log.warning("reading delivery metrics from the database failed", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        statuses = GaugeMetricFamily("kwik_deliveries", "Unfinished deliveries by status, from the database.",
                                     labels=["status"])
        for status in sorted(set(UNFINISHED) | set(by_status)):
            statuses.add_metric([status], by_status.get(status, 0))
        yield statuses
        yield GaugeMetricFamily("kwik_deliveries_due", "Deliveries whose next attempt is due now (the backlog), "
                                "including those being attempted.", value=due)
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily("kwik_oldest_due_delivery_age_seconds", "How long the oldest due delivery has "
                                "waited past its attempt time; 0 when none is due.", value=age)


def render(engine=None) -> bytes:
    """The Prometheus text for /metrics: every process's counters, plus the database's gauges. Blocking."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    if _metrics() is not None:
        path = directory()
        forget_dead_processes(path)
        multiprocess.MultiProcessCollector(registry, path=str(path))
    if engine is None:
        from kwik_console.store.db import get_engine

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
