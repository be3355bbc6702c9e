"""The API as real processes serve it: idempotency under concurrent repeats, rate limits across two
replicas, and Schemathesis over every operation."""

from __future__ import annotations

import concurrent.futures
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from kwik_console import audit, tokens, webhooks
from kwik_console.db import get_engine, session_scope
from kwik_console.models import Delivery, Event
from tests.api_server import ApiServer
from tests.conftest import configure

PUBLISH = {"type": "payment.created", "data": {"id": "pay_01JDX5C7G2M4P9X1Q8W3V6NRTE", "amount": 12500}}


def _token(scopes: str) -> str:
    with session_scope() as session:
        return tokens.create_token(session=session, name="live", scopes=scopes, actor=audit.CLI).token


def test_twenty_concurrent_repeats_of_one_key_publish_one_event(kwik, tmp_path):
    with session_scope() as session:
        webhooks.create_webhook(session=session, data=webhooks.WebhookInput(
            name="Orders", url="https://127.0.0.1:9/hooks", events=["payment.created"]))
    headers = {"Authorization": f"Bearer {_token('publish')}", "Idempotency-Key": "order-1042-created"}
    with ApiServer(tmp_path / "a.log") as a, ApiServer(tmp_path / "b.log") as b:
        def send(i: int) -> httpx.Response:
            return httpx.post((a, b)[i % 2].url + "/api/v1/events", json=PUBLISH, headers=headers, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(send, range(20)))
    assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses if r.status_code != 202]
    bodies = {json.dumps(r.json(), sort_keys=True) for r in responses}
    assert len(bodies) == 1
    assert sorted(r.headers["idempotent-replayed"] for r in responses) == ["false"] + ["true"] * 19
    with get_engine().connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Event)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar() == 1


def _wait_for_a_fresh_window() -> None:
    """The limit counts per minute: start early in a window, so the test's requests all fall in one
    (25 s for about ten requests: a loaded machine's first requests to a new server can be slow)."""
    from kwik_console.api.ratelimit import WINDOW_SECONDS

    while time.time() % WINDOW_SECONDS > WINDOW_SECONDS - 25:
        time.sleep(0.2)


def test_the_rate_limit_holds_across_two_processes(kwik, monkeypatch, tmp_path):
    configure(monkeypatch, KWIK_API_RATE_LIMIT="6")
    headers = {"Authorization": f"Bearer {_token('read')}"}
    with ApiServer(tmp_path / "a.log") as a, ApiServer(tmp_path / "b.log") as b:
        _wait_for_a_fresh_window()
        answers = [httpx.get((a, b)[i % 2].url + "/api/v1/webhooks", headers=headers, timeout=30) for i in range(10)]
    assert [r.status_code for r in answers] == [200] * 6 + [429] * 4
    assert [r.headers["ratelimit-remaining"] for r in answers[:6]] == ["5", "4", "3", "2", "1", "0"]
    refused = answers[6]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-limit"] == "6"
    # Another token has its own limit.
    other = {"Authorization": f"Bearer {_token('read')}"}
    with ApiServer(tmp_path / "c.log") as c:
        assert httpx.get(c.url + "/api/v1/webhooks", headers=other, timeout=30).status_code == 200


@pytest.fixture
def sqlite_kwik(monkeypatch, tmp_path):
    from kwik_console import settings

    yield configure(monkeypatch, KWIK_DATABASE_URL=f"sqlite:///{tmp_path / 'kwik.db'}", KWIK_MODE="local",
                    KWIK_CONNECT_TIMEOUT="1", KWIK_ATTEMPT_TIMEOUT="1", KWIK_LEASE_SECONDS="3")
    settings.get_settings.cache_clear()


def test_schemathesis_finds_no_server_error_and_no_response_that_breaks_its_schema(sqlite_kwik, tmp_path):
    pytest.importorskip("schemathesis")
    st = str(Path(sys.executable).parent / "st")
    token = _token("read,write,publish")
    with ApiServer(tmp_path / "api.log") as api:
        run = subprocess.run(
            [st, "run", api.url + "/api/v1/openapi.json", "-H", f"Authorization: Bearer {token}",
             # The stream never ends by design: `listen` is its test (tests/test_listen.py).
             "--exclude-path", "/api/v1/stream",
             "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,"
                         "content_type_conformance",
             "--max-examples", "25", "--generation-deterministic", "--no-color"],
            capture_output=True, text=True, timeout=540)
        log = (tmp_path / "api.log").read_text()
    out = run.stdout + run.stderr
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    print(f"\nschemathesis: {cases.group(0) if cases else 'no count'}")
    assert run.returncode == 0, out[-4000:]
    assert cases and cases.group(1) == cases.group(2) and int(cases.group(1)) >= 300, out[-2000:]
    assert "Traceback" not in log, log[-3000:]
