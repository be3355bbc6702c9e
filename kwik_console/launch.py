"""`kwik-console run`: prepare Reflex's frontend toolchain, then serve the console.

Reflex normally downloads bun from the web; here bun comes from the npm
registry into `.tools/` of the project, so a fresh machine needs only Python,
Node with npm, and the package registries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BUN_VERSION = "1.4.5"
ROOT = Path(__file__).resolve().parent.parent  # where rxconfig.py lives


def toolchain_env(root: Path = ROOT) -> dict[str, str]:
    """The environment Reflex runs in: our bun, no telemetry, no version check, the configured npm registry."""
    env = dict(os.environ)
    bin_dir = root / ".tools" / "node_modules" / ".bin"
    env["PATH"] = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["REFLEX_BUN_PATH"] = str(bin_dir / "bun")
    env.setdefault("REFLEX_TELEMETRY_ENABLED", "false")
    env.setdefault("REFLEX_CHECK_LATEST_VERSION", "false")
    if not env.get("NPM_CONFIG_REGISTRY") and shutil.which("npm"):
        # Reflex would otherwise probe mirror registries it cannot reach.
        registry = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True)
        if registry.returncode == 0 and registry.stdout.strip():
            env["NPM_CONFIG_REGISTRY"] = registry.stdout.strip()
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
        check=True, env=env,
    )
    return bun


def reflex_command(*, dev: bool, port: int, host: str) -> list[str]:
    reflex = [str(Path(sys.executable).parent / "reflex"), "run", "--backend-host", host]
    if dev:
        return [*reflex, "--env", "dev", "--frontend-port", str(port), "--backend-port", str(port + 5000)]
    return [*reflex, "--env", "prod", "--single-port", "--frontend-port", str(port), "--backend-port", str(port)]


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_mode(*, host: str) -> None:
    """Local mode is one person on one machine: loopback only. Hosted mode needs the address members use."""
    from kwik_console.settings import get_settings

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
    from kwik_console import members
    from kwik_console.db import session_scope
    from kwik_console.settings import get_settings

    if get_settings().local_mode:
        return None
    with session_scope() as session:
        if members.count_members(session=session):
            return None
    return ("No members yet. Create the first admin, who gets a one-time sign-in link:\n"
            "  kwik-console users create --email you@example.com --role admin")


def run_console(*, dev: bool = False, port: int = 3000, host: str = "127.0.0.1") -> int:
    check_mode(host=host)
    env = toolchain_env()
    if dev:
        # Reload on code changes only: the database in data/ changes every second.
        env.setdefault("REFLEX_HOT_RELOAD_OVERRIDE_PATHS", str(ROOT / "kwik_console"))
    ensure_bun(env=env)
    from kwik_console.db import get_engine

    get_engine()  # create the schema, and fail fast on a bad database URL
    if hint := first_admin_hint():
        print(hint, flush=True)
    where = "with hot reload" if dev else "in production mode; the first start builds the frontend"
    print(f"Starting Kwik Console on http://{host}:{port} {where}...", flush=True)
    try:
        return subprocess.run(reflex_command(dev=dev, port=port, host=host), cwd=ROOT, env=env).returncode
    except KeyboardInterrupt:
        return 0
