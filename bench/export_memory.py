"""How much server memory an event-log export costs: the export route alone, served by granian, streaming N rows.

    .venv/bin/python bench/export_memory.py [--deliveries 200000] [--database sqlite:////tmp/kwik-export.db]

Seeds the database with bench/seed.py (one webhook, N deliveries, by SQL;
skipped when --database already holds them), then serves kwik_console.web.export
with granian, one worker, as `kwik-console run` serves it (local mode: no
sign-in). It exports once with a small filter to warm up (imports, pools),
takes the resident memory (RSS) of the serving processes, resets their peak
(/proc/<pid>/clear_refs), downloads the whole export as CSV and as JSON Lines,
counts the rows, and reports for each format the peak RSS above the
warmed-up baseline. The server and this client talk over 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MB = 1024 * 1024


def app():
    """granian's factory: only the export route, as kwik_console.kwik_console mounts it."""
    from kwik_console.web import export

    return export.app()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[int]:
    """The process and all its descendants (granian's worker runs in a child)."""
    found, frontier = [pid], [pid]
    while frontier:
        children = []
        for p in frontier:
            try:
                children += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
            except FileNotFoundError:
                pass
        found += children
        frontier = children
    return found


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss(pids: list[int]) -> int:
    return sum(status_kb(p, "VmRSS") for p in pids) * 1024


def peak(pids: list[int]) -> int:
    return sum(status_kb(p, "VmHWM") for p in pids) * 1024


def reset_peak(pids: list[int]) -> None:
    for p in pids:
        Path(f"/proc/{p}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux 4.0+)


def delivery_count(database: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM delivery")).scalar_one()
    except Exception:  # no such table yet
        return 0
    finally:
        engine.dispose()


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the export server exited")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the export server did not start")


def export(url: str, pids: list[int]) -> tuple[int, int, float, int]:
    """Stream one export to the end: (rows, bytes, seconds, highest RSS sampled while it ran)."""
    rows = size = 0
    highest = rss(pids)
    started = time.perf_counter()
    with httpx.stream("GET", url, timeout=None) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            rows += chunk.count(b"\n")
            size += len(chunk)
            highest = max(highest, rss(pids))
    return rows, size, time.perf_counter() - started, highest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=200_000)
    parser.add_argument("--database", help="a KWIK_DATABASE_URL (default: a new SQLite file in a temporary folder)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="kwik-export-")
    database = args.database or f"sqlite:///{tmp}/kwik.db"
    if delivery_count(database) < args.deliveries:
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "seed.py"),
                "--database",
                database,
                "--webhooks",
                "1",
                "--deliveries",
                str(args.deliveries),
            ],
            check=True,
        )
    webhook_id = 1
    port = free_port()
    env = {**os.environ, "KWIK_DATABASE_URL": database, "KWIK_MODE": "local", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "granian"),
            "--interface",
            "asgi",
            "--factory",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "bench.export_memory:app",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}/export/webhooks/{webhook_id}/events"
    try:
        wait_ready(base + ".csv?q=warm-up-nothing-matches", server)
        for fmt in ("csv", "jsonl"):
            export(f"{base}.{fmt}?status=failure", tree(server.pid))  # warm up: imports, pools, caches
        pids = tree(server.pid)
        print(f"{args.deliveries:,} deliveries in {database}; granian pids {pids}", flush=True)
        for fmt in ("csv", "jsonl"):
            before = rss(pids)
            reset_peak(pids)
            rows, size, seconds, sampled = export(f"{base}.{fmt}", pids)
            top = max(peak(pids), sampled)
            print(
                f"{fmt:5}: {rows:,} lines, {size / MB:,.0f} MB in {seconds:.1f} s; server RSS {before / MB:.1f} MB "
                f"before, peak {top / MB:.1f} MB: +{(top - before) / MB:.1f} MB "
                f"(after: {rss(pids) / MB:.1f} MB)",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
