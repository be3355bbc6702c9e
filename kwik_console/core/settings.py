"""Every setting, read from the environment in one place.

A bad value fails at start with a message naming the variable, rather than
surfacing later as a confusing delivery error.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import os
from email.utils import formataddr, parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from kwik_console.core.mail import MailServer, parse_smtp_url
from kwik_console.core.network import parse_allowed_networks, parse_trusted_proxies

# The retry schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h -> 8 attempts in all.
DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class SettingsError(ValueError):
    """An environment variable holds a value Kwik Console cannot use."""


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str
    # "local" (a laptop: http:// to loopback allowed) or "hosted".
    mode: str = "local"
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    connect_timeout: float = 5.0
    attempt_timeout: float = 15.0
    # A claim outlives a wait for a free slot plus the longest attempt, so a live
    # worker never loses one; a crashed worker's claims are taken over once it expires.
    lease_seconds: float = 60.0
    max_in_flight: int = 64
    max_in_flight_per_webhook: int = 8
    poll_seconds: float = 1.0
    response_body_limit: int = 20 * 1024
    # Hosted mode: the address members use, e.g. https://kwik.example.com. The websocket and the
    # sign-in form accept only this origin; the session cookie is Secure when it is https.
    public_url: str = ""
    session_idle_minutes: float = 30.0
    session_max_hours: float = 12.0
    link_hours: float = 24.0  # how long an invitation or reset link works
    # REST API: requests per minute per access token, counted in the database across replicas
    # (500 a second: room for a platform publishing 200 events a second, bench/api.py).
    api_rate_limit: int = 30000
    # Logs on stderr: "text" for people, "json" for one JSON object per line (KWIK_LOG_FORMAT).
    log_format: str = "text"
    # Where each process keeps its metrics for /metrics to add up (KWIK_METRICS_DIR; see metrics.py).
    metrics_dir: str = ""
    # Hosted mode: /metrics wants this bearer token; without one, only loopback may read it.
    metrics_token: str = ""
    # Hosted mode: networks deliveries may reach although internal (KWIK_ALLOWED_NETWORKS).
    allowed_networks: tuple = ()
    # Reverse proxies whose X-Forwarded-For names the client (KWIK_TRUSTED_PROXIES); none by default.
    trusted_proxies: tuple = ()
    # The only proxy deliveries go through; proxy variables in the environment are ignored.
    http_proxy: str | None = None
    # Fernet keys for signing secrets at rest, the current one first (KWIK_SECRET_KEY).
    secret_keys: tuple[str, ...] = ()
    # Where the console's workers share each tab's state (KWIK_REDIS_URL, passed to Reflex).
    redis_url: str | None = None
    # A webhook whose every attempt failed for this long is disabled (KWIK_AUTO_DISABLE_AFTER;
    # 5 days, as Svix does); 0 turns it off.
    auto_disable_after: float = 5 * 86400.0
    # Events, deliveries and attempts older than this many days are purged (KWIK_RETENTION_DAYS); 0 keeps all.
    retention_days: float = 30.0
    # Alerts by email (KWIK_SMTP_URL, KWIK_ALERT_FROM; KWIK_ALERT_TO in local mode): none without a mail server.
    smtp: MailServer | None = None
    alert_from: str = ""
    alert_to: tuple[str, ...] = ()

    @property
    def local_mode(self) -> bool:
        return self.mode == "local"

    @property
    def console_url(self) -> str:
        """Where a person opens this console: KWIK_PUBLIC_URL, or the local console's own address."""
        return self.public_url or "http://127.0.0.1:3000"

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule) + 1


def parse_retry_schedule(text: str) -> tuple[float, ...]:
    """Parse `KWIK_RETRY_SCHEDULE`: comma-separated delays in seconds."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SettingsError(
            f"KWIK_RETRY_SCHEDULE must be comma-separated seconds, like '5,300,1800'; got {text!r}"
        ) from None
    if not delays or any(d <= 0 for d in delays):
        raise SettingsError(f"KWIK_RETRY_SCHEDULE needs at least one delay, each above 0 seconds; got {text!r}")
    return delays


def _number(env: dict[str, str], name: str, default: float, *, kind=float, minimum=0.0):
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number; got {raw!r}") from None
    if value <= minimum:
        raise SettingsError(f"{name} must be above {minimum:g}; got {raw!r}")
    return value


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices`, the first by default."""
    value = env.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def parse_public_url(text: str) -> str:
    """`KWIK_PUBLIC_URL`: an origin (scheme, host, port), https unless the host is loopback."""

    text = text.strip().rstrip("/")
    if not text:
        return ""
    parts = urlsplit(text)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise SettingsError(f"KWIK_PUBLIC_URL must be like https://kwik.example.com, with no path; got {text!r}")
    if parts.scheme == "http" and not loopback:
        raise SettingsError(f"KWIK_PUBLIC_URL must use https:// (http:// only for a loopback address); got {text!r}")
    return text


def default_database_url() -> str:
    return f"sqlite:///{Path.cwd() / 'data' / 'kwik.db'}"


def from_env(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    mode = env.get("KWIK_MODE", "local").strip().lower() or "local"
    if mode not in ("local", "hosted"):
        raise SettingsError(f"KWIK_MODE must be 'local' or 'hosted'; got {mode!r}")
    attempt_timeout = _number(env, "KWIK_ATTEMPT_TIMEOUT", 15.0)
    shortest_lease = 2 * attempt_timeout + 1
    lease_seconds = _number(env, "KWIK_LEASE_SECONDS", max(60.0, shortest_lease))
    if lease_seconds < shortest_lease:
        # A claim may wait up to one attempt's time for a free slot, then needs a
        # whole attempt's time and a second to record it before its lease ends.
        raise SettingsError(
            f"KWIK_LEASE_SECONDS must be at least twice KWIK_ATTEMPT_TIMEOUT plus 1 ({shortest_lease:g} s); "
            f"got {lease_seconds:g}"
        )
    schedule_text = env.get("KWIK_RETRY_SCHEDULE", "")
    secret_keys = parse_secret_keys(env.get("KWIK_SECRET_KEY", ""))
    public_url = parse_public_url(env.get("KWIK_PUBLIC_URL", ""))
    smtp, alert_from, alert_to = _alerts(env, mode, public_url)
    if mode == "hosted" and not secret_keys:
        raise SettingsError(
            "KWIK_SECRET_KEY is required in hosted mode: it encrypts signing secrets at rest. "
            "Make one with `kwik-console secrets new-key`"
        )
    return Settings(
        database_url=env.get("KWIK_DATABASE_URL") or env.get("DATABASE_URL") or default_database_url(),
        mode=mode,
        retry_schedule=parse_retry_schedule(schedule_text) if schedule_text.strip() else DEFAULT_RETRY_SCHEDULE,
        connect_timeout=_number(env, "KWIK_CONNECT_TIMEOUT", 5.0),
        attempt_timeout=attempt_timeout,
        lease_seconds=lease_seconds,
        max_in_flight=_number(env, "KWIK_MAX_IN_FLIGHT", 64, kind=int),
        max_in_flight_per_webhook=_number(env, "KWIK_MAX_IN_FLIGHT_PER_WEBHOOK", 8, kind=int),
        poll_seconds=_number(env, "KWIK_POLL_SECONDS", 1.0),
        public_url=public_url,
        session_idle_minutes=_number(env, "KWIK_SESSION_IDLE_MINUTES", 30.0),
        session_max_hours=_number(env, "KWIK_SESSION_MAX_HOURS", 12.0),
        link_hours=_number(env, "KWIK_LINK_HOURS", 24.0),
        api_rate_limit=_number(env, "KWIK_API_RATE_LIMIT", 30000, kind=int),
        log_format=_choice(env, "KWIK_LOG_FORMAT", ("text", "json")),
        metrics_dir=env.get("KWIK_METRICS_DIR", "").strip(),
        metrics_token=env.get("KWIK_METRICS_TOKEN", "").strip(),
        allowed_networks=_allowed_networks(env.get("KWIK_ALLOWED_NETWORKS", "")),
        trusted_proxies=_trusted_proxies(env.get("KWIK_TRUSTED_PROXIES", "")),
        http_proxy=_http_proxy(env.get("KWIK_HTTP_PROXY", "")),
        secret_keys=secret_keys,
        redis_url=env.get("KWIK_REDIS_URL", "").strip() or env.get("REFLEX_REDIS_URL", "").strip() or None,
        auto_disable_after=parse_duration(
            env.get("KWIK_AUTO_DISABLE_AFTER", ""), "KWIK_AUTO_DISABLE_AFTER", default=5 * 86400.0
        ),
        retention_days=parse_duration(env.get("KWIK_RETENTION_DAYS", ""), "KWIK_RETENTION_DAYS", default=30 * 86400.0)
        / 86400,
        smtp=smtp,
        alert_from=alert_from,
        alert_to=alert_to,
    )


def _address(text: str, name: str) -> str:
    """One email address, optionally with a display name: `alerts@example.com`, `Kwik <alerts@example.com>`."""
    display, address = parseaddr(text)
    local, _, domain = address.rpartition("@")
    bad = any(c.isspace() for c in address) or any(ord(c) < 32 or ord(c) == 127 for c in text)
    if not local or "." not in domain.strip(".") or bad:
        raise SettingsError(f"{name} must be an email address like alerts@example.com; got {text!r}")
    return formataddr((display, address)) if display else address


def _alerts(env: dict[str, str], mode: str, public_url: str) -> tuple[MailServer | None, str, tuple[str, ...]]:
    """KWIK_SMTP_URL turns alerts on; then the sender, and in local mode the recipients, are needed too."""
    url = env.get("KWIK_SMTP_URL", "").strip()
    to_text = env.get("KWIK_ALERT_TO", "").strip()
    if not url:
        return None, "", ()
    try:
        smtp = parse_smtp_url(url)
    except ValueError as exc:
        raise SettingsError(f"KWIK_SMTP_URL {exc} (its value is not shown: it may hold a password)") from None
    from_text = env.get("KWIK_ALERT_FROM", "").strip()
    if not from_text:
        raise SettingsError("KWIK_ALERT_FROM is required with KWIK_SMTP_URL: the address alert emails come from")
    alert_from = _address(from_text, "KWIK_ALERT_FROM")
    if mode == "hosted":
        if to_text:
            raise SettingsError(
                "KWIK_ALERT_TO is for local mode: in hosted mode alerts go to the admins, and to the members "
                "who turn them on in their account menu"
            )
        if not public_url:
            raise SettingsError("KWIK_PUBLIC_URL is required with KWIK_SMTP_URL in hosted mode: alerts link to it")
        return smtp, alert_from, ()
    alert_to = tuple(_address(part.strip(), "KWIK_ALERT_TO") for part in to_text.split(",") if part.strip())
    if not alert_to:
        raise SettingsError("KWIK_ALERT_TO is required with KWIK_SMTP_URL in local mode: who gets the alerts")
    return smtp, alert_from, alert_to


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A hundred years: a longer window is a typo, and its cutoff would fall before the calendar's first day.
_DURATION_MAX = 36_500 * 86400.0


def parse_duration(text: str, name: str, *, default: float) -> float:
    """Seconds from "5d", "12h", "30m", "90s" or a bare number of days; 0 means off."""
    raw = text.strip().lower()
    if not raw:
        return default
    number, unit = (raw[:-1], raw[-1]) if raw[-1] in _UNITS else (raw, "d")
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        value = -1.0
    if not 0 <= value <= _DURATION_MAX:  # also NaN and infinity
        raise SettingsError(f"{name} must be a duration like 5d, 12h, 30m or 90s (0 turns it off); got {text!r}")
    return value


def _allowed_networks(text: str) -> tuple:
    try:
        return parse_allowed_networks(text)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _trusted_proxies(text: str) -> tuple:
    try:
        return parse_trusted_proxies(text)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _http_proxy(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"KWIK_HTTP_PROXY must be an http:// or https:// URL with a host; got {text!r}")
    return text


def parse_secret_keys(text: str) -> tuple[str, ...]:
    """KWIK_SECRET_KEY: comma-separated Fernet keys, the current one first, older ones after it."""

    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    for key in keys:
        try:
            valid = len(base64.urlsafe_b64decode(key.encode())) == 32
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise SettingsError(
                "KWIK_SECRET_KEY must be one or more comma-separated Fernet keys (32 url-safe base64 bytes); "
                "make one with `kwik-console secrets new-key`"
            )
    return keys


@functools.cache
def get_settings() -> Settings:
    return from_env()
