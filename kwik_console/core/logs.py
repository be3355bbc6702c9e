"""Logging for every Kwik process: text for people, or one JSON object per line (KWIK_LOG_FORMAT=json).

Logs go to stderr, never stdout: `--json` commands print machine output on
stdout, and a log line there would corrupt it.

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger` and `message`, the
`exception` text when there is one, and every extra the call passed, e.g.
`log.warning("claim lost", extra={"delivery_id": 42})` adds `"delivery_id": 42`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from kwik_console.core.settings import get_settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=_as_text)


def _as_text(value) -> str:
    """An extra JSON cannot hold is written as text, never dropped: ISO 8601 for dates and times."""
    return value.isoformat() if isinstance(value, (dt.date, dt.time)) else str(value)


def configure(log_format: str | None = None, *, level: int = logging.INFO, stream=None) -> None:
    """Send the root logger's records to stderr in KWIK_LOG_FORMAT; replaces handlers set before."""
    if log_format is None:
        log_format = get_settings().log_format
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
