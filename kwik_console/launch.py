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


def run_console(*, dev: bool = False, port: int = 3000, host: str = "127.0.0.1") -> int:
    env = toolchain_env()
    if dev:
        # Reload on code changes only: the database in data/ changes every second.
        env.setdefault("REFLEX_HOT_RELOAD_OVERRIDE_PATHS", str(ROOT / "kwik_console"))
    ensure_bun(env=env)
    from kwik_console.db import get_engine

    get_engine()  # create the schema, and fail fast on a bad database URL
    where = "with hot reload" if dev else "in production mode; the first start builds the frontend"
    print(f"Starting Kwik Console on http://{host}:{port} {where}...", flush=True)
    try:
        return subprocess.run(reflex_command(dev=dev, port=port, host=host), cwd=ROOT, env=env).returncode
    except KeyboardInterrupt:
        return 0
