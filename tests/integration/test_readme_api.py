"""The REST API examples of docs/api.md, run as they are written, against a live API on 127.0.0.1."""

from __future__ import annotations

import re
import subprocess

import pytest
from sqlmodel import Session, select

from kwik_console.store import db
from kwik_console.store.tables import Event
from kwik_console.team import audit, tokens
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.api_server import ApiServer
from tests.conftest import ROOT

API_DOC = (ROOT / "docs" / "api.md").read_text()


def block(language: str) -> str:
    (code,) = re.findall(rf"```{language}\n(.*?)```", API_DOC, re.S)
    return code


@pytest.fixture
def api(kwik, tmp_path):
    with db.session_scope() as s:
        webhooks.create_webhook(
            session=s,
            data=WebhookInput(
                name="Orders service",
                url="https://orders.example.invalid/k",
                events=["payment.created"],
                status="disabled",
            ),
            actor=audit.CLI,
        )
        token = tokens.create_token(session=s, name="README", scopes=["read", "publish"], actor=audit.CLI).token
    with ApiServer(tmp_path / "api.log") as server:
        yield server, token


def published() -> list[str]:
    with Session(db.get_engine()) as s:
        return [e.type for e in s.exec(select(Event)).all()]


def test_the_curl_example(api):
    server, token = api
    command = block("sh").replace("http://127.0.0.1:3000", server.url)
    done = subprocess.run(
        ["bash", "-c", command],
        env={"KWIK_TOKEN": token, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"deliveries"' in done.stdout and published() == ["payment.created"]
    # The Idempotency-Key makes a repeat publish nothing new.
    subprocess.run(
        ["bash", "-c", command],
        env={"KWIK_TOKEN": token, "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert published() == ["payment.created"]


def test_the_httpx_example(api):
    server, token = api
    code = block("python").replace("http://127.0.0.1:3000", server.url)
    scope = {"token": token}
    exec(compile(code, "docs/api.md", "exec"), scope)  # noqa: S102  the documentation's own example, as written
    assert [w["name"] for w in scope["page"]["items"]] == ["Orders service"]
    assert published() == ["payment.created"]
