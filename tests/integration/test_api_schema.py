"""The OpenAPI description says what the server does: Schemathesis against the API served by a real process,
with a token and without one (local mode takes calls from this machine without), and the parts of the
description it cannot judge by itself: who may call without a token, the stream's events, each 409's title,
and a 404 for a path the console's outer apps route, not only the API's own."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from starlette.applications import Starlette

from kwik_console.core import settings
from kwik_console.store.db import session_scope
from kwik_console.team import audit, tokens
from tests.api_server import ApiServer
from tests.conftest import TEST_SECRET_KEY, configure
from tests.e2e.server import free_port
from tests.factories import make_hook

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from kwik_console.api import create_app  # noqa: E402
from kwik_console.runtime.reflex_patches import newline_safe  # noqa: E402

ST = str(Path(sys.executable).parent / "st")
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
]
# Per operation and phase: 22 operations, four phases, about 750 cases a run; the two runs take about two minutes.
MAX_EXAMPLES = 15


@pytest.fixture
def sqlite_kwik(monkeypatch, tmp_path, migrated_databases):
    """Local mode on a SQLite copy. Every attempt the run makes goes to a closed port on this machine, through
    KWIK_HTTP_PROXY: the schema's examples name hosts off it."""
    yield configure(
        monkeypatch,
        KWIK_DATABASE_URL=migrated_databases.sqlite_copy(tmp_path / "kwik.db"),
        KWIK_MODE="local",
        KWIK_HTTP_PROXY=f"http://127.0.0.1:{free_port()}",
        KWIK_CONNECT_TIMEOUT="1",
        KWIK_ATTEMPT_TIMEOUT="1",
        KWIK_LEASE_SECONDS="3",
        KWIK_API_RATE_LIMIT="1000000",
    )
    settings.get_settings.cache_clear()


@pytest.mark.parametrize("caller", ["token", "local"])
def test_schemathesis_finds_no_failure(sqlite_kwik, tmp_path, caller):
    headers = []
    if caller == "token":
        with session_scope() as session:
            made = tokens.create_token(
                session=session, name="schemathesis", scopes="read,write,publish", actor=audit.CLI
            )
        headers = ["-H", f"Authorization: Bearer {made.token}"]
    with ApiServer(tmp_path / "api.log") as api:
        run = subprocess.run(
            [
                ST,
                "run",
                api.url + "/api/v1/openapi.json",
                *headers,
                # The stream never ends by design: `listen` is its test (tests/integration/test_listen.py).
                "--exclude-path",
                "/api/v1/stream",
                "--checks",
                ",".join(CHECKS),
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                "22",
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=500,
            cwd=tmp_path,
        )
        log = (tmp_path / "api.log").read_text()
    out = run.stdout + run.stderr
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    print(f"\nschemathesis ({caller}): {cases.group(0) if cases else 'no count'}")
    assert run.returncode == 0, out[-6000:]
    assert cases and cases.group(1) == cases.group(2) and int(cases.group(1)) >= 300, out[-3000:]
    assert "Traceback" not in log, log[-3000:]


# ---------------------------------------------------------------- what the description says


def _description(monkeypatch, **env) -> dict:
    configure(monkeypatch, **env)
    with TestClient(create_app(), client=("127.0.0.1", 50123)) as client:
        return client.get("/api/v1/openapi.json").json()


def test_local_mode_describes_the_token_as_optional_and_hosted_mode_as_required(monkeypatch, kwik):
    local = _description(monkeypatch, KWIK_MODE="local")
    assert local["security"] == [{}, {"bearer": []}]
    assert (
        "optional for calls from this machine in local mode"
        in local["components"]["securitySchemes"]["bearer"]["description"]
    )
    hosted = _description(monkeypatch, KWIK_MODE="hosted", KWIK_SECRET_KEY=TEST_SECRET_KEY)
    assert hosted["security"] == [{"bearer": []}]
    for description in (local, hosted):
        parameters = [
            p for ops in description["paths"].values() for op in ops.values() for p in op.get("parameters", [])
        ]
        assert parameters and not [p for p in parameters if p["name"].lower() == "authorization"]


def test_the_streams_events_are_described_as_objects(monkeypatch, kwik):
    description = _description(monkeypatch, KWIK_MODE="local")
    content = description["paths"]["/api/v1/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    assert content["schema"] == {"$ref": "#/components/schemas/StreamEvent"}
    schemas = description["components"]["schemas"]
    assert schemas["StreamEvent"]["properties"]["data"] == {"$ref": "#/components/schemas/EventEnvelope"}
    assert schemas["EventEnvelope"]["type"] == "object"
    assert schemas["EventEnvelope"]["properties"]["data"]["type"] == "object"


@pytest.fixture
def api(kwik):
    with TestClient(create_app(), client=("127.0.0.1", 50123)) as client:
        yield client


def test_each_409_of_a_recovery_has_its_own_title(api):
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    disabled = make_hook(name="Off", status="disabled")
    answer = api.post(f"/api/v1/webhooks/{disabled.id}/recoveries", json={"since": since})
    assert answer.status_code == 409 and answer.headers["content-type"] == "application/problem+json"
    assert (answer.json()["title"], answer.json()["code"]) == ("The webhook is Disabled", "webhook_disabled")
    assert "is Disabled" in answer.json()["detail"]

    live = make_hook(name="On")  # nothing to recover: the recovery finishes at once, and cannot be cancelled
    first = api.post(f"/api/v1/webhooks/{live.id}/recoveries", json={"since": since})
    assert first.status_code == 202, first.text
    cancel = api.post(f"/api/v1/recoveries/{first.json()['id']}/cancel")
    assert cancel.status_code == 409
    assert (cancel.json()["title"], cancel.json()["code"]) == ("The recovery is not running", "recovery_not_running")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/webhooks/1%0A/pause",
        "/api/v1/webhooks/%0A1/deliveries",
        "/api/v1/webhooks/1%0A2/secret",
        "/api/v1/deliveries/1%0A/resend",
        "/api/v1/recoveries/%0A/cancel",
        "/api/v1/no%0Aroute/here",
    ],
)
def test_a_newline_in_a_path_gets_a_problem_behind_the_consoles_outer_apps(kwik, path):
    # As Reflex mounts the console's apps: at "" on Starlette, whose pattern stops at a newline.
    outer = Starlette()
    outer.mount("", create_app())
    with TestClient(newline_safe(outer), client=("127.0.0.1", 50123)) as client:
        answer = client.post(path)
    assert answer.status_code in (404, 405), answer.text
    assert answer.headers["content-type"] == "application/problem+json"
