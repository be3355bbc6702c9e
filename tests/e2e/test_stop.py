"""`kwik-console run` stopped as a service manager stops it: SIGTERM to the main process only."""

from __future__ import annotations

import os
import signal
import socket

import pytest
from sqlmodel import Session, func, select

from kwik_console.events.publishing import publish
from kwik_console.store import db
from kwik_console.store.tables import Attempt, Delivery
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import configure
from tests.e2e.server import ConsoleServer

pytestmark = pytest.mark.e2e


def test_sigterm_stops_the_whole_tree_and_hands_back_claims(tmp_path, receiver, monkeypatch):
    database = f"sqlite:///{tmp_path / 'kwik.db'}"
    configure(monkeypatch, KWIK_DATABASE_URL=database)
    with db.session_scope() as s:
        webhooks.create_webhook(
            session=s,
            data=WebhookInput(name="Hangs", url=receiver.url("/hang"), events=["payment.created"]),
            actor=audit.CLI,
        )
    ids = [i for n in range(40) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]
    receiver.release.clear()
    console = ConsoleServer(
        database, tmp_path / "console.log", KWIK_ATTEMPT_TIMEOUT="10", KWIK_LEASE_SECONDS="60"
    ).start()
    try:
        # 8 attempts on the wire (the per-webhook cap), 8 more claimed and waiting for a slot.
        assert receiver.wait_for(lambda reqs: len([r for r in reqs if r.path == "/hang"]) >= 8, timeout=30)
        with Session(db.get_engine()) as s:
            assert s.exec(select(func.count()).select_from(Delivery).where(Delivery.leased_by.is_not(None))).one() > 8
        os.kill(console.process.pid, signal.SIGTERM)  # the main process only, as systemd does first
        receiver.release.set()  # the attempts on the wire finish within the attempt timeout
        console.process.wait(timeout=60)
    finally:
        receiver.release.set()
        console.stop()

    with pytest.raises(ProcessLookupError):
        os.killpg(console.process.pid, 0)  # nothing of the console's process group is left
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", console.port))  # the port is free
    with Session(db.get_engine()) as s:
        leased = s.exec(select(func.count()).select_from(Delivery).where(Delivery.leased_by.is_not(None))).one()
        recorded = s.exec(select(func.count()).select_from(Attempt)).one()
    assert leased == 0  # the waiting claims were handed back, the in-flight ones recorded
    sent = len(receiver.hits("/hang"))
    assert recorded == sent and sent < len(ids)
