"""Starting `kwik-console run`: a later start reuses the build, the output says only what is so, and the
console outlives two quick deaths of its delivering process.

The warm-start test runs on a copy of the project in a temporary folder (its own .web), so it can change a
page's source without touching the checkout: a fresh start builds; the next, with nothing changed, serves
that build as it is; after the change, the next builds again and serves the change.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kwik_console.events.publishing import publish
from kwik_console.store import db
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import ROOT, configure
from tests.e2e.server import ConsoleServer, free_port

pytestmark = pytest.mark.e2e

KWIK = Path(sys.executable).parent / "kwik-console"

# Lines that said what was not so: Reflex's advice to start the app with `reflex run`, its warning that
# Node 20 is out of date (it builds with bun's runtime then), its failed probes of npm mirrors (npm's own
# registry is the one used), a promise of a build on every start, and APScheduler's note that a look was
# skipped while the previous one ran.
MISLEADING = (
    "reflex run",
    "Node.js is out of date",
    "Failed to connect to",
    "the first start builds",
    "maximum number of running instances",
)


def copy_project(target: Path) -> Path:
    """What `kwik-console run` serves from, copied; bun (.tools) is shared."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("kwik_console", "assets", "reflex.lock"):
        shutil.copytree(ROOT / name, target / name, ignore=ignore)
    shutil.copy2(ROOT / "rxconfig.py", target / "rxconfig.py")
    (target / ".tools").symlink_to((ROOT / ".tools").resolve())
    return target


class Start:
    """One `kwik-console run` of the project in `root` on `port`, until its first 200 on /webhooks."""

    def __init__(self, root: Path, port: int, database: str, log_path: Path):
        env = {**os.environ, "PYTHONPATH": str(root), "KWIK_DATABASE_URL": database, "KWIK_MODE": "local"}
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [str(KWIK), "run", "--port", str(port)],
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_serving(self, timeout: float = 420) -> str:
        """The /webhooks page as served, once the console answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the console exited: {self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/webhooks", timeout=2) as response:
                    if response.status == 200 and "App Running" in self.output():
                        return response.read().decode()
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the console did not start: {self.output()[-2000:]}")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # kwik-console stops its whole tree
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.output()

    def output(self) -> str:
        return self.log_path.read_text()


def run_once(root: Path, port: int, database: str, log_path: Path) -> tuple[str, str]:
    start = Start(root, port, database, log_path)
    try:
        page = start.wait_serving()
    finally:
        output = start.stop()
    return page, output


def assert_nothing_misleading(output: str) -> None:
    for line in MISLEADING:
        assert line not in output, f"{line!r} in:\n{output}"
    for done, total in re.findall(r"Compiling:.*?(\d+)/(\d+)", output):
        assert done == total, output


def test_a_later_start_reuses_the_build_and_a_changed_page_is_built_again(tmp_path):
    project = copy_project(tmp_path / "project")
    port, database = free_port(), f"sqlite:///{tmp_path / 'kwik.db'}"
    served = project / ".web" / "build" / "client" / "webhooks" / "index.html"

    page, first = run_once(project, port, database, tmp_path / "first.log")
    assert "Building the frontend, once" in first
    assert "Creating Production Build" in first
    assert "Initializing the web directory" in first  # a fresh .web: Reflex's init ran, without its advice
    assert "Webhooks · Kwik Console" in page
    assert_nothing_misleading(first)
    built = served.stat().st_mtime_ns

    page, second = run_once(project, port, database, tmp_path / "second.log")
    assert "Serving the frontend built" in second
    assert "Compiling:" not in second and "Creating Production Build" not in second
    assert served.stat().st_mtime_ns == built  # the very files the first start built
    assert "Webhooks · Kwik Console" in page
    assert_nothing_misleading(second)

    app = project / "kwik_console" / "kwik_console.py"
    app.write_text(app.read_text().replace('title="Webhooks · Kwik Console"', 'title="Hooks, renamed · Kwik"'))
    page, third = run_once(project, port, database, tmp_path / "third.log")
    assert "Building the frontend again: the app's files changed" in third
    assert "Creating Production Build" in third
    assert "Hooks, renamed · Kwik" in page and "Webhooks · Kwik Console" not in page
    assert_nothing_misleading(third)


# --- two quick deaths of the delivering process -------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def delivering_worker(console: ConsoleServer) -> int | None:
    """granian's worker: the one child that Reflex's process (the child of `kwik-console run`) forked."""
    mains = [pid for pid in children(console.process.pid) if b"reflex" in cmdline(pid)]
    if len(mains) != 1:
        return None
    workers = [pid for pid in children(mains[0]) if cmdline(pid) == cmdline(mains[0])]
    return workers[0] if len(workers) == 1 else None


def delivered(requests) -> int:
    """Distinct messages received (an attempt cut short by a kill may be sent again)."""
    return len({r.headers.get("webhook-id") for r in requests if r.path == "/ok"})


def wait_for(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_starts_its_delivering_process_again_after_two_quick_deaths(tmp_path, receiver, monkeypatch):
    database = f"sqlite:///{tmp_path / 'kwik.db'}"
    configure(monkeypatch, KWIK_DATABASE_URL=database)
    with db.session_scope() as s:
        webhooks.create_webhook(
            session=s,
            data=WebhookInput(name="Receiver", url=receiver.url("/ok"), events=["payment.created"]),
            actor=audit.CLI,
        )
    # A claim of a killed worker is free again after the lease.
    console = ConsoleServer(database, tmp_path / "console.log", KWIK_ATTEMPT_TIMEOUT="2", KWIK_LEASE_SECONDS="5")
    console.start()
    try:
        before = publish("payment.created", {"n": 0}, wake=False).delivery_ids
        assert receiver.wait_for(lambda reqs: delivered(reqs) == len(before), timeout=60)

        first = wait_for(lambda: delivering_worker(console), "the worker")
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: (pid := delivering_worker(console)) not in (None, first) and pid, "a new worker")
        os.kill(second, signal.SIGKILL)  # at once: granian alone stopped the console on this death
        third = wait_for(
            lambda: (pid := delivering_worker(console)) not in (None, first, second) and pid, "another new worker"
        )
        assert console.process.poll() is None

        after = [i for n in range(1, 21) for i in publish("payment.created", {"n": n}, wake=False).delivery_ids]
        assert receiver.wait_for(lambda reqs: delivered(reqs) == len(before) + len(after), timeout=120)
        assert delivering_worker(console) == third  # the deliveries came from the worker started last
        assert console.process.poll() is None
    finally:
        console.stop()
    log = console.log_path.read_text()
    assert "crash loop" not in log
    # The second death, right after a start, waited (the first did too, unless that worker had lived a minute).
    assert re.search(r"worker-1 died [\d.]+ s after it started; starting it again in [12] s", log), log
