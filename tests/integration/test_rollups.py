"""Rollups: kept by the dispatcher as attempts are recorded, and read by the webhook page's summary and charts."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util

import pytest

from kwik_console.core.clock import utcnow
from kwik_console.delivery import scheduler
from kwik_console.events import rollups
from kwik_console.events.publishing import publish
from kwik_console.store import db
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from tests.conftest import ROOT
from tests.factories import make_hook


def send(webhook_id):
    published = publish(
        "payment.created", {"object": "payment", "id": "pay_1"}, test=True, webhook_id=webhook_id, wake=False
    )
    return asyncio.run(scheduler.deliver_now(published.delivery_ids))[0]


@pytest.mark.parametrize(("duration", "expected"), [(0, 0), (5, 0), (6, 1), (10_000, 18), (10_001, 19), (99_999, 19)])
def test_bins(duration, expected):
    assert rollups.bin_of(duration) == expected


def test_percentiles_from_a_histogram():
    bins = [0] * rollups.BINS
    bins[rollups.bin_of(40)] = 90  # (35, 50]
    bins[rollups.bin_of(1200)] = 10  # (1000, 1500]
    assert 35 < rollups.percentile(bins, 0.5) <= 50
    assert 1000 < rollups.percentile(bins, 0.95) <= 1500
    assert rollups.percentile([0] * rollups.BINS, 0.5) is None


def test_recorded_attempts_reach_the_summary_and_the_charts(kwik, receiver):
    ok, failing = make_hook(receiver.url("/ok"), name="OK"), make_hook(receiver.url("/fail"), name="Failing")
    for _ in range(3):
        assert send(ok.id).status == "success"
    assert send(failing.id).status == "retrying"
    now = utcnow()
    with db.get_engine().connect() as conn:
        figures = rollups.summary(conn, ok.id, now=now)
        assert (figures["24h"].attempts, figures["24h"].successes) == (3, 3)
        assert figures["7d"].attempts == 3 and figures["24h"].success_rate == 1.0
        assert figures["24h"].p50_ms is not None and figures["24h"].p95_ms >= figures["24h"].p50_ms
        failing_figures = rollups.summary(conn, failing.id, now=now)["24h"]
        assert (failing_figures.attempts, failing_figures.failures, failing_figures.retrying) == (1, 1, 1)

        for key, points in (("1h", 60), ("24h", 96), ("7d", 84), ("30d", 120)):
            chart = rollups.series(conn, ok.id, key, now=now)
            assert len(chart) == points
            assert sum(p.successes for p in chart) == 3 and sum(p.failures for p in chart) == 0
            assert chart[-1].start <= now < chart[-1].start + dt.timedelta(seconds=rollups.RANGES[key].step_s)
        assert sum(p.failures for p in rollups.series(conn, failing.id, "1h", now=now)) == 1

        overall, worst = rollups.overview(conn, now=now)
        assert (overall.attempts, overall.successes, overall.retrying) == (4, 3, 1)
        assert [w.name for w in worst] == ["Failing", "OK"]  # failing first
        # Delivered, of each webhook's finished deliveries: the retrying one has none finished yet.
        assert [(w.figures.finished, w.figures.delivered) for w in worst] == [(0, 0), (3, 3)]
        assert worst[1].figures.delivery_rate == 1.0 and worst[0].figures.delivery_rate is None


def test_rows_are_added_not_replaced_and_leave_with_their_webhook(kwik):
    hook = make_hook("https://127.0.0.1:9/orders/kwik")
    when = dt.datetime(2026, 11, 29, 10, 15, 30, tzinfo=dt.UTC)
    with db.get_engine().begin() as conn:
        rollups.add_rows(conn, [(hook.id, when, 200, 40), (hook.id, when, 503, 900)])
        rollups.add_rows(conn, [(hook.id, when + dt.timedelta(seconds=10), 200, 60)])
    with db.get_engine().connect() as conn:
        minute = conn.execute(rollups.minute_table.select()).one()
        assert (minute.attempts, minute.successes, minute.duration_ms_sum) == (3, 2, 1000)
        assert minute.bucket == int(when.replace(second=0).timestamp())
        assert conn.execute(rollups.hour_table.select()).one().attempts == 3
    with db.session_scope() as s:
        webhooks.delete_webhook(session=s, webhook_id=hook.id, actor=audit.CLI)
    with db.get_engine().connect() as conn:
        assert conn.execute(rollups.minute_table.select()).all() == []


def test_rebuilds_from_the_attempts_table_match_what_was_kept(kwik, receiver):
    """Migration 0003 (its own SQL) and rollups.rebuild fill the rollups with the rows the dispatcher keeps."""
    path = ROOT / "kwik_console/store/migrations/versions/0003_rollups_and_payload_search.py"
    spec = importlib.util.spec_from_file_location("migration_0003", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    hook = make_hook(receiver.url("/ok"))
    send(hook.id)
    send(hook.id)
    with db.get_engine().begin() as conn:
        kept = {t: conn.execute(t.select()).all() for t in (rollups.minute_table, rollups.hour_table)}
        assert sum(r.attempts for r in kept[rollups.hour_table]) == 2
        for table in kept:
            conn.execute(table.delete())
        migration._rebuild_rollups(conn)
        assert {t: conn.execute(t.select()).all() for t in kept} == kept
        assert rollups.rebuild(conn, since=utcnow() - dt.timedelta(days=1)) == 2  # the docs' screenshots use it
        assert {t: conn.execute(t.select()).all() for t in kept} == kept


def test_the_first_delivery_since_a_time_is_found_by_its_id_with_gaps_in_the_ids(kwik):
    """Delivered rates count deliveries from the first one made since the window opened: found by halving the
    ids, it must be the one a scan by time would find, whatever ids retention or deletes left out."""
    from sqlalchemy import delete, select, update

    from kwik_console.store.tables import Delivery

    hook = make_hook()
    ids = [publish("payment.created", {"n": n}, webhook_id=hook.id, wake=False).delivery_ids[0] for n in range(40)]
    start = utcnow() - dt.timedelta(hours=40)
    engine = db.get_engine()
    with engine.begin() as conn:
        for n, delivery_id in enumerate(ids):  # an hour apart, oldest first
            conn.execute(
                update(Delivery).where(Delivery.id == delivery_id).values(created_at=start + dt.timedelta(hours=n))
            )
        conn.execute(delete(Delivery).where(Delivery.id.in_(ids[5:25:3] + ids[30:33])))  # gaps
    with engine.connect() as conn:
        kept = conn.execute(select(Delivery.id, Delivery.created_at).order_by(Delivery.id)).all()
        for hours in (-1, 0, 0.5, 7, 11, 20, 29.5, 31, 39, 39.5, 45):
            since = start + dt.timedelta(hours=hours)
            expected = next((r.id for r in kept if r.created_at >= since), None)
            assert rollups._first_delivery_since(conn, since) == expected, hours
