"""Prometheus metrics counted by each process as it works, added up over every Kwik process on one host.

Attempts by outcome and their durations, claims and their latency, record
latency, attempts in flight, deliveries ended. Each process writes its own
files in the metrics directory (prometheus-client's multiprocess mode) and
/metrics sums every process's files, so the console's backend workers and
`kwik-console worker` processes add up. The dispatcher reports through the
plain functions below. The scrape, which adds them up and reads the queue
from the database, is web/metrics.py.

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
import tempfile
import threading
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, values

from kwik_console.core.settings import get_settings

log = logging.getLogger(__name__)

OUTCOMES = ("success", "failure", "error")  # 2xx; any other HTTP code; no response at all
ENDED = ("success", "failure")  # counted by the dispatcher as attempts end them
# Attempts are capped by KWIK_ATTEMPT_TIMEOUT (15 s by default); database steps take milliseconds.
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)
DATABASE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def outcome_of(http_code: int | None) -> str:
    """An attempt's outcome: "success" (2xx), "failure" (any other HTTP code) or "error" (no response)."""
    if http_code is None:
        return "error"
    return "success" if 200 <= http_code < 300 else "failure"


def directory() -> Path:
    """This deployment's metrics directory (see the module's docstring)."""
    settings = get_settings()
    return _directory(settings.metrics_dir, settings.database_url)


def directory_for(database_url: str) -> Path:
    """The default metrics directory of the deployment on this database (KWIK_METRICS_DIR unset)."""
    return _directory("", database_url)


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
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"cannot write to {path}")
    # prometheus-client picks each value's file from this variable, and its
    # multiprocess mode when first imported; set both, whatever was imported before.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    values.ValueClass = values.MultiProcessValue()
    # Every labelled series is made here, at 0: none is created later, when the variable may name another folder.
    attempts = Counter(
        "kwik_attempts",
        "Attempts made and recorded, by outcome: success (2xx), failure (another HTTP code), error (no response).",
        ["outcome"],
        registry=None,
    )
    durations = Histogram(
        "kwik_attempt_duration_seconds",
        "How long attempts took, by outcome.",
        ["outcome"],
        buckets=ATTEMPT_BUCKETS,
        registry=None,
    )
    ended = Counter(
        "kwik_deliveries_ended",
        "Deliveries whose last attempt was recorded, by final status: success, or failure when retries ran out.",
        ["status"],
        registry=None,
    )
    metrics = _Metrics(
        attempts={o: attempts.labels(o) for o in OUTCOMES},
        attempt_seconds={o: durations.labels(o) for o in OUTCOMES},
        claim_seconds=Histogram(
            "kwik_claim_duration_seconds",
            "How long claiming due deliveries took in the database.",
            buckets=DATABASE_BUCKETS,
            registry=None,
        ),
        claimed=Counter("kwik_deliveries_claimed", "Deliveries claimed for an attempt.", registry=None),
        record_seconds=Histogram(
            "kwik_record_duration_seconds",
            "How long recording a batch of attempts took in the database.",
            buckets=DATABASE_BUCKETS,
            registry=None,
        ),
        in_flight=Gauge(
            "kwik_attempts_in_flight",
            "Attempts on the wire now, in every live process.",
            multiprocess_mode="livesum",
            registry=None,
        ),
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
                log.warning(
                    "metrics are off in this process: the metrics directory %s cannot be used (%s); "
                    "set KWIK_METRICS_DIR to a writable folder",
                    path,
                    exc,
                )
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


def counting_directory() -> Path | None:
    """The metrics directory this process counts in, or None when metrics are off in this process."""
    return directory() if _metrics() is not None else None
