"""The event log, live: how soon a new attempt shows in an open tab, and what an idle open tab costs the database.

    .venv/bin/python bench/event_log_live.py [--base bee6f20] [--events 50] [--idle-seconds 60] [--tabs 3]

Two consoles side by side, each `kwik-console run` in local mode on SQLite at the
default settings, with a webhook to the same loopback receiver: "before", the
console at --base (a tab reloads its page every 2.5 s), exported with `git
archive` into bench/out/; "after", this checkout (one watcher per process, woken
as the dispatcher is). Each is started once unmeasured first (it builds its
frontend), then:

- appear: headless Chromium on the webhook's event log; --events events are
  published one at a time, 0.3 s apart, by a publisher process of the console's
  own code; for each, seconds from the request reaching the receiver to the row
  showing its HTTP code in the page (both clocks are this machine's). Median,
  p95 and max. Both consoles take turns, event by event, so both meet the same
  machine.
- idle: SQL statements the console's processes run (every statement through
  SQLAlchemy, counted by a `sitecustomize` put on their PYTHONPATH) in
  --idle-seconds with no tab open, then with --tabs tabs open on the event log
  and nothing happening; per open tab per minute = (with - without) / tabs,
  scaled to a minute.

Nothing is asserted; the figures are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.receiver import BenchReceiver  # noqa: E402
from bench.start import KWIK, OUT, ROOT, export, free_port  # noqa: E402
from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

# Counts every statement a process runs through SQLAlchemy, written to $BENCH_STATEMENTS_DIR/<pid> each 0.2 s.
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, threading, time
    _dir = os.environ.get("BENCH_STATEMENTS_DIR")
    if _dir:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        _count = [0]

        @event.listens_for(Engine, "before_cursor_execute")
        def _counted(*_args, **_kwargs):
            _count[0] += 1

        def _write():
            path = os.path.join(_dir, str(os.getpid()))
            while True:
                with open(path + ".tmp", "w") as f:
                    f.write(str(_count[0]))
                os.replace(path + ".tmp", path)
                time.sleep(0.2)

        def _start_writer():
            _count[0] = 0  # a forked child counts its own
            threading.Thread(target=_write, daemon=True).start()

        _start_writer()
        os.register_at_fork(after_in_child=_start_writer)  # the server's workers are forked
    """
)

# In the page: when each event's row first shows an HTTP code, by the machine's clock (ms).
OBSERVE = """
() => {
  window.__seen = {};
  const look = () => {
    for (const row of document.querySelectorAll('tr')) {
      const cells = row.querySelectorAll('td');
      if (cells.length < 4) continue;
      const id = (row.innerText.match(/evt_[A-Za-z0-9]+/) || [])[0];
      if (id && !(id in window.__seen) && cells[3].innerText.trim() !== '') window.__seen[id] = Date.now();
    }
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
  look();
}
"""

PUBLISHER = """
import json, sys
from kwik_console.events.publishing import publish
for line in sys.stdin:
    event = publish("payment.created", {"object": "payment", "id": line.strip()})
    print(json.dumps(event.event.id), flush=True)
"""


class Console:
    def __init__(self, name: str, tree: Path, receiver: BenchReceiver):
        self.name, self.tree = name, tree
        self.port = free_port()
        self.data = OUT / f"live-data-{name}"
        self.counts = self.data / "statements"
        self.counts.mkdir(parents=True, exist_ok=True)
        (self.data / "sitecustomize.py").write_text(SITECUSTOMIZE)
        database = self.data / "kwik.db"
        database.unlink(missing_ok=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KWIK_")},
            "PYTHONPATH": f"{self.data}:{tree}",
            "KWIK_DATABASE_URL": f"sqlite:///{database}",
            "KWIK_MODE": "local",
            "BENCH_STATEMENTS_DIR": str(self.counts),
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.receiver_url = receiver.url(f"/w/{name}")
        self.process: subprocess.Popen | None = None
        self.webhook_id = 0
        self.publisher: subprocess.Popen | None = None

    def start(self, timeout: float = 900) -> None:
        self.log = open(self.data / "console.log", "w")  # noqa: SIM115  open for the console's life
        self.process = subprocess.Popen(
            [str(KWIK), "run", "--port", str(self.port)],
            cwd=self.tree,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name}: the console exited; see {self.data / 'console.log'}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name}: no 200 within {timeout:.0f} s")

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.stdin.close()
            self.publisher.wait(timeout=30)
            self.publisher = None
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)  # kwik-console stops its whole tree
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.process = None
            self.log.close()

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(KWIK), *args], cwd=self.tree, env=self.env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: kwik-console {' '.join(args)}: {done.stderr}")
        return done.stdout

    def make_webhook(self) -> None:
        made = self.cli(
            *("webhooks", "create", "--json", "--name", f"Live {self.name}", "--url", self.receiver_url),
            *("--events", "payment.created"),
        )
        self.webhook_id = json.loads(made)["id"]

    def publish(self, tag: str) -> str:
        if self.publisher is None:
            self.publisher = subprocess.Popen(
                [sys.executable, "-c", PUBLISHER],
                cwd=self.tree,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        self.publisher.stdin.write(tag + "\n")
        self.publisher.stdin.flush()
        return json.loads(self.publisher.stdout.readline())

    def statements(self) -> int:
        return sum(int(p.read_text() or 0) for p in self.counts.iterdir() if p.suffix != ".tmp")

    def event_log(self) -> str:
        return f"{self.url}/webhooks/{self.webhook_id}/events"


def open_log(browser, console: Console):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(console.event_log())
    page.get_by_role("heading", name=f"Events · Live {console.name}").wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # the page's first events answered
    return page


def idle_statements(console: Console, browser, seconds: float, tabs: int) -> tuple[int, int]:
    """Statements in `seconds` with no tab open, then with `tabs` tabs open on the event log."""
    time.sleep(5)
    before = console.statements()
    time.sleep(seconds)
    without = console.statements() - before
    pages = [open_log(browser, console) for _ in range(tabs)]
    time.sleep(5)
    before = console.statements()
    time.sleep(seconds)
    with_tabs = console.statements() - before
    for page in pages:
        page.close()
    return without, with_tabs


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(consoles: list[Console], receiver: BenchReceiver, args) -> tuple[dict, dict]:
    for console in consoles:
        print(f"{console.name}: starting (the first start builds its frontend)...", flush=True)
        console.start()
        console.make_webhook()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = {c.name: open_log(browser, c) for c in consoles}
        for page in pages.values():
            page.evaluate(OBSERVE)
        published: dict[str, list[str]] = {c.name: [] for c in consoles}
        print(f"publishing {args.events} events to each, one at a time...", flush=True)
        for n in range(args.events):
            for console in consoles if n % 2 else reversed(consoles):
                published[console.name].append(console.publish(f"pay_{console.name}_{n}"))
                time.sleep(0.3)
        time.sleep(4)  # the slowest refresh of the last ones
        arrived = {event_id: at for at, _path, event_id, _sent in receiver.records()}
        delays: dict[str, list[float]] = {}
        for console in consoles:
            seen = pages[console.name].evaluate("window.__seen")
            delays[console.name] = [
                seen[e] / 1000 - arrived[e] for e in published[console.name] if e in seen and e in arrived
            ]
        for page in pages.values():
            page.close()
        idle = {}
        for console in consoles:
            print(
                f"{console.name}: idle, {args.idle_seconds:.0f} s without a tab, then with {args.tabs}...", flush=True
            )
            idle[console.name] = idle_statements(console, browser, args.idle_seconds, args.tabs)
        browser.close()
    return delays, idle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="bee6f20", help="the commit measured as 'before'")
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--tabs", type=int, default=3)
    args = parser.parse_args()

    with BenchReceiver() as receiver:  # first: it forks
        consoles = [Console("before", export(args.base), receiver), Console("after", ROOT, receiver)]
        try:
            delays, idle = measure(consoles, receiver, args)
        finally:
            for console in consoles:
                console.stop()

    print(f"\nA new attempt in an open event log, {args.events} events each, load average {os.getloadavg()[0]:.1f}:")
    print(f"{'':8} {'shown':>7} {'median':>8} {'p95':>8} {'max':>8}   (seconds from the receiver to the row)")
    for console in consoles:
        d = delays[console.name]
        if not d:
            print(f"{console.name:8} none shown")
            continue
        print(
            f"{console.name:8} {len(d):>4}/{args.events:<2} {statistics.median(d):>8.3f} {p95(d):>8.3f} {max(d):>8.3f}"
        )
    print(f"\nSQL statements while idle, in {args.idle_seconds:.0f} s (all of the console's processes):")
    per_minute = 60.0 / args.idle_seconds
    for console in consoles:
        without, with_tabs = idle[console.name]
        per_tab = (with_tabs - without) / args.tabs * per_minute
        print(
            f"{console.name:8} no tab: {without:>5}   {args.tabs} tabs: {with_tabs:>5}   "
            f"per open tab per minute: {per_tab:.1f}"
        )


if __name__ == "__main__":
    main()
