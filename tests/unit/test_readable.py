"""What people read: audit details without `None` or raw ISO text, the delivery success rate beside the attempt
success rate, a disable reason without a UTC time in it."""

from __future__ import annotations

import datetime as dt

from kwik_console.events.rollups import Figures
from kwik_console.operations import health
from kwik_console.team.audit import describe
from kwik_console.ui.views import FiguresView, audit_detail


def test_audit_details_read_as_words_and_times_stay_times():
    lines = describe({"scopes": ["webhooks:read"], "expires_at": None, "name": "CI"})
    assert [(line.label, line.value) for line in lines] == [
        ("scopes", "webhooks:read"),
        ("expires", "never"),
        ("name", "CI"),
    ]
    [link] = describe({"link_expires_at": "2026-12-06T06:53"})
    assert link.label == "link expires" and link.value == dt.datetime(2026, 12, 6, 6, 53, tzinfo=dt.UTC)
    # The page gets the time as UTC ISO text, for the browser to show in the viewer's zone; no text beside it.
    [shown] = audit_detail({"previous_secret_expires_at": "2026-12-07T06:53:34.123Z"})
    assert shown.value == "" and shown.value_at.startswith("2026-12-07T06:53:34")
    assert "None" not in repr(audit_detail({"reason": None, "on": False}))


def test_audit_changes_show_only_what_changed_before_and_after():
    lines = describe({"before": {"name": "a", "max_per_second": None}, "after": {"name": "a", "max_per_second": 5}})
    assert [(line.label, line.was, line.value) for line in lines] == [("max per second", "no limit", "5")]
    [change] = audit_detail({"before": {"paused": True}, "after": {"paused": False}})
    assert change.change and (change.was, change.value) == ("yes", "no")


def test_delivery_success_rate_counts_deliveries_not_attempts():
    # Every delivery finally succeeded, on its third attempt: 33 % of attempts, 100 % delivered.
    view = FiguresView.of(Figures(attempts=30, successes=10, finished=10, delivered=10))
    assert (view.success_rate, view.delivery_rate) == ("33.3 %", "100.0 %")
    assert not view.healthy and view.delivered_healthy
    assert FiguresView.of(Figures()).delivery_rate == "—"


def test_old_disable_reasons_lose_their_utc_time():
    assert health.shown_reason("Every attempt failed for 5 days (since 2026-11-23 15:04 UTC).") == (
        "Every attempt failed for 5 days."
    )
    assert health.shown_reason("Every attempt failed for 30 min.") == "Every attempt failed for 30 min."
