"""`kwik-console run` and `worker`: serve the console with its delivery scheduler, or run the dispatcher alone."""

from __future__ import annotations

import asyncio
import signal

from kwik_console.cli.output import UsageError
from kwik_console.core import logs
from kwik_console.runtime import launch
from kwik_console.store.db import get_engine


def cmd_worker(args) -> None:
    from kwik_console.delivery import scheduler  # the delivery engine (apscheduler, httpx): only this command pays

    if args.processes < 1:
        raise UsageError("--processes must be 1 or more")

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # More processes share the work through the database's leases, each on a core of its own.
        helpers = [launch.start_helper_worker() for _ in range(args.processes - 1)]
        try:
            async with scheduler.running() as running:
                print("Kwik worker running: delivering webhooks until stopped (Ctrl+C).", flush=True)
                await stop.wait()
        finally:
            await asyncio.to_thread(launch.stop_helper_workers, helpers)
        print(f"Kwik worker stopped after {running.dispatcher.attempts_recorded} attempts.", flush=True)

    logs.configure()  # KWIK_LOG_FORMAT: text or JSON lines, on stderr
    get_engine()  # schema first, so a bad database URL fails before we say we're running
    asyncio.run(work())


def cmd_run(args) -> None:
    raise SystemExit(launch.run_console(dev=args.dev, port=args.port, host=args.host, workers=args.workers))


def register(commands) -> None:
    """Add `run` and `worker` to the kwik-console parser."""
    run = commands.add_parser("run", help="start the console (with the delivery scheduler)")
    run.add_argument("--dev", action="store_true", help="hot reload for development")
    run.add_argument("--port", type=int, default=3000, help="port to serve on (default 3000)")
    run.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 to serve a network)"
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="console processes serving the port (default 1; above 1 needs KWIK_REDIS_URL)",
    )
    run.set_defaults(func=cmd_run)

    worker = commands.add_parser("worker", help="run the delivery dispatcher only, until SIGINT or SIGTERM")
    worker.add_argument(
        "--processes",
        type=int,
        default=1,
        help="dispatcher processes to run (default 1); they share the work through the database",
    )
    worker.set_defaults(func=cmd_worker)
