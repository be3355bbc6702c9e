"""The engine's values: a claim on a delivery, what a claim took, a finished attempt and its recorded outcome."""

from __future__ import annotations

import dataclasses
import datetime as dt

from kwik_console.delivery import client as http


@dataclasses.dataclass(frozen=True)
class Claim:
    """A delivery this dispatcher holds the lease on, with what its next attempt needs."""

    delivery_id: int
    webhook_id: int
    url: str
    secrets: list[str]
    event_id: str
    body: bytes
    attempt_number: int
    # The webhook's custom headers, sent alongside the signature headers.
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    # time.monotonic() by which the request must start, or the lease could end mid-attempt.
    send_by: float = float("inf")
    claimed_at: float = 0.0


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A recorded attempt and where it left its delivery."""

    delivery_id: int
    attempt_number: int
    status: str
    http_code: int | None
    duration_ms: int
    response_body: str
    error: str | None
    next_attempt_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Finished:
    claim: Claim
    request_headers: dict[str, str]
    result: http.AttemptResult
    attempted_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Taken:
    """What a claim took: the claims kept, and the webhooks that may have more due."""

    claims: list[Claim]
    # Webhooks the claim looked at, and those of them that may have more due.
    checked: set[int]
    saturated: set[int]
    # The claim stopped at its overall limit: other webhooks may have more due.
    limited: bool
    # When a rate-limited webhook that still has due deliveries may send its next one.
    next_rate_at: dt.datetime | None = None
    # Webhooks the claim saw Live as it read their state: their claims already waiting are as good as fresh.
    live: set[int] = dataclasses.field(default_factory=set)
