"""A worker of `kwik-console run --workers 2` is killed under a signed-in tab: the tab carries on.

Hosted mode on PostgreSQL and Redis. The admin signs in, searches the list and starts a webhook in
the Create dialog; the worker holding the tab's websocket is found (Redis names the worker of each
tab's socket, and each worker's alive key names its process) and SIGKILLed. The tab reconnects to
the other worker with the same token, so its state (kept in Redis) is all still there; the webhook
is then created; and granian has started a new worker, whose lifespan started a delivery scheduler
(seen as its connection LISTENing on PostgreSQL).
Nothing here sends a delivery: the webhooks are Disabled and their hosts are `.invalid`.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from playwright.sync_api import Page, expect, sync_playwright

from kwik_console.runtime import reflex_patches
from kwik_console.store import db
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import (
    KWIK_CONSOLE,
    POSTGRES_ADMIN_URL,
    TEST_SECRET_KEY,
    _drop_postgres_database,
    _postgres_database,
    configure,
)
from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS, ConsoleServer, free_port

pytestmark = pytest.mark.e2e

REDIS_DB = 12  # a database of its own on the machine's Redis, emptied first
EMAIL = "admin@merchant.example"
PASSWORD = "orchid tractor 1987 lamp"
WORKERS = 2


# --- helpers, as in test_signin.py -------------------------------------------------------------------


def new_page(browser, frames: list[str]) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)

    def on_socket(ws):
        frames.append("<opened>")
        ws.on(
            "framereceived",
            lambda payload: frames.append(payload if isinstance(payload, str) else payload.decode("utf-8", "replace")),
        )

    page.on("websocket", on_socket)
    return page


def accept_link(page: Page, link: str) -> None:
    page.goto(link)
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Set password and sign in").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()


def webhook_rows(page: Page):
    return page.get_by_role("table", name="Webhooks", exact=True).get_by_role("row")


# --- the console's processes -------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def console_workers(console: ConsoleServer) -> list[int]:
    """Granian's workers: the children of Reflex's process (itself the child of `kwik-console run`) that it forked."""
    reflex_main = [pid for pid in children(console.process.pid) if b"reflex" in cmdline(pid)]
    assert len(reflex_main) == 1, reflex_main
    main = reflex_main[0]
    return sorted(pid for pid in children(main) if cmdline(pid) == cmdline(main) and is_running(pid))


def is_running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_for(condition, timeout: float, what: str, page: Page | None = None):
    """Poll `condition`; with a page, wait through Playwright so its events (websocket frames) are delivered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        if page is not None:
            page.wait_for_timeout(50)
        else:
            time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def tcp_ports(pid: int) -> set[int]:
    """The local ports of `pid`'s TCP sockets (its fds' inodes, looked up in /proc/net/tcp*)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def schedulers_listening(database: str) -> set[int]:
    """The client ports of the connections LISTENing for publishes: one per running delivery scheduler."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT client_port FROM pg_stat_activity WHERE datname = %s AND query ILIKE 'LISTEN %%'",
            (database.rsplit("/", 1)[1],),
        ).fetchall()
    return {port for (port,) in rows}


def each_runs_a_scheduler(database: str, pids: list[int]) -> bool:
    listening = schedulers_listening(database)
    return all(tcp_ports(pid) & listening for pid in pids)


def socket_owner(client: redis.Redis, token: str) -> str | None:
    """The Reflex instance (worker) Redis says holds `token`'s websocket."""
    raw = client.get(f"token_manager_socket_record_{token}")
    return pickle.loads(raw).instance_id if raw else None


def socket_worker_pid(client: redis.Redis, token: str) -> int:
    """The pid of the worker holding `token`'s websocket: the socket record names the worker, its alive key the pid."""
    instance_id = socket_owner(client, token)
    assert instance_id, f"no socket record for {token}"
    alive = client.get(reflex_patches.alive_key(instance_id))
    assert alive, f"worker {instance_id} is not advertised alive"
    return json.loads(alive)["pid"]


def state_holds(client: redis.Redis, token: str, text: str) -> bool:
    """Whether a state of the tab's, as Redis holds it, contains `text`."""
    return any(text.encode() in (client.get(key) or b"") for key in client.scan_iter(match=f"{token}_*"))


def test_a_tab_survives_the_death_of_its_worker(tmp_path, monkeypatch):
    name = f"kwik_reconnect_{os.getpid()}"
    database = _postgres_database(name)
    if database is None:
        pytest.fail("PostgreSQL is not reachable; .ci/run starts it")
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    port = free_port()
    env = {
        "KWIK_MODE": "hosted",
        "KWIK_SECRET_KEY": TEST_SECRET_KEY,
        "KWIK_DATABASE_URL": database,
        "KWIK_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "KWIK_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    log = tmp_path / "console.log"
    console = ConsoleServer(database, log, args=("--workers", str(WORKERS)), **env)
    console.port, console.url = port, f"http://127.0.0.1:{port}"
    tag = uuid.uuid4().hex[:6]
    try:
        console.start()
        workers = wait_for(lambda: (w := console_workers(console)) and len(w) == WORKERS and w, 30, "two workers")
        # The app's lifespan runs in each: its delivery scheduler LISTENs for publishes on PostgreSQL.
        wait_for(lambda: each_runs_a_scheduler(database, workers), 60, "a delivery scheduler in each worker")

        made = subprocess.run(
            [*KWIK_CONSOLE, "users", "create", "--email", EMAIL, "--role", "admin", "--json"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        link = json.loads(made.stdout)["link"]
        configure(monkeypatch, **{**env, "KWIK_MODE": "local"})  # this test process, straight on the database
        with db.session_scope() as session:  # disabled, to a host that cannot exist: nothing is ever sent
            webhooks.create_webhook(
                session=session,
                data=WebhookInput(
                    name=f"Ledger {tag}",
                    url=f"https://ledger-{tag}.merchant.invalid/kwik",
                    events=["payment.created"],
                    status="disabled",
                ),
                actor=audit.CLI,
            )

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            frames: list[str] = []
            page = new_page(browser, frames)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            accept_link(page, link)

            # State to lose: a search, and a webhook half made in the Create dialog.
            search = page.get_by_label("Search webhooks")
            search.fill(tag)
            expect(webhook_rows(page)).to_have_count(2)  # header + Ledger
            page.get_by_role("button", name="Create", exact=True).first.click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_label("Name").fill(f"Orders {tag}")
            token = page.evaluate("window.sessionStorage.getItem('token')")
            assert token
            wait_for(lambda: state_holds(client, token, f"Orders {tag}"), 15, "the typed name in Redis")

            victim_instance = socket_owner(client, token)
            victim = socket_worker_pid(client, token)
            assert victim in workers
            sockets_before = frames.count("<opened>")
            os.kill(victim, signal.SIGKILL)

            # The tab reconnects (a new websocket), to the other worker, under the same token.
            wait_for(lambda: frames.count("<opened>") > sockets_before, 30, "the tab to reconnect", page)
            new_token = lambda: [f for f in frames if "new_token" in f]  # noqa: E731
            wait_for(
                lambda: new_token() or socket_owner(client, token) not in (None, victim_instance),
                30,
                "the tab's socket to be linked again",
                page,
            )
            assert not new_token(), "the reconnect was taken for a duplicated tab and given a new token"
            assert page.evaluate("window.sessionStorage.getItem('token')") == token
            assert socket_worker_pid(client, token) in console_workers(console)

            # Everything the tab had is still there: the dialog, the name typed, the search and its result.
            expect(dialog.get_by_role("heading", name="Create webhook")).to_be_visible()
            expect(dialog.get_by_label("Name")).to_have_value(f"Orders {tag}")
            expect(search).to_have_value(tag)
            # The list behind the modal dialog (hidden from the accessibility tree while it is open).
            expect(
                page.get_by_role("table", name="Webhooks", exact=True, include_hidden=True).get_by_role(
                    "row", include_hidden=True
                )
            ).to_have_count(2)

            # And the tab still works: the webhook is created (Disabled, to a `.invalid` host).
            dialog.get_by_label("Webhook URL").fill(f"https://orders-{tag}.merchant.invalid/kwik")
            dialog.get_by_role("checkbox", name="payment.created").click()
            dialog.get_by_role("radio", name="Disabled").click()
            dialog.get_by_role("button", name="Create", exact=True).click()
            expect(page.get_by_text(f"Webhook “Orders {tag}” created.")).to_be_visible()
            expect(page.get_by_role("heading", name=f"Orders {tag}")).to_be_visible()  # its page, next
            page.go_back()
            expect(webhook_rows(page)).to_have_count(3)  # header, Ledger, Orders: the search still applies
            expect(webhook_rows(page).filter(has_text=f"Orders {tag}")).to_contain_text("Disabled")
            browser.close()
        assert not errors, errors

        # Granian started a worker in place of the killed one, and its lifespan ran: a third scheduler.
        respawned = wait_for(
            lambda: (w := console_workers(console)) and len(w) == WORKERS and victim not in w and w,
            60,
            "a worker in place of the killed one",
        )
        assert len(set(respawned) - set(workers)) == 1
        wait_for(lambda: each_runs_a_scheduler(database, respawned), 60, "a delivery scheduler in the new worker")
        assert console.process.poll() is None
        with db.session_scope() as session:
            made_hook = [h for h in webhooks.list_webhooks(session=session, search=f"Orders {tag}").items]
        assert [(h.name, h.status) for h in made_hook] == [(f"Orders {tag}", "disabled")]
    finally:
        console.stop()
        db._engine_for.cache_clear()
        client.flushdb()
        _drop_postgres_database(name)
