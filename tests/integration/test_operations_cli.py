"""Operating deliveries from `kwik-console`: pause and resume, rates, resend, recover, notices, retention."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess

import pytest
import sqlalchemy as sa

from kwik_console.events import catalog
from kwik_console.events.publishing import publish
from kwik_console.operations import health, retention
from kwik_console.store.db import get_engine, session_scope
from kwik_console.store.tables import Attempt, Delivery, Event, Webhook
from kwik_console.team import audit
from tests.conftest import KWIK_CONSOLE
from tests.integration.test_cli import WHEN, cells, create, run
from tests.integration.test_worker import start_worker, stop


def ok(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out


def refused(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "", (out, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("kwik-console: error: ")
    return err


def audit_trail() -> list[tuple[str, str]]:
    with session_scope() as session:
        return [(e.action, e.actor_email) for e in reversed(audit.list_entries(session=session).items)]


def failed_deliveries(capsys, webhook_id: int, count: int) -> None:
    """Deliveries that ended as Failure, never sent: published (not attempted), then the webhook disabled."""
    for n in range(count):
        publish("payment.created", {"id": f"pay_{n}"}, webhook_id=webhook_id, wake=False)
    ok(capsys, "webhooks", "update", str(webhook_id), "--status", "disabled")
    ok(capsys, "webhooks", "resume", str(webhook_id))
    items = json.loads(ok(capsys, "deliveries", "list", "--webhook", str(webhook_id), "--json"))["items"]
    assert [d["status"] for d in items] == ["failure"] * count


# ---------------------------------------------------------------- pause, resume, rate, health


def test_pause_and_resume(kwik, capsys):
    create(capsys, "https://127.0.0.1:9/orders/kwik")
    paused = json.loads(ok(capsys, "webhooks", "pause", "1", "--json"))
    assert paused["status"] == "paused" and "secret" not in paused
    lines = ok(capsys, "webhooks", "show", "1").splitlines()
    assert cells(lines[2]) == ["Status", "Paused"] and cells(lines[3]) == ["Max per second", "no limit"]
    header, _rule, row = ok(capsys, "webhooks", "list").splitlines()
    assert cells(header) == ["ID", "Created", "Name", "Webhook URL", "Status", "Max/s", "Failing since"]
    assert cells(row)[-1] == "Paused"
    assert json.loads(ok(capsys, "webhooks", "resume", "1", "--json"))["status"] == "live"

    ok(capsys, "webhooks", "update", "1", "--status", "disabled")
    assert "set it Live, then pause it" in refused(capsys, "webhooks", "pause", "1")
    assert json.loads(ok(capsys, "webhooks", "resume", "1", "--json"))["status"] == "live"  # re-enabled
    assert "Webhook 9 does not exist." in refused(capsys, "webhooks", "pause", "9")
    assert [a for a in audit_trail() if a[0] in ("webhook.paused", "webhook.resumed")] == [
        ("webhook.paused", "kwik-console CLI"),
        ("webhook.resumed", "kwik-console CLI"),
        ("webhook.resumed", "kwik-console CLI"),
    ]


def test_max_per_second_on_create_and_update(kwik, capsys):
    code, out, err = run(
        capsys,
        "webhooks",
        "create",
        "--name",
        "A",
        "--url",
        "https://127.0.0.1:9/a",
        "--events",
        "payment.created",
        "--max-per-second",
        "2.5",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["max_per_second"] == 2.5
    assert cells(ok(capsys, "webhooks", "show", "1").splitlines()[3]) == ["Max per second", "2.5"]
    assert cells(ok(capsys, "webhooks", "list").splitlines()[2])[-1] == "2.5"
    assert json.loads(ok(capsys, "webhooks", "update", "1", "--name", "B", "--json"))["max_per_second"] == 2.5
    assert json.loads(ok(capsys, "webhooks", "update", "1", "--max-per-second", "40", "--json"))["max_per_second"] == 40
    assert (
        json.loads(ok(capsys, "webhooks", "update", "1", "--max-per-second", "none", "--json"))["max_per_second"]
        is None
    )
    ok(capsys, "webhooks", "update", "1", "--max-per-second", "7")
    assert json.loads(ok(capsys, "webhooks", "update", "1", "--max-per-second", "", "--json"))["max_per_second"] is None
    for bad in ("0", "5000", "fast"):
        assert "Max deliveries per second must be a number from 0.1 to 1,000" in refused(
            capsys, "webhooks", "update", "1", "--max-per-second", bad
        )
    assert "Max deliveries per second" in refused(
        capsys,
        "webhooks",
        "create",
        "--name",
        "C",
        "--url",
        "https://127.0.0.1:9/c",
        "--events",
        "payment.created",
        "--max-per-second",
        "-3",
    )
    assert json.loads(ok(capsys, "webhooks", "list", "--json"))["total"] == 1


def test_an_automatically_disabled_webhook_shows_why_and_resume_re_enables_it(kwik, capsys):
    create(capsys, "https://127.0.0.1:9/orders/kwik")
    six_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=6)
    with get_engine().begin() as conn:
        conn.execute(sa.update(Webhook).values(failing_since=six_days_ago))
    assert health.disable_failing(get_engine(), after_seconds=5 * 86400) == [1]

    shown = json.loads(ok(capsys, "webhooks", "show", "1", "--json"))
    assert shown["status"] == "disabled" and shown["disabled_reason"].startswith("Every attempt failed for 5 days")
    assert shown["failing_since"].startswith(six_days_ago.date().isoformat()) and shown["disabled_at"]
    lines = ok(capsys, "webhooks", "show", "1").splitlines()
    failing = next(line for line in lines if line.strip().startswith("Failing since"))
    assert re.fullmatch(WHEN, cells(failing)[1])
    disabled = next(line for line in lines if line.strip().startswith("Disabled"))
    assert "Every attempt failed for 5 days" in disabled
    listed = ok(capsys, "webhooks", "list").splitlines()
    assert cells(listed[2])[4] == "Disabled" and re.fullmatch(WHEN, cells(listed[2])[5])
    assert re.fullmatch(rf"Webhook 1 disabled {WHEN}: Every attempt failed for 5 days.*", listed[3])

    resumed = json.loads(ok(capsys, "webhooks", "resume", "1", "--json"))
    assert (resumed["status"], resumed["disabled_reason"], resumed["failing_since"]) == ("live", None, None)
    assert len(ok(capsys, "webhooks", "list").splitlines()) == 3


# ---------------------------------------------------------------- resend


def test_resend_prints_the_real_outcome(kwik, capsys, receiver):
    create(capsys, receiver.url("/fail"))
    ok(capsys, "events", "publish", "payment.created", "--test", "--webhook", "1")
    ok(capsys, "webhooks", "update", "1", "--url", receiver.url("/ok"))

    out = ok(capsys, "deliveries", "resend", "1")
    first, response = out.splitlines()
    assert re.fullmatch(r"Resent delivery 1 \(attempt 2\): Success, HTTP 200, \d+ ms", first)
    assert response.strip() == 'Response: {"received":true}'
    (hit,) = receiver.hits("/ok")
    shown = json.loads(ok(capsys, "deliveries", "show", "1", "--json"))
    assert hit.headers["webhook-id"] == shown["event_id"]
    assert [(a["number"], a["http_code"]) for a in shown["attempts"]] == [(1, 500), (2, 200)]

    ok(capsys, "webhooks", "update", "1", "--url", receiver.url("/reset"))
    outcome = json.loads(ok(capsys, "deliveries", "resend", "1", "--json"))
    # The third attempt is the schedule's last (KWIK_RETRY_SCHEDULE has two retries): it ends as Failure.
    assert (
        outcome["delivery_id"],
        outcome["attempt"],
        outcome["status"],
        outcome["http_code"],
        outcome["retry_at"],
    ) == (1, 3, "failure", None, None)
    assert outcome["error"]
    text = ok(capsys, "deliveries", "resend", "1").splitlines()
    assert re.fullmatch(r"Resent delivery 1 \(attempt 4\): Failure, no HTTP code, \d+ ms", text[0])
    assert len(text) == 2 and text[1].strip().startswith("Error: ")
    assert ("delivery.resent", "kwik-console CLI") in audit_trail()

    ok(capsys, "webhooks", "pause", "1")
    assert "is Paused: set its Status to Live to resend" in refused(capsys, "deliveries", "resend", "1")
    assert "Delivery 8 does not exist." in refused(capsys, "deliveries", "resend", "8")


# ---------------------------------------------------------------- recover


def test_recover_start_status_list_and_cancel(kwik, capsys):
    create(capsys, "https://127.0.0.1:9/orders/kwik")
    failed_deliveries(capsys, 1, 2)
    started = json.loads(ok(capsys, "recover", "start", "1", "--since", dt.date.today().isoformat(), "--json"))
    assert (started["state"], started["total"], started["queued"], started["statuses"], started["created_by"]) == (
        "running",
        2,
        0,
        ["failure"],
        "kwik-console CLI",
    )
    assert started["since"] == dt.datetime.combine(dt.date.today(), dt.time(), dt.UTC).isoformat()

    assert "already running" in refused(capsys, "recover", "start", "1", "--since", "2024-01-01")
    status = ok(capsys, "recover", "status", str(started["id"])).splitlines()
    assert status[0] == (
        f"Recovery {started['id']} of webhook 1: Running, 0% — 0 of 2 sent (0 succeeded, 0 failed), "
        "0 queued, still queuing"
    )
    assert cells(status[2]) == ["Event types", "all"] and cells(status[3]) == ["Statuses", "Failure"]
    assert json.loads(ok(capsys, "recover", "status", str(started["id"]), "--json")) == started

    cancelled = json.loads(ok(capsys, "recover", "cancel", str(started["id"]), "--json"))
    assert cancelled["state"] == "cancelled" and cancelled["finished_at"]
    assert "already cancelled" in refused(capsys, "recover", "cancel", str(started["id"]))

    second = json.loads(
        ok(
            capsys,
            "recover",
            "start",
            "1",
            "--since",
            "2024-01-01T00:00:00+02:00",
            "--type",
            "invoice.created",
            "--type",
            "payment.created,customer.created",
            "--status",
            "failure",
            "retrying",
            "--json",
        )
    )
    assert second["event_types"] == ["customer.created", "invoice.created", "payment.created"]
    assert second["statuses"] == ["failure", "retrying"] and second["since"] == "2023-12-31T22:00:00+00:00"
    header, _rule, *rows = ok(capsys, "recover", "list", "1").splitlines()
    assert cells(header) == ["ID", "Started", "State", "Done", "Sent", "Succeeded", "Failed", "Since", "By"]
    assert [cells(r)[:3] for r in rows] == [
        [str(second["id"]), cells(rows[0])[1], "Running"],
        [str(started["id"]), cells(rows[1])[1], "Cancelled"],
    ]
    assert [r["id"] for r in json.loads(ok(capsys, "recover", "list", "1", "--json"))] == [second["id"], started["id"]]
    assert [a for a, _ in audit_trail() if a.startswith("recovery.")] == [
        "recovery.started",
        "recovery.cancelled",
        "recovery.started",
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["recover", "start", "1", "--since", "last tuesday"], "--since 'last tuesday' is not a date"),
        (["recover", "start", "1", "--since", "2999-01-01"], "must be in the past"),
        (["recover", "start", "1"], "--since"),
        (["recover", "start", "1", "--since", "2024-01-01", "--status", "success"], "invalid choice"),
        (
            ["recover", "start", "1", "--since", "2024-01-01", "--type", "payment.nope"],
            "Unknown event type: payment.nope",
        ),
        (["recover", "start", "5", "--since", "2024-01-01"], "Webhook 5 does not exist."),
        (["recover", "status", "5"], "Recovery 5 does not exist."),
        (["recover", "cancel", "5"], "Recovery 5 does not exist."),
        (["recover", "list", "5"], "Webhook 5 does not exist."),
    ],
)
def test_bad_recover_input_is_one_line(kwik, capsys, argv, message):
    create(capsys, "https://127.0.0.1:9/orders/kwik")
    assert message in refused(capsys, *argv)
    assert ok(capsys, "recover", "list", "1").strip() == "No recoveries of webhook 1 yet."


def test_a_worker_runs_the_recovery_and_status_watch_follows_it_to_the_end(kwik, capsys, receiver, cli_env):
    create(capsys, receiver.url("/ok"))
    failed_deliveries(capsys, 1, 3)
    assert receiver.hits("/ok") == []
    started = json.loads(ok(capsys, "recover", "start", "1", "--since", "2024-01-01", "--json"))
    worker = start_worker(cli_env)
    try:
        watched = subprocess.run(
            [*KWIK_CONSOLE, "recover", "status", str(started["id"]), "--watch"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        log = stop(worker)
    assert watched.returncode == 0, (watched.stderr, log)
    lines = watched.stdout.splitlines()
    assert lines[-1] == (
        f"Recovery {started['id']} of webhook 1: Finished, 100% — 3 of 3 sent (3 succeeded, 0 failed), 3 queued"
    )
    assert all(line.startswith(f"Recovery {started['id']} of webhook 1: ") for line in lines)
    assert len(receiver.hits("/ok")) == 3
    items = json.loads(ok(capsys, "deliveries", "list", "--webhook", "1", "--json"))["items"]
    assert [d["status"] for d in items] == ["success"] * 3
    # --watch on a recovery that has ended prints it once and returns.
    final = [
        json.loads(line)
        for line in ok(capsys, "recover", "status", str(started["id"]), "--watch", "--json").splitlines()
    ]
    assert [(p["state"], p["succeeded"]) for p in final] == [("finished", 3)]


# ---------------------------------------------------------------- the operational webhook


def test_operational_webhook_set_show_and_remove(kwik, capsys, receiver):
    assert ok(capsys, "operational-webhook", "show").startswith("No operational webhook")
    assert json.loads(ok(capsys, "operational-webhook", "show", "--json")) is None
    saved = json.loads(ok(capsys, "operational-webhook", "set", receiver.url("/ops"), "--json"))
    assert saved["url"] == receiver.url("/ops") and saved["secret"].startswith("whsec_")
    assert saved["events"] == catalog.operational_type_names()
    lines = ok(capsys, "operational-webhook", "show").splitlines()
    assert lines[0] == f"Operational webhook: {receiver.url('/ops')}"
    assert cells(lines[-1]) == ["Signing secret", saved["secret"]]
    assert ok(capsys, "webhooks", "list").strip() == "No webhooks yet."  # not one of the merchant's
    assert "must use https://" in refused(capsys, "operational-webhook", "set", "http://ops.example.invalid/kwik")
    moved = json.loads(ok(capsys, "operational-webhook", "set", receiver.url("/ops2"), "--json"))
    assert (moved["id"], moved["secret"]) == (saved["id"], saved["secret"])

    assert ok(capsys, "operational-webhook", "remove").startswith("Removed the operational webhook")
    assert json.loads(ok(capsys, "operational-webhook", "remove", "--json")) == {"removed": False}
    assert [a for a in audit_trail() if a[0].startswith("operational_webhook.")] == [
        ("operational_webhook.set", "kwik-console CLI"),
        ("operational_webhook.set", "kwik-console CLI"),
        ("operational_webhook.removed", "kwik-console CLI"),
    ]


# ---------------------------------------------------------------- retention


def test_retention_purge_removes_what_is_old_and_keeps_what_is_retrying(kwik, capsys, receiver, monkeypatch):
    create(capsys, receiver.url("/ok"))
    ok(capsys, "events", "publish", "payment.created")  # 1: Success, to be old
    ok(capsys, "webhooks", "update", "1", "--url", receiver.url("/fail"))
    ok(capsys, "events", "publish", "payment.created")  # 2: Retrying, old but still to be attempted
    ok(capsys, "events", "publish", "payment.created")  # 3: Retrying, recent
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    with get_engine().begin() as conn:
        conn.execute(sa.update(Delivery).where(Delivery.id.in_([1, 2])).values(created_at=old))
        event_ids = [r for r in conn.execute(sa.select(Delivery.event_id).where(Delivery.id.in_([1, 2]))).scalars()]
        conn.execute(sa.update(Event).where(Event.id.in_(event_ids)).values(created_at=old))

    reports = []
    purge = retention.purge

    def kept(*args, **kwargs):
        reports.append(purge(*args, **kwargs))
        return reports[-1]

    monkeypatch.setattr(retention, "purge", kept)

    data = json.loads(ok(capsys, "retention", "purge", "--days", "30", "--json"))
    assert (data["days"], data["events"], data["deliveries"], data["attempts"]) == (30, 1, 1, 1)
    # The walk's own figures, as the purge measured them.
    (report,) = reports
    assert (data["batches"], data["longest_lock_ms"]) == (report.batches, round(report.longest_lock_ms, 1))
    assert data["batches"] >= 2 and report.longest_lock_ms > 0
    with get_engine().connect() as conn:
        assert sorted(conn.execute(sa.select(Delivery.id)).scalars()) == [2, 3]
        assert conn.execute(sa.select(sa.func.count()).select_from(Attempt)).scalar_one() == 2

    text = ok(capsys, "retention", "purge").splitlines()  # KWIK_RETENTION_DAYS: 30 by default
    again = reports[-1]
    assert re.fullmatch(
        rf"Purged 0 events, 0 deliveries and 0 attempts older than 30 days \({WHEN}\) in {again.batches} batches\.",
        text[0],
    )
    assert text[1] == f"Longest write lock: {again.longest_lock_ms:.1f} ms."
    assert ok(capsys, "retention", "purge", "--days", "0").strip() == "Retention is off (0 days): nothing was purged."
    assert "--days must be 0" in refused(capsys, "retention", "purge", "--days", "-1")
