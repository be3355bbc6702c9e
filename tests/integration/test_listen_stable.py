"""`kwik-console listen` with a secret that stays: the same across restarts (kept by the console, sealed at rest),
printed with --print-secret, replaced with --rotate-secret; --print-json for pipes; --headers on each forward;
a forward that fails is reported on its line and listen carries on.

The real command runs against the API served by a real process, forwarding to a real receiver on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import warnings

import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook as Verifier

from kwik_console.events import catalog
from kwik_console.events.publishing import publish
from kwik_console.store.db import get_engine, session_scope
from kwik_console.team import audit, tokens
from tests.api_server import ApiServer
from tests.conftest import KWIK_CONSOLE, TEST_SECRET_KEY, configure

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from kwik_console.api import create_app  # noqa: E402


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _kwik_console(cli_env, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*KWIK_CONSOLE, *argv], env=cli_env, capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def _listening(cli_env, tmp_path, name: str, *argv: str):
    """A `listen` process, its stdout and stderr in files; stopped on the way out."""
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen([*KWIK_CONSOLE, "listen", *argv], env=cli_env, stdout=stdout, stderr=stderr)
        try:
            yield out, err
        finally:
            process.terminate()
            process.wait(timeout=10)


def _publish_until(seen, what: str) -> list[str]:
    """Publish payment.created until `seen()`: listen's stream is open once one comes through. The ids; those
    published before the stream opened are never streamed (it starts at "now")."""
    published = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        published.append(publish("payment.created", catalog.sample_data("payment.created")).event.id)
        for _ in range(40):  # about 2 s: a published event is streamed a second after it settles
            if seen():
                return published
            time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again at once: connecting to it is refused


def test_listen_restarted_twice_signs_with_the_same_secret(kwik, monkeypatch, tmp_path, receiver, cli_env):
    cli_env["KWIK_SECRET_KEY"] = configure(monkeypatch, KWIK_SECRET_KEY=TEST_SECRET_KEY).secret_keys[0]
    with ApiServer(tmp_path / "api.log", KWIK_SECRET_KEY=TEST_SECRET_KEY) as api:
        printed = _kwik_console(cli_env, "listen", "--print-secret", "--console", api.url)
        assert printed.returncode == 0, printed.stderr
        secret = printed.stdout.strip()
        assert secret.startswith("whsec_") and printed.stdout.count("\n") == 1
        verifier = Verifier(secret)
        forwarded_by_run = []
        for run in range(3):
            already = len(receiver.requests)
            with _listening(
                cli_env, tmp_path, f"run{run}", "--forward-to", receiver.url("/ok"), "--console", api.url
            ) as (out, _):
                _publish_until(lambda: len(receiver.requests) > already, f"run {run}'s first forward")
                assert (
                    f"Signing secret (the same each time; --rotate-secret for a new one): {secret}" in out.read_text()
                )
            forwarded_by_run.append(receiver.requests[already:])
        assert all(forwarded_by_run)
        for request in [r for run in forwarded_by_run for r in run]:
            verifier.verify(request.body, request.headers)  # raises if signed with any other secret
        assert _kwik_console(cli_env, "listen", "--print-secret", "--console", api.url).stdout.strip() == secret

    with get_engine().connect() as connection:
        stored = connection.execute(sa.text("SELECT secret FROM console_secret WHERE name = 'listen'")).scalar_one()
    assert stored.startswith("fernet:") and secret not in stored  # sealed at rest, like a webhook's secret


def test_rotate_secret_makes_a_new_one_and_says_so(kwik, tmp_path, cli_env):
    with ApiServer(tmp_path / "api.log") as api:
        first = _kwik_console(cli_env, "listen", "--print-secret", "--console", api.url).stdout.strip()
        rotated = _kwik_console(cli_env, "listen", "--rotate-secret", "--console", api.url)
        assert rotated.returncode == 0, rotated.stderr
        new = _kwik_console(cli_env, "listen", "--print-secret", "--console", api.url).stdout.strip()
        assert new.startswith("whsec_") and new != first
        assert f"Rotated listen's signing secret: {new}" in rotated.stdout
    with session_scope() as session:
        entries = [(e.action, e.target) for e in audit.list_entries(session=session).items]
    assert ("secret.rotated", "listen's signing secret") in entries
    assert entries.count(("secret.revealed", "listen's signing secret")) == 2


def test_print_json_writes_one_event_a_line_and_headers_go_with_each_forward(kwik, tmp_path, receiver, cli_env):
    with ApiServer(tmp_path / "api.log") as api:
        argv = ["--print-json", "--forward-to", receiver.url("/ok"), "--console", api.url]
        argv += ["--headers", "X-Env: local", "--headers", "Authorization: Bearer test-only"]
        with _listening(cli_env, tmp_path, "json", *argv) as (out, err):
            published = _publish_until(lambda: out.read_text().count("\n") >= 1, "the first JSON line")
            published = published[published.index(json.loads(out.read_text().splitlines()[0])["id"]) :]
            published += [publish("invoice.created", catalog.sample_data("invoice.created")).event.id for _ in range(3)]
            _wait(lambda: out.read_text().count("\n") >= len(published), 60, "a JSON line for every event")
            _wait(lambda: err.read_text().count("-->") >= len(published), 30, "every forward's line")
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["id"] for e in events] == published
    assert events[-1]["type"] == "invoice.created" and events[-1]["data"] == catalog.sample_data("invoice.created")
    assert all(e["test"] is False and e["created_at"] for e in events)
    human = err.read_text()
    assert "Ready! Forwarding every event" in human and "whsec_" in human
    assert "Stream dropped" not in human  # nothing cut it: the stream stays open while listen reads
    assert all(r.headers["x-env"] == "local" for r in receiver.requests)
    assert all(r.headers["authorization"] == "Bearer test-only" for r in receiver.requests)
    assert [r.headers["webhook-id"] for r in receiver.requests] == published
    for request in receiver.requests:
        Verifier(human.split("one): ")[1].split()[0]).verify(request.body, request.headers)


def test_a_refused_forward_is_reported_and_listen_carries_on(kwik, tmp_path, cli_env):
    with ApiServer(tmp_path / "api.log") as api:
        argv = ["--print-json", "--forward-to", f"http://127.0.0.1:{_closed_port()}/hook", "--console", api.url]
        with _listening(cli_env, tmp_path, "refused", *argv) as (out, err):
            published = _publish_until(lambda: out.read_text().count("\n") >= 1, "the first event")
            published = published[published.index(json.loads(out.read_text().splitlines()[0])["id"]) :]
            published += [publish("payment.updated", catalog.sample_data("payment.updated")).event.id for _ in range(2)]
            _wait(lambda: err.read_text().count("-->") >= len(published), 60, "a line for every forward")
    lines = [line for line in err.read_text().splitlines() if "-->" in line]
    assert len(lines) == len(published)
    assert all("[failed: connection refused]" in line for line in lines), lines
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == published


def test_a_5xx_is_reported_as_failed_and_the_next_forward_goes_through(kwik, tmp_path, receiver, cli_env):
    with ApiServer(tmp_path / "api.log") as api:
        argv = ["--forward-to", receiver.url("/flaky"), "--console", api.url]  # 500 once, then 200
        with _listening(cli_env, tmp_path, "flaky", *argv) as (out, _):
            _publish_until(lambda: len(receiver.requests) >= 1, "the first forward")
            publish("payment.created", catalog.sample_data("payment.created"))
            _wait(lambda: out.read_text().count("-->") >= 2, 60, "two forwards' lines")
    lines = [line for line in out.read_text().splitlines() if "-->" in line]
    assert "[500, failed]" in lines[0] and "[200]" in lines[1], lines


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--headers", "webhook-signature: v1,abc"], "webhook-* headers carry the signature"),
        (["--headers", "Content-Type: text/plain"], "content-* headers describe the body"),
        (["--headers", "no colon"], "write a header as 'Name: value'"),
        (["--headers", "Bad Name: x"], "a header name has only letters"),
        ([], "give --forward-to URL, --print-json or both"),
    ],
)
def test_bad_listen_options_are_one_line_and_exit_2(kwik, cli_env, argv, message):
    forward = ["--forward-to", "http://127.0.0.1:9/hook"] if argv else []
    done = _kwik_console(cli_env, "listen", *forward, *argv, "--console", "http://127.0.0.1:9")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_the_secret_routes_need_the_secret_actions(kwik):
    with session_scope() as session:
        reader = tokens.create_token(session=session, name="reader", scopes=["read"], actor=audit.CLI).token
        writer = tokens.create_token(session=session, name="writer", scopes=["write"], actor=audit.CLI).token
    with TestClient(create_app(), client=("127.0.0.1", 50123)) as api:
        for path, method in (("/api/v1/listen/secret", api.get), ("/api/v1/listen/secret/rotate", api.post)):
            refused = method(path, headers={"Authorization": f"Bearer {reader}"})
            assert refused.status_code == 403 and "write" in refused.json()["detail"]
        shown = api.get("/api/v1/listen/secret", headers={"Authorization": f"Bearer {writer}"}).json()["secret"]
        assert api.get("/api/v1/listen/secret").json()["secret"] == shown  # local, no token: the same one
        rotated = api.post("/api/v1/listen/secret/rotate", headers={"Authorization": f"Bearer {writer}"}).json()
        assert rotated["secret"] != shown and api.get("/api/v1/listen/secret").json() == rotated
