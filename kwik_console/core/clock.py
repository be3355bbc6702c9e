"""One clock for the code: timezone-aware UTC, and the two ways a time is written out."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    """UTC, ISO 8601 (None stays None); a browser shows it in the viewer's own time zone."""
    return value.astimezone(dt.UTC).isoformat() if value else None


def iso_millis(value: dt.datetime) -> str:
    """The envelope's form: UTC to the millisecond with a Z, as `2026-11-28T15:04:05.123Z`."""
    value = value.astimezone(dt.UTC) if value.tzinfo else value
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
