"""`kwik-console run`: prepare Reflex's frontend toolchain, then serve the console.

Reflex normally downloads bun from the web; here bun comes from the npm
registry into `.tools/` of the project, so a fresh machine needs only Python,
Node with npm, and the package registries.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from kwik_console.core.settings import get_settings
from kwik_console.store.db import get_engine, session_scope
from kwik_console.team import members

BUN_VERSION = "1.4.5"
ROOT = Path(__file__).resolve().parents[2]  # where rxconfig.py lives


def toolchain_env(root: Path = ROOT) -> dict[str, str]:
    """The environment Reflex runs in: our bun, no telemetry, no version check.

    The npm registry bun installs from is looked up only when Reflex sets up .web
    (reflex_patches._patch_npm_registry).
    """
    env = dict(os.environ)
    bin_dir = root / ".tools" / "node_modules" / ".bin"
    env["PATH"] = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["REFLEX_BUN_PATH"] = str(bin_dir / "bun")
    env.setdefault("REFLEX_TELEMETRY_ENABLED", "false")
    env.setdefault("REFLEX_CHECK_LATEST_VERSION", "false")
    return env


def ensure_bun(root: Path = ROOT, env: dict[str, str] | None = None) -> Path:
    bun = root / ".tools" / "node_modules" / ".bin" / "bun"
    if bun.exists():
        return bun
    if not shutil.which("npm"):
        raise SystemExit("kwik-console: error: npm is needed once, to install bun for the console's frontend")
    print(f"Installing bun {BUN_VERSION} into .tools/ (first start only)...", flush=True)
    subprocess.run(
        ["npm", "install", "--prefix", str(root / ".tools"), "--no-audit", "--no-fund", f"bun@{BUN_VERSION}"],
        check=True,
        env=env,
    )
    return bun


def reflex_command(*, dev: bool, port: int, host: str) -> list[str]:
    # Reflex's command line with Kwik's start patches (warm starts, a truthful output) applied first.
    reflex = [sys.executable, "-m", "kwik_console.runtime.reflex_cli", "run", "--backend-host", host]
    if dev:
        return [*reflex, "--env", "dev", "--frontend-port", str(port), "--backend-port", str(port + 5000)]
    return [*reflex, "--env", "prod", "--single-port", "--frontend-port", str(port), "--backend-port", str(port)]


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_mode(*, host: str) -> None:
    """Local mode is one person on one machine: loopback only. Hosted mode needs the address members use."""

    settings = get_settings()
    if settings.local_mode and host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise SystemExit(
            f"kwik-console: error: local mode has no sign-in, so it serves only on loopback, not on {host}. "
            "To share the console, set KWIK_MODE=hosted and KWIK_PUBLIC_URL=https://<its address>."
        )
    if not settings.local_mode and not settings.public_url:
        raise SystemExit(
            "kwik-console: error: hosted mode needs KWIK_PUBLIC_URL, the address members open "
            "(e.g. https://kwik.example.com): sign-in and the websocket accept only that origin."
        )


def first_admin_hint() -> str | None:

    if get_settings().local_mode:
        return None
    with session_scope() as session:
        if members.count_members(session=session):
            return None
    return (
        "No members yet. Create the first admin, who gets a one-time sign-in link:\n"
        "  kwik-console users create --email you@example.com --role admin"
    )


def run_console(*, dev: bool = False, port: int = 3000, host: str = "127.0.0.1", workers: int = 1) -> int:

    check_mode(host=host)
    settings = get_settings()
    env = toolchain_env()
    if settings.redis_url:
        env["REFLEX_REDIS_URL"] = settings.redis_url  # the only name Reflex reads
    if workers > 1:
        if not settings.redis_url:
            raise SystemExit(
                "kwik-console: error: --workers above 1 needs KWIK_REDIS_URL (e.g. redis://127.0.0.1:6379): "
                "each tab's state must be shared by every worker"
            )
    if not dev:
        # Exactly the number asked for (Reflex would pick one per CPU when Redis is set), and a
        # worker that dies is started again instead of stopping the console (kwik_console/reflex_patches.py).
        env["GRANIAN_WORKERS"] = str(workers)
        env["KWIK_RESPAWN_FAILED_WORKERS"] = "1"
    if dev:
        # Reload on code changes only: the database in data/ changes every second.
        env.setdefault("REFLEX_HOT_RELOAD_OVERRIDE_PATHS", str(ROOT / "kwik_console"))
    ensure_bun(env=env)

    get_engine()  # create the schema, and fail fast on a bad database URL
    if hint := first_admin_hint():
        print(hint, flush=True)
    where = "with hot reload" if dev else "in production mode"
    print(f"Starting Kwik Console on http://{host}:{port} {where}...", flush=True)
    # In-flight attempts get up to the attempt timeout to finish when we are stopped.
    return serve(reflex_command(dev=dev, port=port, host=host), env=env, grace=settings.attempt_timeout + 10)


def _die_with_parent() -> None:
    # Linux: if kwik-console itself is killed outright, its Reflex child still gets SIGTERM.
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def serve(command: list[str], *, env: dict[str, str], grace: float) -> int:
    """Run Reflex as a process group of its own; SIGTERM, SIGINT or SIGHUP stops the whole group.

    Reflex gets SIGTERM (its workers' delivery schedulers then finish their
    attempts and hand back their waiting claims) and `grace` seconds; then
    the group is killed: nothing is left serving the port.
    """
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    stopping = False

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        # To Reflex's main process only: it stops its workers in order, each running
        # its shutdown (the scheduler's). The whole group gets the signal afterwards.
        try:
            child.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        while True:
            try:
                code = child.wait(timeout=grace if stopping else None)
                break
            except subprocess.TimeoutExpired:
                print("kwik-console: the console did not stop in time; killing it", file=sys.stderr, flush=True)
                _signal_group(child.pid, signal.SIGKILL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_stragglers(child.pid)
    return 0 if stopping else code


def start_helper_worker() -> subprocess.Popen:
    """One more `kwik-console worker` process, stopped with its parent (`worker --processes N`)."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "kwik-console"), "worker"],
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def stop_helper_workers(workers: list[subprocess.Popen], grace: float = 30) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for worker in workers:
        try:
            worker.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _stop_stragglers(pgid: int, grace: float = 5.0) -> None:
    """Reflex's main process is gone; give any child of it left in the group a moment, then kill it."""
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    _signal_group(pgid, signal.SIGKILL)
