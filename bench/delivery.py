"""Delivery benchmark at the default settings: a script, not a test. Prints a table (or JSON) of figures.

    .venv/bin/python bench/delivery.py [--database sqlite|postgresql] [--scenario a,b,...] [--quick] [--json]
                                       [--processes N]

Nothing is tuned: the only KWIK_* variable set, for the bench and the worker
alike, is KWIK_DATABASE_URL (any other KWIK_* in the caller's environment is
dropped). The dispatcher runs as users run it, a `kwik-console worker`
subprocess; events are published by this process through
kwik_console.events.publishing.publish. A minimal asyncio receiver runs in a process of
its own and answers 200 at once (or never, on a path containing "hang").
Bodies are real event envelopes of about 600 bytes.

Scenarios (default: all):
  ceilings  the same receiver and bodies at concurrency 8 (the per-webhook cap),
            no database: the dispatcher's own client (delivery.client.make_client
            and send, at the default settings, on uvloop as the dispatcher runs
            it: the "own" ceiling); httpx on its default transport, the client
            as it was before the dispatcher's rewrite; httpx with a plain
            httpx-aiohttp transport; aiohttp (the "fastest" ceiling), each of
            these on asyncio and on uvloop; and raw sockets (the receiver's own
            limit). Measured at the start and at the end of the run (--quick:
            the start only); the best of the two is used, so the ceiling never
            flatters a ratio. Always run with (a) and (b).
  a  one webhook, 5,000 events published with the worker stopped; the worker is
     started and the backlog drains. Throughput = deliveries / (last success
     recorded - worker start), worker start being the worker's "running" line
     or its first attempt, whichever is earlier.
  b  100 webhooks on distinct receiver paths, 50 events each, published as a
     burst (50 events, each fanned out to all 100) while the worker runs.
     Throughput from the first publish to the last success recorded; fairness:
     each webhook's share of its deliveries received by the time half of all
     deliveries were received, slowest / fastest. Then, for information and a
     stricter fairness test, the same deliveries as a backlog in webhook order
     (each webhook's 50 events published in turn, worker stopped).
  c  a healthy webhook's publish -> received latency (at the receiver, from the
     publish time carried in the event's data), 20 events/s fanned out to it and
     8 other webhooks, for 20 s: once with the 8 answering, once with the 8
     never answering (each attempt runs to the default 15 s timeout).
     Events never received are counted at the time the phase ended.
  d  retry lag: 100,000 deliveries pending an hour ahead (bulk-inserted), plus
     500 retries falling due over 5 s at known times; lag = first retry's
     attempted_at - its next_attempt_at, for retries due after the worker said
     it was running.
  e  claim time, in this process, calling claims.claim_deliveries directly:
     300,000 due deliveries on one webhook that is at its cap (median of 20),
     the same with room on the webhook, and with no backlog.
  f  publish -> first attempt (attempted_at - event created_at, as recorded),
     200 events/s for 10 s, publisher in this process, worker in its own.

--quick runs every scenario with small sizes: a smoke test, not figures to quote.
Nothing is asserted: the table says which targets are met, and the exit status is 0.

--database postgresql makes a database of its own on the local server, named
for this run (kwik_bench_<pid>_<random>), and drops only that one, at the end
and on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.receiver import BenchReceiver, raw_ceiling  # noqa: E402

KWIK_CONSOLE = Path(sys.executable).parent / "kwik-console"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
CONCURRENCY = 8  # the default per-webhook cap
BODY_SIZE = 600  # about a real envelope
EVENT_TYPE = "payment.created"
# The worker says this once its scheduler runs (cli.cmd_worker, scheduler.start).
WORKER_READY = re.compile(rb"worker running|scheduler started", re.IGNORECASE)
SCENARIOS = ("ceilings", "a", "b", "c", "d", "e", "f")


@dataclasses.dataclass(frozen=True)
class Sizes:
    ceiling_requests: int
    ceiling_seconds: float  # the most one client's run may take
    backlog_events: int
    backlog_cap: float  # seconds the drain may take before it is reported incomplete
    burst_webhooks: int
    burst_events: int
    burst_cap: float
    latency_rate: float  # (c) events/s, each fanned out to 9 webhooks
    latency_seconds: float
    latency_grace: float
    retry_pending: int
    retries: int
    retry_spread: float
    claim_rows: int
    claim_calls: int
    first_rate: float  # (f)
    first_seconds: float
    publish_cap: float = 45  # seconds a backlog's publishing may take; fewer events are used past it


FULL = Sizes(
    ceiling_requests=5000,
    ceiling_seconds=3,
    backlog_events=5000,
    backlog_cap=60,
    burst_webhooks=100,
    burst_events=50,
    burst_cap=60,
    latency_rate=20,
    latency_seconds=20,
    latency_grace=5,
    retry_pending=100_000,
    retries=500,
    retry_spread=5,
    claim_rows=300_000,
    claim_calls=20,
    first_rate=200,
    first_seconds=10,
)
QUICK = Sizes(
    publish_cap=10,
    ceiling_requests=400,
    ceiling_seconds=0.5,
    backlog_events=500,
    backlog_cap=8,
    burst_webhooks=20,
    burst_events=10,
    burst_cap=8,
    latency_rate=20,
    latency_seconds=3,
    latency_grace=2,
    retry_pending=5000,
    retries=50,
    retry_spread=1,
    claim_rows=20_000,
    claim_calls=5,
    first_rate=200,
    first_seconds=2,
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wait_for(condition, timeout: float, interval: float = 0.2) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def timestamp(value: dt.datetime) -> float:
    return value.timestamp()


# ---------------------------------------------------------------- events and bodies


@functools.cache
def _padding() -> str:
    from kwik_console.core.clock import utcnow
    from kwik_console.events.publishing import envelope, new_event_id

    probe = _data(time.time(), "")
    size = len(
        envelope(event_id=new_event_id(), event_type=EVENT_TYPE, created_at=utcnow(), test=False, data=probe).encode()
    )
    return "x" * max(0, BODY_SIZE - size)


def _data(sent: float, padding: str) -> dict:
    from kwik_console.events import catalog

    data = catalog.sample_data(EVENT_TYPE)
    data["bench_sent"] = sent  # the receiver reads this: publish -> received latency
    data["metadata"] = {"note": padding}
    return data


def event_data(sent: float | None = None) -> dict:
    """A payment.created event's data, carrying its publish time, sized so the envelope is about 600 bytes."""
    return _data(time.time() if sent is None else sent, _padding())


def sample_body() -> bytes:
    from kwik_console.core.clock import utcnow
    from kwik_console.events.publishing import envelope, new_event_id

    return envelope(
        event_id=new_event_id(), event_type=EVENT_TYPE, created_at=utcnow(), test=False, data=event_data()
    ).encode()


def publish(sent: float | None = None):
    from kwik_console.events.publishing import publish as kwik_publish

    return kwik_publish(EVENT_TYPE, event_data(sent))


# ---------------------------------------------------------------- ceilings (no database)

USER_AGENT = "Kwik-Webhooks/bench"
RESPONSE_LIMIT = 20 * 1024
WARMUP = 100


def request_headers(body: bytes) -> dict[str, str]:
    """Fixed headers the size of a signed attempt's (signing is the dispatcher's work, not the client's)."""
    return {
        "content-type": "application/json",
        "webhook-id": "evt_01m8m1cp724r9vbk9aa9anrswk",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    }


def default_transport_client(transport=None):
    """httpx.AsyncClient as the product configured it before the dispatcher's rewrite, at the default settings.

    With no `transport`, httpx's default one.
    """
    import httpx

    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(15.0, connect=5.0),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        headers={"user-agent": USER_AGENT},
        transport=transport,
    )


async def _httpx_post(client, url: str, body: bytes, headers: dict) -> int:
    # As client.send does: a streamed response, its body read up to the cap, under an overall timeout.
    async with asyncio.timeout(15.0):
        response = await client.send(client.build_request("POST", url, content=body, headers=headers), stream=True)
        try:
            dict(response.headers)
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size >= RESPONSE_LIMIT:
                    break
            return response.status_code
        finally:
            await response.aclose()


async def _aiohttp_post(session, url: str, body: bytes, headers: dict) -> int:
    async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
        dict(response.headers)
        await response.content.read(RESPONSE_LIMIT)
        return response.status


async def _drive(post, url: str, body: bytes, headers: dict, total: int, seconds: float = 60.0) -> int:
    """Send up to `total` POSTs, 8 at a time, starting none after `seconds`; returns how many were sent."""
    left = iter(range(total))
    deadline = time.perf_counter() + seconds
    sent = 0

    async def one():
        nonlocal sent
        for _ in left:
            if time.perf_counter() > deadline:
                return
            code = await post(url, body, headers)
            if code != 200:
                raise RuntimeError(f"receiver answered {code}")
            sent += 1

    async with asyncio.timeout(seconds + 30):
        await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
    return sent


async def client_rate(client: str, url: str, body: bytes, total: int, seconds: float) -> tuple[float, float]:
    """POSTs per second at concurrency 8 through one client, after a warm-up that opens the connections,
    and this process's CPU seconds per request.

    `total` requests, or as many as start within `seconds` on a slow client.
    """
    import aiohttp
    import httpx

    headers = request_headers(body)
    if client == "dispatcher":
        post, close = _dispatcher_client()
    elif client == "aiohttp":
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64),
            timeout=aiohttp.ClientTimeout(total=15.0, connect=5.0),
            headers={"user-agent": USER_AGENT},
        )
        post, close = functools.partial(_aiohttp_post, session), session.close
    else:
        transport = None
        if client == "httpx-aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        http = default_transport_client(transport)
        post, close = functools.partial(_httpx_post, http), http.aclose
    try:
        await _drive(post, url, body, headers, WARMUP)
        started, cpu = time.perf_counter(), time.process_time()
        sent = await _drive(post, url, body, headers, total, seconds)
        # The receiver runs in a process of its own: this process's CPU is the client's.
        return sent / (time.perf_counter() - started), (time.process_time() - cpu) / max(1, sent)
    finally:
        await close()


def _dispatcher_client():
    """The dispatcher's client, built and used by the product's own functions; call it on the loop that uses it."""
    # Late, as every product import in this script: the receiver forks before the product loads.
    from kwik_console.core.settings import get_settings
    from kwik_console.delivery import client as delivery_client

    settings = get_settings()
    http = delivery_client.make_client(settings)

    async def post(url: str, body: bytes, headers: dict) -> int:
        result = await delivery_client.send(http, url, body, headers, settings)
        if result.http_code is None:
            raise RuntimeError(f"no answer: {result.error}")
        return result.http_code

    return post, http.aclose


def run_on(loop: str, coroutine):
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coroutine)
    return asyncio.run(coroutine)


CEILING_CLIENTS = [
    ("dispatcher", "uvloop"),  # the own ceiling: the client the dispatcher uses, on its loop
    ("httpx", "asyncio"),  # httpx's default transport: the client before the dispatcher's rewrite
    ("httpx", "uvloop"),
    ("httpx-aiohttp", "asyncio"),
    ("httpx-aiohttp", "uvloop"),
    ("aiohttp", "asyncio"),  # the fastest ceiling: the best of the two aiohttp runs
    ("aiohttp", "uvloop"),
    ("raw sockets", "uvloop"),  # no client: the receiver's own limit
]


# ---------------------------------------------------------------- the worker subprocess


class Worker:
    """One `kwik-console worker`, started with the default environment; its output goes to a log file."""

    def __init__(self, env: dict[str, str], cwd: Path, log_path: Path, processes: int = 1):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.spawned = time.time()
        self.ready: float | None = None
        self.process = subprocess.Popen(
            [str(KWIK_CONSOLE), "worker", *(["--processes", str(processes)] if processes > 1 else [])],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends all of it
        )

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) used so far by the worker's live processes (its process group), from /proc."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # ended meanwhile
            if int(fields[2]) == self.process.pid:  # the process group (fields from the state on)
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def steps(self) -> dict[str, float]:
        """The engine's seconds per step, as each of its dispatchers said on stopping (summed)."""
        totals: dict[str, float] = collections.Counter()
        for line in self.log_path.read_text(errors="replace").splitlines():
            if "engine steps (seconds): " in line:
                totals.update(json.loads(line.split("engine steps (seconds): ", 1)[1]))
        return dict(totals)

    def tail(self, lines: int = 12) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait for the worker's "running" line; returns seconds since spawn."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if WORKER_READY.search(self.log_path.read_bytes()):
                self.ready = time.time()
                return self.ready - self.spawned
            if self.process.poll() is not None:
                raise RuntimeError(f"kwik-console worker exited with {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.01)
        raise TimeoutError(f"kwik-console worker did not say it was running within {timeout:g} s:\n{self.tail()}")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL to the whole process group after `grace` seconds."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        finally:
            self._log.close()


# ---------------------------------------------------------------- the bench


@dataclasses.dataclass
class Row:
    scenario: str
    measure: str
    figure: str
    target: str = ""
    met: bool | None = None
    rate: float | None = None  # a throughput whose ratios to the ceilings are filled in at the end


RATIOS = "ratios to the ceilings"


class Bench:
    def __init__(self, args, tmp: Path, receiver: BenchReceiver):
        self.kind = args.database
        self.processes = args.processes
        self.sizes = QUICK if args.quick else FULL
        self.tmp = tmp
        self.receiver = receiver
        self.figures: dict = {
            "database": self.kind,
            "quick": args.quick,
            "cores": os.cpu_count(),
            "worker_processes": args.processes,
        }
        self.rows: list[Row] = []
        self.ceilings: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        self.ceiling_cpu: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        self.startups: list[float] = []
        self.engine = None
        self.url: str | None = None
        self._sqlite_path: Path | None = None
        # PostgreSQL: a database of this run's own, so that two runs (or anyone else's database) never meet.
        self.pg_database = f"kwik_bench_{os.getpid()}_{secrets.token_hex(4)}"
        self._pg_made = False

    # ------------------------------------------------ databases

    def _admin(self):
        from sqlalchemy import create_engine

        return create_engine(
            f"{PG_SERVER.replace('postgresql://', 'postgresql+psycopg://')}/postgres", isolation_level="AUTOCOMMIT"
        )

    def _release(self) -> None:
        from kwik_console.store import db

        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        db._engine_for.cache_clear()  # the product keeps one engine per URL; the next one is a new database
        if self._sqlite_path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self._sqlite_path}{suffix}").unlink(missing_ok=True)
            self._sqlite_path = None

    def fresh_database(self, name: str):
        """A new, empty database with the schema; the bench's and the worker's KWIK_DATABASE_URL."""
        from sqlalchemy import text

        from kwik_console.core import settings
        from kwik_console.store import db

        self._release()
        if self.kind == "sqlite":
            self._sqlite_path = self.tmp / f"{name}.db"
            self.url = f"sqlite:///{self._sqlite_path}"
        else:
            admin = self._admin()
            try:
                with admin.connect() as conn:
                    # This run's own database only; FORCE ends a stopped worker's last connections.
                    conn.execute(text(f"DROP DATABASE IF EXISTS {self.pg_database} WITH (FORCE)"))
                    self._pg_made = True  # from here on, drop_database has something to drop
                    conn.execute(text(f"CREATE DATABASE {self.pg_database}"))
            finally:
                admin.dispose()
            self.url = f"{PG_SERVER}/{self.pg_database}"
        os.environ["KWIK_DATABASE_URL"] = self.url
        settings.get_settings.cache_clear()
        self.engine = db.get_engine()
        return self.engine

    def drop_database(self) -> None:
        from sqlalchemy import text

        self._release()
        if self.kind == "postgresql" and self._pg_made:
            admin = self._admin()
            try:
                with admin.connect() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {self.pg_database} WITH (FORCE)"))
                self._pg_made = False
            finally:
                admin.dispose()

    # ------------------------------------------------ the worker

    def worker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KWIK_")}
        env["KWIK_DATABASE_URL"] = self.url
        # The worker runs this checkout's code, as this process does (the venv may point at another).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def start_worker(self, name: str) -> Worker:
        worker = Worker(self.worker_env(), self.tmp, self.tmp / f"worker-{name}.log", self.processes)
        try:
            self.startups.append(worker.wait_ready())
        except BaseException:
            worker.stop(grace=1)
            raise
        return worker

    # ------------------------------------------------ shared steps

    def make_webhooks(self, paths: list[str]) -> list[int]:
        from kwik_console.events import catalog
        from kwik_console.store import db
        from kwik_console.team import audit
        from kwik_console.webhooks import rules
        from kwik_console.webhooks import service as webhooks

        with db.session_scope() as session:
            return [
                webhooks.create_webhook(
                    session=session,
                    data=rules.WebhookInput(
                        name=f"Bench {path}", url=self.receiver.url(path), events=catalog.event_type_names()
                    ),
                    actor=audit.CLI,
                ).id
                for path in paths
            ]

    def count(self, *where) -> int:
        from sqlalchemy import func, select

        from kwik_console.store.tables import Delivery

        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(Delivery).where(*where)).scalar_one()

    def count_success(self) -> int:
        from kwik_console.store.tables import Delivery

        return self.count(Delivery.status == "success")

    def drain_stats(self) -> dict:
        """Successes, attempts, the first attempt and the last success recorded, as wall-clock seconds."""
        from sqlalchemy import func, select

        from kwik_console.store.tables import Attempt, Delivery

        with self.engine.connect() as conn:
            success, last = conn.execute(
                select(func.count(), func.max(Delivery.updated_at)).where(Delivery.status == "success")
            ).one()
            attempts, first = conn.execute(select(func.count(), func.min(Attempt.attempted_at))).one()
        return {
            "success": success,
            "attempts": attempts,
            "first_attempt": timestamp(first) if first else None,
            "last_success": timestamp(last) if last else None,
        }

    def add(self, scenario: str, measure: str, figure: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(scenario, measure, figure, target, met))

    def own_ceiling(self) -> float | None:
        rates = self.ceilings.get(("dispatcher", "uvloop"))
        return max(rates) if rates else None

    def default_transport_ceiling(self) -> float | None:
        rates = self.ceilings.get(("httpx", "asyncio"))
        return max(rates) if rates else None

    def fastest_ceiling(self) -> float | None:
        rates = self.ceilings.get(("aiohttp", "asyncio"), []) + self.ceilings.get(("aiohttp", "uvloop"), [])
        return max(rates) if rates else None

    def throughput_rows(self, scenario: str, rate: float) -> None:
        """Ratios to both ceilings, once the ceilings' second round is in (see finish)."""
        self.rows.append(Row(scenario, RATIOS, "", rate=rate))

    def finish(self) -> None:
        """The ceilings' rows first, then each throughput's ratios to the best ceilings of the run."""
        if self.ceilings:
            self.report_ceilings()
        own_target, fastest_target = self.throughput_targets()
        rows = [r for r in self.rows if r.scenario == "ceil"]
        for r in self.rows:
            if r.scenario == "ceil":
                continue
            if r.measure != RATIOS:
                rows.append(r)
                continue
            # The default transport's ratio has no target: it says how far the engine has come from that client.
            for key, label, ceiling, target in (
                ("own", "the own ceiling, the dispatcher's client", self.own_ceiling(), own_target),
                ("httpx_default", "httpx on its default transport", self.default_transport_ceiling(), None),
                ("fastest", "the fastest ceiling", self.fastest_ceiling(), fastest_target),
            ):
                if ceiling:
                    ratio = r.rate / ceiling
                    self.figures.setdefault(r.scenario, {})[f"ratio_{key}"] = round(ratio, 3)
                    rows.append(
                        Row(
                            r.scenario,
                            f"  ratio to {label} ({ceiling:,.0f}/s)",
                            f"{ratio:.3f}",
                            "" if target is None else f">= {target:g}",
                            None if target is None else ratio >= target,
                        )
                    )
        self.rows = rows

    def per_delivery(self, scenario: str, cpu: float, delivered: int, steps: dict, worker: Worker) -> dict:
        """Where each delivery's time went: the worker's CPU beside the bare clients', and each step's wall time."""
        if not delivered:
            return {}
        us = lambda seconds: seconds * 1e6 / delivered  # noqa: E731
        own, fastest = self.ceiling_cpu.get(("dispatcher", "uvloop")), self.ceiling_cpu.get(("aiohttp", "uvloop"))
        beside = "".join(
            f"; {label} {min(cpu_runs) * 1e6:,.0f}"
            for label, cpu_runs in (("own client", own), ("aiohttp", fastest))
            if cpu_runs
        )
        self.add(
            scenario,
            "  worker CPU per delivery, µs (bare clients' CPU per request beside it)",
            f"{us(cpu):,.0f}{beside}",
        )
        claims = steps["claims"] or 1
        self.add(
            scenario,
            "  wall per delivery, µs: claim / send (on the wire) / record",
            f"{us(steps['claim_s']):,.0f} / {us(steps['send_s']):,.0f} / {us(steps['record_s']):,.0f}",
            f"{steps['claims']:,} claims of {steps['claimed'] / claims:.1f}; {steps['records']:,} record batches",
        )
        said = worker.steps()
        cpu_steps = {k.removesuffix(" cpu"): v for k, v in said.items() if k.endswith(" cpu")}
        if cpu_steps:
            self.add(
                scenario,
                "  CPU per delivery by step, µs (the rest: sending and the loop)",
                ", ".join(f"{k} {us(v):,.0f}" for k, v in sorted(cpu_steps.items(), key=lambda kv: -kv[1]))
                + f"; rest {us(cpu - sum(cpu_steps.values())):,.0f}",
            )
            walls = {k.removesuffix(" wall"): v for k, v in said.items() if k.endswith(" wall")}
            self.add(
                scenario,
                "  database wall per delivery by step, µs",
                ", ".join(f"{k} {us(v):,.0f}" for k, v in sorted(walls.items(), key=lambda kv: -kv[1])),
            )
        return {"worker_steps_us": {k: round(us(v), 1) for k, v in said.items()}} | {
            "per_delivery_us": {
                "worker_cpu": round(us(cpu), 1),
                "own_client_cpu": round(min(own) * 1e6, 1) if own else None,
                "aiohttp_cpu": round(min(fastest) * 1e6, 1) if fastest else None,
                "claim_wall": round(us(steps["claim_s"]), 1),
                "send_wall": round(us(steps["send_s"]), 1),
                "record_wall": round(us(steps["record_s"]), 1),
                "claims": steps["claims"],
                "record_batches": steps["records"],
            }
        }

    def throughput_targets(self) -> tuple[float, float]:
        return (0.8, 0.3) if self.kind == "sqlite" else (0.7, 0.2)

    def insert_event(self) -> str:
        """One stored event, for deliveries inserted in bulk to share."""
        from sqlalchemy import insert

        from kwik_console.core.clock import utcnow
        from kwik_console.events.publishing import envelope, new_event_id
        from kwik_console.store.tables import Event

        now, event_id = utcnow(), new_event_id()
        body = envelope(event_id=event_id, event_type=EVENT_TYPE, created_at=now, test=False, data=event_data())
        with self.engine.begin() as conn:
            conn.execute(
                insert(Event), [{"id": event_id, "type": EVENT_TYPE, "test": False, "created_at": now, "body": body}]
            )
        return event_id

    def insert_deliveries(self, count: int, webhook_ids: list[int], event_id: str, due: dt.datetime) -> None:
        """`count` pending deliveries due at `due`, round-robin over consecutive webhook ids.

        One INSERT ... SELECT over a series generated in the database: seconds
        for 300,000 rows, where rows sent from here take ten times longer.
        """
        from sqlalchemy import bindparam, text

        from kwik_console.core.clock import utcnow
        from kwik_console.store.tables import UTCDateTime

        first = webhook_ids[0]
        if webhook_ids != list(range(first, first + len(webhook_ids))):
            raise ValueError("insert_deliveries needs consecutive webhook ids")
        if self.kind == "postgresql":
            prefix, series = "", "generate_series(0, :count - 1) AS s(i)"
        else:
            prefix = "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < :count) "
            series = "s"
        statement = text(
            prefix + "INSERT INTO delivery (webhook_id, event_id, event_type, test, status, attempt_count, "
            "next_attempt_at, created_at, updated_at) "
            "SELECT :first + (i % :webhooks), :event_id, :event_type, :test, 'pending', 0, :due, :now, :now "
            "FROM " + series
        ).bindparams(bindparam("due", type_=UTCDateTime()), bindparam("now", type_=UTCDateTime()))
        with self.engine.begin() as conn:
            conn.execute(
                statement,
                {
                    "count": count,
                    "first": first,
                    "webhooks": len(webhook_ids),
                    "event_id": event_id,
                    "event_type": EVENT_TYPE,
                    "test": False,
                    "due": due,
                    "now": utcnow(),
                },
            )

    # ------------------------------------------------ ceilings

    def scenario_ceilings(self, round_name: str) -> None:
        body = sample_body()
        total = self.sizes.ceiling_requests
        url = self.receiver.url("/ceiling")
        for client, loop in CEILING_CLIENTS:
            if client == "raw sockets":
                rate = run_on(loop, raw_ceiling(self.receiver.port, body, total * 4, CONCURRENCY))
                cpu = None
            else:
                rate, cpu = run_on(loop, client_rate(client, url, body, total, self.sizes.ceiling_seconds))
                self.ceiling_cpu[(client, loop)].append(cpu)
            self.ceilings[(client, loop)].append(rate)
            per = "" if cpu is None else f", {cpu * 1e6:,.0f} µs CPU per request"
            say(f"  ceiling {round_name}: {client} on {loop}: {rate:,.0f}/s{per}")
        self.receiver.reset()

    def report_ceilings(self) -> None:
        labels = {
            ("dispatcher", "uvloop"): "own ceiling: the dispatcher's client (delivery.client), uvloop",
            ("httpx", "asyncio"): "httpx, default transport (the client before), asyncio",
            ("aiohttp", "asyncio"): "aiohttp, asyncio",
            ("aiohttp", "uvloop"): "aiohttp, uvloop",
            ("httpx", "uvloop"): "httpx, default transport, uvloop",
            ("httpx-aiohttp", "asyncio"): "httpx + httpx-aiohttp transport, asyncio",
            ("httpx-aiohttp", "uvloop"): "httpx + httpx-aiohttp transport, uvloop",
            ("raw sockets", "uvloop"): "raw sockets, uvloop (the receiver's own limit)",
        }
        out = {}
        for key in CEILING_CLIENTS:
            rates = self.ceilings.get(key)
            if not rates:
                continue
            runs = ", ".join(f"{r:,.0f}" for r in rates)
            cpu = self.ceiling_cpu.get(key)
            per = f", {min(cpu) * 1e6:,.0f} µs CPU/request" if cpu else ""
            self.add("ceil", labels[key], f"{max(rates):,.0f}/s{per}", f"runs: {runs}")
            out[f"{key[0]} {key[1]}"] = {"best": round(max(rates), 1), "runs": [round(r, 1) for r in rates]}
            if cpu:
                out[f"{key[0]} {key[1]}"]["cpu_us_per_request"] = round(min(cpu) * 1e6, 1)
        fastest = self.fastest_ceiling()
        if fastest:
            self.add("ceil", "fastest ceiling: best aiohttp", f"{fastest:,.0f}/s")
        out["own"] = round(self.own_ceiling() or 0, 1)
        out["httpx_default"] = round(self.default_transport_ceiling() or 0, 1)
        out["fastest"] = round(fastest or 0, 1)
        self.figures["ceilings"] = out

    # ------------------------------------------------ (a) backlog

    def scenario_a(self) -> None:
        s = self.sizes
        self.fresh_database("a")
        self.make_webhooks(["/w/a"])
        started = time.perf_counter()
        events = 0
        while events < s.backlog_events and time.perf_counter() - started < s.publish_cap:
            publish()
            events += 1
        publish_seconds = time.perf_counter() - started
        say(f"  (a) published {events:,} events in {publish_seconds:.1f} s; starting the worker")
        steps = engine_steps(self.url)
        worker = self.start_worker("a")
        try:
            ready_cpu = worker.cpu_seconds()
            complete = wait_for(lambda: self.count_success() >= events, s.backlog_cap)
            drain_cpu = worker.cpu_seconds() - ready_cpu
        finally:
            worker.stop()
        stats = self.drain_stats()
        per_delivery = self.per_delivery("a", drain_cpu, stats["success"], engine_steps(self.url, since=steps), worker)
        start = min(t for t in (worker.ready, stats["first_attempt"]) if t is not None)
        elapsed = (stats["last_success"] or start) - start
        rate = stats["success"] / elapsed if elapsed > 0 else 0.0
        spawn_elapsed = (stats["last_success"] or worker.spawned) - worker.spawned
        from_spawn = stats["success"] / spawn_elapsed if spawn_elapsed > 0 else 0.0
        note = "" if complete else f" (incomplete: {stats['success']:,} of {events:,} in {s.backlog_cap:g} s)"
        self.add("a", f"backlog drain, {events:,} events, one webhook", f"{rate:,.0f}/s{note}")
        figures = {
            "events": events,
            "delivered": stats["success"],
            "complete": complete,
            "throughput": round(rate, 1),
            "throughput_from_spawn": round(from_spawn, 1),
            "attempts_per_delivery": round(stats["attempts"] / max(1, stats["success"]), 3),
            "worker_startup_s": round(worker.ready - worker.spawned, 2),
            "publish_rate": round(events / publish_seconds, 1),
        }
        self.throughput_rows("a", rate)
        self.add("a", "  from the worker's spawn (includes its start-up)", f"{from_spawn:,.0f}/s")
        self.add("a", "  attempts per delivery", f"{figures['attempts_per_delivery']:.3f}")
        self.figures["a"] = figures | per_delivery

    # ------------------------------------------------ (b) burst to many webhooks

    def scenario_b(self) -> None:
        self.figures["b"] = self._many_webhooks("burst", in_webhook_order=False)
        self.receiver.reset()
        self.figures["b"]["in_webhook_order"] = self._many_webhooks("ordered", in_webhook_order=True)
        self.receiver.reset()

    def _many_webhooks(self, name: str, *, in_webhook_order: bool) -> dict:
        """(b) 100 webhooks, 50 deliveries each: throughput, and fairness at half done.

        The burst: 50 events, each fanned out to every webhook, published while
        the worker runs. In webhook order (for information, a stricter test of
        fairness): each webhook's 50 events published one after another, the
        worker stopped, so the oldest due deliveries all belong to the first
        webhooks; a claim in due order alone serves those first.
        """
        from kwik_console.events.publishing import publish as kwik_publish

        s = self.sizes
        self.fresh_database(f"b-{name}")
        paths = [f"/w/b{i}" for i in range(s.burst_webhooks)]
        webhook_ids = self.make_webhooks(paths)
        published = dict.fromkeys(paths, s.burst_events)
        worker = None
        steps = engine_steps(self.url)
        ready_cpu = drain_cpu = 0.0
        try:
            if in_webhook_order:
                began = time.perf_counter()
                for path, webhook_id in zip(paths, webhook_ids):
                    if time.perf_counter() - began > s.publish_cap:  # too slow: the rest get none
                        published[path] = 0
                        continue
                    for _ in range(s.burst_events):
                        kwik_publish(EVENT_TYPE, event_data(), webhook_id=webhook_id)
                self.receiver.reset()
                worker = self.start_worker(f"b-{name}")
                ready_cpu = worker.cpu_seconds()
                started = worker.ready
            else:
                worker = self.start_worker(f"b-{name}")
                ready_cpu = worker.cpu_seconds()
                self.receiver.reset()
                started = time.time()
                for _ in range(s.burst_events):
                    publish()  # one event, one delivery for each of the webhooks
            total = sum(published.values())
            complete = wait_for(lambda: self.count_success() >= total, s.burst_cap)
            drain_cpu = worker.cpu_seconds() - ready_cpu
        finally:
            if worker is not None:
                worker.stop()
        stats = self.drain_stats()
        per_delivery = {}
        if not in_webhook_order:
            per_delivery = self.per_delivery(
                "b", drain_cpu, stats["success"], engine_steps(self.url, since=steps), worker
            )
        if in_webhook_order and stats["first_attempt"] is not None:
            started = min(started, stats["first_attempt"])
        elapsed = (stats["last_success"] or started) - started
        rate = stats["success"] / elapsed if elapsed > 0 else 0.0
        note = "" if complete else f" (incomplete: {stats['success']:,} of {total:,} in {s.burst_cap:g} s)"
        if in_webhook_order:
            self.add(
                "b",
                f"backlog in webhook order ({s.burst_events} events to each webhook in turn, worker started after)",
                f"{rate:,.0f}/s{note}",
            )
        else:
            self.add("b", f"burst: {s.burst_events} events x {s.burst_webhooks} webhooks", f"{rate:,.0f}/s{note}")
            self.throughput_rows("b", rate)
        figures = {
            "deliveries": total,
            "delivered": stats["success"],
            "complete": complete,
            "throughput": round(rate, 1),
            "attempts_per_delivery": round(stats["attempts"] / max(1, stats["success"]), 3),
            **per_delivery,
        }

        # Fairness: the first arrival of each (webhook, event), in arrival order, up to half of all deliveries.
        first: dict[tuple[str, str], float] = {}
        for arrived, path, event_id, _ in self.receiver.records():
            if path.startswith("/w/b") and arrived < first.get((path, event_id), math.inf):
                first[(path, event_id)] = arrived
        arrivals = sorted(first.items(), key=lambda item: item[1])
        half = arrivals[: total // 2]
        counts = collections.Counter(path for (path, _), _ in half)
        shares = [counts.get(path, 0) / published[path] for path in paths if published[path]]
        fairness = min(shares) / max(shares) if half and max(shares) > 0 else 0.0
        self.add(
            "b",
            f"  fairness at half done: slowest/fastest share ({min(shares):.2f}/{max(shares):.2f})",
            f"{fairness:.2f}",
            ">= 0.5",
            fairness >= 0.5,
        )
        figures.update(
            fairness=round(fairness, 3),
            share_min=round(min(shares), 3),
            share_max=round(max(shares), 3),
            received_for_fairness=len(half),
        )
        return figures

    # ------------------------------------------------ (c) a healthy webhook beside 8 that time out

    def _latency_phase(self, name: str, others_hang: bool) -> dict:
        s = self.sizes
        self.fresh_database(f"c-{name}")
        others = [f"/w/c-{'hang' if others_hang else 'other'}{i}" for i in range(8)]
        self.make_webhooks(["/w/c-ok", *others])
        worker = self.start_worker(f"c-{name}")
        sent: dict[str, float] = {}
        try:
            self.receiver.reset()
            total = int(s.latency_rate * s.latency_seconds)
            began = time.time()
            for n in range(total):
                delay = began + n / s.latency_rate - time.time()
                if delay > 0:
                    time.sleep(delay)
                if time.time() > began + 2 * s.latency_seconds:
                    break  # publishing fell far behind: keep the run bounded
                now = time.time()
                sent[publish(now).event.id] = now

            def healthy_received() -> int:
                return len({e for _, p, e, _ in self.receiver.records() if p == "/w/c-ok"})

            wait_for(lambda: healthy_received() >= len(sent), s.latency_grace)
            ended = time.time()
        finally:
            # Attempts on the hanging endpoints would hold a graceful stop for 15 s.
            worker.stop(grace=1 if self.sizes is QUICK else 3)
        received: dict[str, float] = {}
        for arrived, path, event_id, sent_at in self.receiver.records():
            if path == "/w/c-ok" and event_id in sent and event_id not in received:
                received[event_id] = arrived - (sent_at if sent_at is not None else sent[event_id])
        # An event never received counts as waiting until the phase ended: a lower bound.
        latencies = [received.get(e, ended - t) for e, t in sent.items()]
        others_received = sum(1 for _, path, _, _ in self.receiver.records() if path in others)
        return {
            "events": len(sent),
            "received": len(received),
            "others_received": others_received,
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1),
        }

    def scenario_c(self) -> None:
        s = self.sizes
        calm = self._latency_phase("calm", others_hang=False)
        self.receiver.reset()
        hang = self._latency_phase("hang", others_hang=True)
        self.receiver.reset()
        ratio = hang["p99_ms"] / calm["p99_ms"] if calm["p99_ms"] > 0 else math.inf
        for label, phase in (("none timing out", calm), ("8 others timing out", hang)):
            missing = phase["events"] - phase["received"]
            note = f", {missing} never received" if missing else ""
            self.add(
                "c", f"healthy webhook p99, {label} (p50 {phase['p50_ms']:,.0f} ms{note})", f"{phase['p99_ms']:,.0f} ms"
            )
        self.add(
            "c",
            f"  ratio ({s.latency_rate:g} events/s x 9 webhooks, {s.latency_seconds:g} s)",
            f"{ratio:.2f}",
            "<= 1.5",
            ratio <= 1.5,
        )
        self.figures["c"] = {"calm": calm, "timing_out": hang, "ratio": round(ratio, 3)}

    # ------------------------------------------------ (d) retry lag

    def scenario_d(self) -> None:
        from sqlalchemy import insert, select

        from kwik_console.core.clock import utcnow
        from kwik_console.store.tables import Attempt, Delivery

        s = self.sizes
        engine = self.fresh_database("d")
        webhook_ids = self.make_webhooks([f"/w/d{i}" for i in range(10)])
        started = time.perf_counter()
        event_id = self.insert_event()  # shared: a body per delivery would only slow the set-up
        self.insert_deliveries(s.retry_pending, webhook_ids, event_id, utcnow() + dt.timedelta(hours=1))
        # The retries fall due once the worker should be up (twice its start-up so far, at least 3 s).
        lead = max(3.0, 2 * max(self.startups, default=2.0))
        base = utcnow() + dt.timedelta(seconds=lead)
        now = utcnow()
        with engine.begin() as conn:
            conn.execute(
                insert(Delivery),
                [
                    {
                        "webhook_id": webhook_ids[n % len(webhook_ids)],
                        "event_id": event_id,
                        "event_type": EVENT_TYPE,
                        "test": False,
                        "status": "retrying",
                        "attempt_count": 1,
                        "last_http_code": 500,
                        "next_attempt_at": base + dt.timedelta(seconds=s.retry_spread * n / s.retries),
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n in range(s.retries)
                ],
            )
            scheduled = {
                row.id: timestamp(row.next_attempt_at)
                for row in conn.execute(
                    select(Delivery.id, Delivery.next_attempt_at).where(Delivery.status == "retrying")
                )
            }
        say(
            f"  (d) {s.retry_pending:,} pending and {s.retries} retries inserted in "
            f"{time.perf_counter() - started:.1f} s; retries due from {lead:.1f} s on"
        )

        def retried() -> list:
            with engine.connect() as conn:
                return conn.execute(select(Attempt.delivery_id, Attempt.attempted_at).where(Attempt.number == 2)).all()

        worker = self.start_worker("d")
        try:
            last_due = max(scheduled.values())
            wait_for(lambda: len(retried()) >= s.retries, max(0.0, last_due - time.time()) + 10)
            ended = time.time()
        finally:
            worker.stop()
        attempted = {row.delivery_id: timestamp(row.attempted_at) for row in retried()}
        counted = {d: due for d, due in scheduled.items() if due >= worker.ready}
        lags = [attempted.get(d, ended) - due for d, due in counted.items()]  # never attempted: until the end
        if not lags:
            self.add("d", "retry lag", "no retry fell due after the worker was running")
            self.figures["d"] = {"retries": s.retries, "counted": 0}
            return
        p50, p99 = statistics.median(lags), percentile(lags, 0.99)
        missing = sum(1 for d in counted if d not in attempted)
        note = f", {missing} never attempted" if missing else ""
        self.add("d", f"retry lag p50, {s.retries} retries beside {s.retry_pending:,} pending", f"{p50 * 1000:,.0f} ms")
        self.add("d", f"  p99 ({len(lags)} counted{note})", f"{p99 * 1000:,.0f} ms", "<= 1 s", p99 <= 1.0)
        self.figures["d"] = {
            "pending": s.retry_pending,
            "retries": s.retries,
            "counted": len(lags),
            "never_attempted": missing,
            "p50_ms": round(p50 * 1000, 1),
            "p99_ms": round(p99 * 1000, 1),
            "max_ms": round(max(lags) * 1000, 1),
        }

    # ------------------------------------------------ (e) claim time

    def scenario_e(self) -> None:
        from sqlalchemy import text

        from kwik_console.core.clock import utcnow

        s = self.sizes
        engine = self.fresh_database("e")
        [webhook_id] = self.make_webhooks(["/w/e"])

        def median_ms(full: bool, calls: int) -> tuple[float, int]:
            times, kept = [], 0
            claim_once(engine, webhook_id, webhook_full=full)  # warm the statement cache
            for _ in range(calls):
                started = time.perf_counter()
                kept += claim_once(engine, webhook_id, webhook_full=full)
                times.append(time.perf_counter() - started)
            return statistics.median(times) * 1000, kept

        empty_ms, _ = median_ms(False, s.claim_calls)
        started = time.perf_counter()
        self.insert_deliveries(s.claim_rows, [webhook_id], self.insert_event(), utcnow() - dt.timedelta(minutes=10))
        if self.kind == "postgresql":
            with engine.begin() as conn:  # what autovacuum would soon do after such an insert
                conn.execute(text("ANALYZE delivery"))
        say(f"  (e) {s.claim_rows:,} due deliveries inserted in {time.perf_counter() - started:.1f} s")
        capped_ms, kept_capped = median_ms(True, s.claim_calls)
        room_ms, kept_room = median_ms(False, s.claim_calls)
        self.add(
            "e",
            f"claim, {s.claim_rows:,} due on one webhook at its cap (median of {s.claim_calls})",
            f"{capped_ms:.1f} ms",
            "<= 15 ms",
            capped_ms <= 15,
        )
        self.add("e", "  the same webhook with room", f"{room_ms:.1f} ms")
        self.add("e", "  no backlog", f"{empty_ms:.1f} ms")
        self.figures["e"] = {
            "rows": s.claim_rows,
            "calls": s.claim_calls,
            "capped_ms": round(capped_ms, 2),
            "with_room_ms": round(room_ms, 2),
            "no_backlog_ms": round(empty_ms, 2),
            "claimed_while_capped": kept_capped,
            "claimed_with_room": kept_room,
        }

    # ------------------------------------------------ (f) publish -> first attempt

    def scenario_f(self) -> None:
        from sqlalchemy import select

        from kwik_console.store.tables import Attempt, Delivery, Event

        s = self.sizes
        engine = self.fresh_database("f")
        self.make_webhooks(["/w/f"])
        total = int(s.first_rate * s.first_seconds)
        published = 0
        worker = self.start_worker("f")
        try:
            began = time.time()
            for n in range(total):
                delay = began + n / s.first_rate - time.time()
                if delay > 0:
                    time.sleep(delay)
                if time.time() > began + 2 * s.first_seconds:
                    break  # publishing fell far behind: keep the run bounded
                publish()
                published += 1
            achieved = published / (time.time() - began)
            wait_for(lambda: self.count(Delivery.attempt_count >= 1) >= published, 15)
            ended = time.time()
        finally:
            worker.stop()
        with engine.connect() as conn:
            rows = conn.execute(
                select(Event.created_at, Attempt.attempted_at)
                .join(Delivery, Delivery.event_id == Event.id)
                .outerjoin(Attempt, (Attempt.delivery_id == Delivery.id) & (Attempt.number == 1))
            ).all()
        latencies = [((timestamp(a) if a else ended) - timestamp(c)) * 1000 for c, a in rows]
        missing = sum(1 for _, a in rows if a is None)
        p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
        note = f", {missing} never attempted" if missing else ""
        self.add("f", f"publish -> first attempt p50, {achieved:,.0f} events/s published", f"{p50:,.1f} ms")
        self.add("f", f"  p99 ({len(latencies)} events{note})", f"{p99:,.1f} ms", "<= 50 ms", p99 <= 50)
        self.figures["f"] = {
            "events": len(latencies),
            "publish_rate": round(achieved, 1),
            "never_attempted": missing,
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "max_ms": round(max(latencies), 2),
        }

    # ------------------------------------------------ output

    def table(self) -> str:
        width = max(len(r.measure) for r in self.rows) + 2
        fig = max(len(r.figure) for r in self.rows) + 2
        lines = [
            f"Delivery benchmark at the default settings: {self.kind}, {os.cpu_count()} cores"
            f"{', QUICK (smoke sizes)' if self.figures['quick'] else ''}"
            f"{f', worker --processes {self.processes} (not the default)' if self.processes > 1 else ''}",
            f"{'':5}{'measure'.ljust(width)}{'figure'.rjust(fig)}   target",
        ]
        previous = None
        for r in self.rows:
            if previous is not None and r.scenario != previous:
                lines.append("")
            previous = r.scenario
            met = "" if r.met is None else ("  met" if r.met else "  NOT MET")
            tag = f"({r.scenario})" if r.scenario != "ceil" else "ceil"
            lines.append(f"{tag:<5}{r.measure.ljust(width)}{r.figure.rjust(fig)}   {r.target}{met}")
        load = self.figures.get("load_average")
        if load:
            lines.append(
                f"\nload average (1, 5, 15 min) at start {load['start']}, at end {load['end']}: "
                "other work on this machine lowers every figure"
            )
        if self.startups:
            lines.append(
                f"\nworker start-up (spawn to its 'running' line): median "
                f"{statistics.median(self.startups):.2f} s over {len(self.startups)} starts"
            )
        return "\n".join(lines)


def engine_steps(database_url: str, since: dict | None = None) -> dict:
    """The engine's step totals counted by the worker's metrics (core/metrics.py), less `since`.

    The worker counts in its deployment's metrics directory, found from the database URL as it finds it.
    """
    from prometheus_client.multiprocess import MultiProcessCollector

    from kwik_console.core import metrics

    names = {
        "kwik_claim_duration_seconds_sum": "claim_s",
        "kwik_claim_duration_seconds_count": "claims",
        "kwik_deliveries_claimed_total": "claimed",
        "kwik_record_duration_seconds_sum": "record_s",
        "kwik_record_duration_seconds_count": "records",
        "kwik_attempt_duration_seconds_sum": "send_s",
    }
    totals = dict.fromkeys(names.values(), 0.0)
    path = metrics.directory_for(database_url)
    if path.is_dir():
        for family in MultiProcessCollector(None, str(path)).collect():
            for sample in family.samples:
                if sample.name in names:
                    totals[names[sample.name]] += sample.value
    for key in ("claims", "claimed", "records"):
        totals[key] = int(totals[key])
    if since:
        totals = {k: v - since.get(k, 0) for k, v in totals.items()}
    return totals


def claim_once(engine, webhook_id: int, *, webhook_full: bool) -> int:
    """One claim as the dispatcher makes it at the defaults; returns how many deliveries it kept.

    Kept in one place because claim_deliveries' signature is being reworked.
    `webhook_full` says, through `room`, that the webhook already holds all it may.
    """
    from kwik_console.core.clock import utcnow
    from kwik_console.core.settings import get_settings
    from kwik_console.delivery.claims import claim_deliveries

    settings = get_settings()
    per_webhook = 2 * settings.max_in_flight_per_webhook  # the dispatcher claims a batch ahead of the caps
    now = utcnow()
    taken = claim_deliveries(
        engine,
        owner="bench",
        now=now,
        lease_until=now + dt.timedelta(seconds=settings.lease_seconds),
        limit=2 * settings.max_in_flight,
        room={webhook_id: 0 if webhook_full else per_webhook},
        per_webhook=per_webhook,
    )
    claims = taken.claims if hasattr(taken, "claims") else taken[0]  # a Taken, or (claims, taken) before
    return len(claims)


def parse_scenarios(values: list[str] | None) -> list[str]:
    if not values:
        return list(SCENARIOS)
    chosen = {part.strip().lower() for value in values for part in value.split(",") if part.strip()}
    unknown = chosen - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    if chosen & {"a", "b"}:
        chosen.add("ceilings")  # their ratios need the ceilings of the same run
    return [s for s in SCENARIOS if s in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="LIST",
        help=f"comma-separated, from {','.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run the worker as `kwik-console worker --processes N` (default 1, the default)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    args = parser.parse_args()
    scenarios = parse_scenarios(args.scenario)
    # A SIGTERM (e.g. from `timeout`) unwinds through the finally blocks that stop workers and drop databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    dropped = sorted(k for k in os.environ if k.startswith("KWIK_"))
    for key in dropped:  # the defaults, for this process and the worker alike
        del os.environ[key]
    if dropped:
        say(f"ignoring {', '.join(dropped)}: the benchmark runs at the default settings")

    began = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    tmp = Path(tempfile.mkdtemp(prefix="kwik-bench-"))
    # The receiver forks: start it before this process opens threads or database connections.
    with BenchReceiver() as receiver:
        bench = Bench(args, tmp, receiver)
        steps = [s for s in SCENARIOS[1:] if s in scenarios]
        order = (
            (["ceilings"] if "ceilings" in scenarios else [])
            + (["e"] if "e" in steps else [])
            + [s for s in steps if s != "e"]
            + (["ceilings-end"] if "ceilings" in scenarios and not args.quick else [])
        )
        try:
            for step in order:
                say(f"[{time.perf_counter() - began:5.0f} s] {step}")
                try:
                    if step == "ceilings":
                        bench.scenario_ceilings("start")
                    elif step == "ceilings-end":
                        bench.scenario_ceilings("end")
                    else:
                        getattr(bench, f"scenario_{step}")()
                except Exception as exc:  # noqa: BLE001  report it and go on with the others
                    traceback.print_exc()
                    bench.figures[step] = {"error": f"{type(exc).__name__}: {exc}"}
                    bench.add(step, "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
        finally:
            try:
                bench.drop_database()
            except Exception:  # noqa: BLE001
                traceback.print_exc()
            shutil.rmtree(tmp, ignore_errors=True)
    bench.finish()
    bench.figures["load_average"] = {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]}
    bench.figures["worker_startups_s"] = [round(t, 2) for t in bench.startups]
    bench.figures["seconds"] = round(time.perf_counter() - began, 1)
    if args.json:
        print(json.dumps(bench.figures, indent=2))
    else:
        print(bench.table())
        print(
            f"\n{bench.figures['seconds']:.0f} s in all; "
            f"{'QUICK sizes: a smoke run, not figures to quote' if args.quick else 'default sizes'}"
        )


if __name__ == "__main__":
    main()
