"""Warm start of `kwik-console run`: seconds from the command to the first 200 on `/`, before and after.

    .venv/bin/python bench/start.py [--rounds 5] [--base 1467fb1]

"Before" is the console at --base (a commit from before warm starts: it compiles
the app and builds the frontend on every start), exported with `git archive` into
bench/out/; "after" is this checkout. Each has its own .web, database and port,
kept for every round, so after its first start each is what a later start
meets: nothing changed. One unmeasured start of each first (the first ever
builds), then --rounds rounds of one start of each, alternating, so both meet
the same machine. Prints each start, the medians and their ratio (after / before),
and whether the "after" starts reused the build (no "Creating Production Build").
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
KWIK = Path(sys.executable).parent / "kwik-console"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export(rev: str) -> Path:
    """The tree of `rev` in bench/out/start-<rev>, sharing this checkout's bun (.tools)."""
    target = OUT / f"start-{rev}"
    if not (target / "kwik_console").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
        tar = target / "tree.tar"
        tar.write_bytes(archive)
        with tarfile.open(tar) as t:
            t.extractall(target, filter="data")
        tar.unlink()
    tools = target / ".tools"
    if not tools.exists():
        tools.symlink_to((ROOT / ".tools").resolve())
    return target


class Variant:
    def __init__(self, name: str, tree: Path):
        self.name, self.tree = name, tree
        self.port = free_port()
        self.data = OUT / f"start-data-{name}"
        self.data.mkdir(parents=True, exist_ok=True)
        self.times: list[float] = []
        self.rebuilt: list[bool] = []

    def start_once(self, timeout: float = 600) -> tuple[float, str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(self.tree),
            "KWIK_DATABASE_URL": f"sqlite:///{self.data / 'kwik.db'}",
            "KWIK_MODE": "local",
        }
        log_path = self.data / "console.log"
        url = f"http://127.0.0.1:{self.port}/"
        with open(log_path, "w") as log:
            started = time.perf_counter()
            process = subprocess.Popen(
                [str(KWIK), "run", "--port", str(self.port)],
                cwd=self.tree,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                elapsed = None
                while time.perf_counter() - started < timeout:
                    if process.poll() is not None:
                        raise RuntimeError(f"{self.name}: the console exited: {log_path.read_text()[-2000:]}")
                    try:
                        with urllib.request.urlopen(url, timeout=2) as response:
                            if response.status == 200:
                                elapsed = time.perf_counter() - started
                                break
                    except OSError:
                        time.sleep(0.05)
                if elapsed is None:
                    raise RuntimeError(f"{self.name}: no 200 within {timeout:.0f} s")
            finally:
                process.send_signal(signal.SIGTERM)  # kwik-console stops its whole tree
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        return elapsed, log_path.read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base", default="1467fb1", help="the commit measured as 'before'")
    args = parser.parse_args()

    before, after = Variant("before", export(args.base)), Variant("after", ROOT)
    for variant in (before, after):
        print(f"{variant.name}: first start (not measured; it builds the frontend)...", flush=True)
        variant.start_once()
    for n in range(1, args.rounds + 1):
        for variant in (before, after) if n % 2 else (after, before):
            seconds, output = variant.start_once()
            variant.times.append(seconds)
            variant.rebuilt.append("Creating Production Build" in output)
            print(f"round {n} {variant.name:6}: {seconds:6.2f} s  (built the frontend: {variant.rebuilt[-1]})")

    b, a = statistics.median(before.times), statistics.median(after.times)
    print(f"\nmedian to the first 200, {args.rounds} rounds, load average now {os.getloadavg()[0]:.1f}:")
    print(f"  before ({args.base}): {b:.2f} s")
    print(f"  after (this checkout): {a:.2f} s")
    print(f"  after / before: {a / b:.2f}  (target: at most 0.50)")
    print(f"  'after' starts that built the frontend: {sum(after.rebuilt)} of {len(after.rebuilt)}")


if __name__ == "__main__":
    main()
