"""POST /api/v1/events against publishing in-process, side by side in one run: a script, not a test.

    .venv/bin/python bench/api.py [--database sqlite|postgresql] [--seconds 10] [--json]

Default settings (only KWIK_DATABASE_URL is set). The API runs as a real process
(granian, one worker, `kwik_console.api:create_app`) with a `publish`-scoped access
token, so every request pays for what users' requests pay for: the token lookup,
the rate-limit count, the audit entry. One Live webhook is subscribed to the type,
so each publish also makes a delivery (nothing delivers them: publishing is what is
measured).

1. Throughput: in-process `events.publish` from 8 threads, and POST /events with 8
   requests always in flight over keep-alive connections, in 5 turns of each side by
   side (--seconds in all for each side); the ratio API / in-process is the median of
   the turns' ratios, so that the shared machine's noise falls on both sides alike.
2. Latency: POST /events at a steady 200 events/s (open loop: requests start on
   schedule whatever the previous ones did) for --seconds; p50, p99 and max.

The API's client is one asyncio loop (aiohttp): a client of 32 Python threads took
as much CPU as the server on this 2-core machine and its own queueing showed up as
the server's latency (p99 about 200 ms where the server answered in under 10 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THREADS = 8
ROUNDS = 5
RATE = 200
DATA = {"object": "payment", "id": "pay_01JDX5C7G2M4P9X1Q8W3V6NRTE", "amount": 12500, "currency": "GBP"}


def _database(kind: str, folder: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'kwik.db'}"
    import psycopg

    admin = os.environ.get("KWIK_TEST_POSTGRES_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS kwik_bench_api WITH (FORCE)")
        conn.execute("CREATE DATABASE kwik_bench_api")
    return admin.rsplit("/", 1)[0] + "/kwik_bench_api"


def _for(seconds: float, work) -> int:
    """Run `work()` from THREADS threads for `seconds`; the number of calls made."""
    stop = time.monotonic() + seconds
    counts = [0] * THREADS

    def run(i: int):
        while time.monotonic() < stop:
            work()
            counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


async def _post_for(client, seconds: float) -> int:
    """THREADS requests in flight at all times, as THREADS publishing threads would have; how many were made."""
    done, stop = 0, time.monotonic() + seconds

    async def keep_posting() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await _post(client)
            done += 1

    await asyncio.gather(*(keep_posting() for _ in range(THREADS)))
    return done


async def _post(client) -> float:
    started = time.perf_counter()
    async with client.post("/api/v1/events", json={"type": "payment.created", "data": DATA}) as response:
        if response.status != 202:
            raise RuntimeError(f"POST /events answered {response.status}: {(await response.text())[:200]}")
        await response.read()
    return time.perf_counter() - started


async def _measure_api(url: str, token: str, seconds: float) -> dict:
    """Both API measures, from one asyncio client: Python threads would make the client the bottleneck."""
    import aiohttp

    from kwik_console.events.publishing import publish

    async with aiohttp.ClientSession(
        url, headers={"authorization": f"Bearer {token}"}, connector=aiohttp.TCPConnector(limit=64)
    ) as client:
        for _ in range(50):  # connections and caches warm, as in a running console
            await _post(client)
        # 1. Throughput, in ROUNDS short turns, each beside a turn of in-process publishing: the machine's
        # noise then falls on both sides of each ratio alike.
        rounds = []
        for _ in range(ROUNDS):
            in_process = await asyncio.to_thread(
                _for, seconds / ROUNDS, lambda: publish("payment.created", DATA, wake=False)
            )
            api = await _post_for(client, seconds / ROUNDS)
            rounds.append((in_process / (seconds / ROUNDS), api / (seconds / ROUNDS)))
        # 2. Open loop at RATE events/s: requests start on schedule whatever the previous ones did.
        start = time.perf_counter() + 0.2

        async def scheduled(i: int) -> float:
            await asyncio.sleep(max(0.0, start + i / RATE - time.perf_counter()))
            return await _post(client)

        ms = sorted(x * 1000 for x in await asyncio.gather(*(scheduled(i) for i in range(int(RATE * seconds)))))
    ratios = [api / in_process for in_process, api in rounds]
    return {
        "in_process_per_s": statistics.median(r[0] for r in rounds),
        "api_per_s": statistics.median(r[1] for r in rounds),
        "ratio": statistics.median(ratios),
        "ratios": [round(r, 3) for r in ratios],
        "rate_per_s": RATE,
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[int(len(ms) * 0.99) - 1],
        "max_ms": ms[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="kwik-bench-api-"))
    url = _database(args.database, folder)
    for key in [k for k in os.environ if k.startswith("KWIK_")]:
        del os.environ[key]
    os.environ["KWIK_DATABASE_URL"] = url

    from kwik_console.events.publishing import publish
    from kwik_console.store.db import session_scope
    from kwik_console.team import audit, tokens
    from kwik_console.webhooks import rules
    from kwik_console.webhooks import service as webhooks
    from tests.api_server import ApiServer

    with session_scope() as session:
        webhooks.create_webhook(
            session=session,
            data=rules.WebhookInput(
                name="bench", url="https://api-bench.kwik-bench.invalid/hooks", events=["payment.created"]
            ),
            actor=audit.CLI,
        )
        token = tokens.create_token(session=session, name="bench", scopes="publish", actor=audit.CLI).token

    figures: dict = {"database": args.database, "seconds": args.seconds}
    _for(1.0, lambda: publish("payment.created", DATA, wake=False))  # warm, as the API's side is
    with ApiServer(folder / "api.log") as api:
        figures.update(asyncio.run(_measure_api(api.url, token, args.seconds)))

    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"POST /api/v1/events vs in-process publish ({args.database}, default settings, {args.seconds:g} s each)")
    print(
        f"  in-process publish   {figures['in_process_per_s']:8.0f} events/s  ({THREADS} threads; median of "
        f"{ROUNDS} turns)"
    )
    print(
        f"  POST /events         {figures['api_per_s']:8.0f} events/s  ({THREADS} in flight, token, one granian "
        f"worker; median of {ROUNDS} turns)"
    )
    print(
        f"  ratio                {figures['ratio']:8.2f}  (target >= 0.5; median of each turn's ratio: "
        f"{', '.join(f'{r:.2f}' for r in figures['ratios'])})"
    )
    print(
        f"  at {RATE} events/s: p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms "
        f"(target < 20 ms), max {figures['max_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
