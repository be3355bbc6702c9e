"""What happens after an attempt: the retry schedule, jitter, Retry-After and status rules.

Pure functions: no I/O, no clock of their own.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random

from kwik_console.store.tables import DeliveryStatus

JITTER = 0.2  # each delay varies by +-20 %
RETRY_AFTER_CODES = (429, 503)


def is_success(http_code: int | None) -> bool:
    return http_code is not None and 200 <= http_code < 300


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date. None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:  # delta-seconds; fractions too, as many servers send them
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - now).total_seconds(), 0.0)


def next_delay(
    attempts_made: int,
    schedule: tuple[float, ...],
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after `attempts_made` attempts, or None when retries are exhausted."""
    if attempts_made > len(schedule):
        return None
    base = schedule[attempts_made - 1]
    if retry_after is not None:
        # Honour the endpoint's wish, within 1x to 2x of what we would have waited,
        # and jitter it upwards only: never sooner than asked, but a thousand
        # deliveries told the same Retry-After must not return at one instant.
        wish = min(max(retry_after, base), 2 * base)
        return wish * (1 + (rng or random).uniform(0, JITTER))
    return base * (1 + (rng or random).uniform(-JITTER, JITTER))


def decide(
    *,
    http_code: int | None,
    attempts_made: int,
    schedule: tuple[float, ...],
    now: dt.datetime,
    retry_after_header: str | None = None,
    rng: random.Random | None = None,
) -> tuple[DeliveryStatus, dt.datetime | None]:
    """The delivery's status after an attempt, and when the next attempt is due (None: no more)."""
    if is_success(http_code):
        return DeliveryStatus.SUCCESS, None
    if http_code == 410:  # Gone: the endpoint asked us to stop.
        return DeliveryStatus.FAILURE, None
    retry_after = parse_retry_after(retry_after_header, now) if http_code in RETRY_AFTER_CODES else None
    delay = next_delay(attempts_made, schedule, retry_after=retry_after, rng=rng)
    if delay is None:
        return DeliveryStatus.FAILURE, None
    return DeliveryStatus.RETRYING, now + dt.timedelta(seconds=delay)
