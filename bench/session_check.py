"""What hosted mode's sign-in costs: the session check added to every state event, and the time to sign in.

    .venv/bin/python bench/session_check.py [--database URL] [--events 2000] [--sign-ins 10]

The access middleware (ui/middleware.py, the Reflex middleware every state event passes) is run
side by side, in one process, on the same event:
  - local mode: no session, the implicit admin (the guard's cost without a check);
  - hosted mode: a signed-in developer's cookie, looked up in the database on every event.
The difference of the medians is the latency the session check adds per event.
Default settings throughout (argon2-cffi's default cost, the default idle and absolute expiry).
Without --database it uses a fresh SQLite file; pass a postgresql:// URL to measure PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(ordered) * 1000:.3f} ms, p95 {p95 * 1000:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default=None)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--sign-ins", type=int, default=10)
    args = parser.parse_args()
    database = args.database or f"sqlite:///{tempfile.mkdtemp(prefix='kwik-bench-')}/kwik.db"
    public_url = "http://127.0.0.1:3000"
    os.environ.update(
        KWIK_DATABASE_URL=database,
        KWIK_MODE="hosted",
        KWIK_PUBLIC_URL=public_url,
        KWIK_SECRET_KEY=Fernet.generate_key().decode(),
    )  # hosted mode requires one

    from reflex.state import State
    from reflex_base.event import Event

    from kwik_console import kwik_console as console_app
    from kwik_console.core import settings
    from kwik_console.store.db import session_scope
    from kwik_console.team import audit, members
    from kwik_console.team.sessions import COOKIE_NAME
    from kwik_console.ui import middleware as access_middleware

    settings.get_settings.cache_clear()
    password = "bench passphrase 2024 kite"
    email = f"bench{time.time_ns()}@example.com"
    with session_scope() as session:
        link = members.invite(session=session, email=email, role="developer", actor=audit.CLI)
        members.accept_link(session=session, token=link.token, password=password, confirm=password)

    sign_ins, token = [], ""
    for _ in range(args.sign_ins):
        started = time.perf_counter()
        with session_scope() as session:
            _, token = members.sign_in(session=session, email=email, password=password, address="127.0.0.1")
        sign_ins.append(time.perf_counter() - started)

    event_name = next(n for n, h in access_middleware.all_handlers().items() if h.endswith("WebhooksState.load"))
    state = State(_reflex_internal_init=True)
    state.router_data = {"headers": {"origin": public_url, "cookie": f"{COOKIE_NAME}={token}"}, "asPath": "/"}
    event = Event(name=event_name, payload={})
    middleware = access_middleware.AccessMiddleware()

    async def run(mode: str) -> list[float]:
        os.environ["KWIK_MODE"] = mode
        settings.get_settings.cache_clear()
        samples = []
        for _ in range(50):  # warm up
            assert await middleware.preprocess(console_app.app, state, event) is None
        for _ in range(args.events):
            started = time.perf_counter()
            update = await middleware.preprocess(console_app.app, state, event)
            samples.append(time.perf_counter() - started)
            assert update is None, "the event was refused"
        return samples

    # Interleaved rounds, so both modes meet the same noise on a shared machine.
    local, hosted = [], []
    for _ in range(5):
        local += asyncio.run(run("local"))
        hosted += asyncio.run(run("hosted"))
    added = statistics.median(hosted) - statistics.median(local)
    backend = database.split(":", 1)[0]
    print(f"database: {backend}; {len(hosted)} events per mode")
    print(f"guard, local mode (no session check):   {_ms(local)}")
    print(f"guard, hosted mode (session check):     {_ms(hosted)}")
    print(f"added by the session check per event:   {added * 1000:.3f} ms median (target < 1 ms)")
    print(f"sign in (argon2id verify + session):     {_ms(sign_ins)} over {len(sign_ins)} sign-ins")


if __name__ == "__main__":
    main()
