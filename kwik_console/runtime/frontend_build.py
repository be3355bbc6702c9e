"""Whether the frontend built by an earlier `kwik-console run` can be served again.

A production start compiles the Reflex app and builds the frontend (about 8 s of a
start). That build is reused when nothing it is made from has changed, which is
told by a fingerprint of its inputs, in four parts:

- app: the content of every file of the kwik_console package, rxconfig.py,
  assets/ and reflex.lock/ (contents, not modification times);
- packages: Python's version and the name and version of every installed
  distribution (Reflex and its components among them);
- toolchain: bun and node (path, size, modification time);
- settings: Reflex's configuration as this start resolved it (ports, URLs,
  plugins, theme: what goes into the frontend's env.json and vite config) and
  every KWIK_*, REFLEX_*, VITE_*, REACT_*, NODE_* and BUN_* variable.

The fingerprint is written beside the build (.web/build/kwik-build.json) once the
build has finished, with a digest of the files Reflex reads from .web while it
serves (routes.json, backend/). A missing or different one means a new build,
so a frontend that does not match what is started is never served.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sys
import sysconfig
from pathlib import Path

STAMP = Path("build") / "kwik-build.json"  # inside .web/build: Reflex deletes the folder when a build starts
SERVED = Path("build") / "client" / "index.html"
ENV_PREFIXES = ("KWIK_", "REFLEX_", "VITE_", "REACT_", "NODE_", "BUN_")
PART_CHANGED = {
    "app": "the app's files changed",
    "packages": "the installed Python packages changed",
    "toolchain": "bun or node changed",
    "settings": "a setting the frontend is built with changed (address, port, mode or Reflex's configuration)",
    "runtime": "Reflex's compiled files in .web changed since the build",
}
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")  # object addresses in reprs differ on every start


def fingerprint(*, root: Path, package_dir: Path, config, env: dict[str, str] | None = None) -> dict[str, str]:
    """The digest of each part of what the frontend is built from (see the module's docstring)."""
    env = os.environ if env is None else env
    app = [package_dir, root / "rxconfig.py", root / "assets", root / "reflex.lock"]
    return {
        "app": _digest(_file_digests(app, root=root, skip=(root / "assets" / "external",))),
        "packages": _digest([sys.version, *_installed_distributions()]),
        "toolchain": _digest([_executable(name, env) for name in ("bun", "node")]),
        "settings": _digest(
            [_canonical(config), *sorted(f"{k}={v}" for k, v in env.items() if k.startswith(ENV_PREFIXES))]
        ),
    }


def changed_parts(web_dir: Path, parts: dict[str, str]) -> list[str] | None:
    """What changed since the frontend in `web_dir` was built: [] if it can be served as it is; None if never built."""
    try:
        stamp = json.loads((web_dir / STAMP).read_text())
    except (OSError, ValueError):
        return None
    if not (web_dir / SERVED).is_file():
        return None
    recorded = stamp.get("parts", {})
    changed = [name for name, digest in parts.items() if recorded.get(name) != digest]
    if stamp.get("runtime") != _runtime_digest(web_dir):
        changed.append("runtime")
    return changed


def record(web_dir: Path, parts: dict[str, str]) -> None:
    """Remember what the frontend just built in `web_dir` was built from."""
    stamp = {
        "parts": parts,
        "runtime": _runtime_digest(web_dir),
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    path = web_dir / STAMP
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(stamp, indent=1))
    partial.replace(path)


def built_at(web_dir: Path) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(json.loads((web_dir / STAMP).read_text())["built_at"])
    except (OSError, ValueError, KeyError):
        return None


def _digest(items) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(str(item).encode())
        h.update(b"\0")
    return h.hexdigest()


def _file_digests(paths: list[Path], *, root: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    found = []
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc" or any(file.is_relative_to(s) for s in skip):
                continue
            found.append(f"{file.relative_to(root) if file.is_relative_to(root) else file}:{_hash_file(file)}")
    return found


def _hash_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _installed_distributions() -> list[str]:
    # The folder names say name and version ("reflex-0.10.1.dist-info"): far cheaper than reading each one's metadata.
    folders = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    names = []
    for folder in folders:
        try:
            names += [n for n in os.listdir(folder) if n.endswith((".dist-info", ".egg-info", ".egg-link", ".pth"))]
        except OSError:
            continue
    return sorted(names)


def _executable(name: str, env) -> str:
    where = env.get("REFLEX_BUN_PATH") if name == "bun" else None
    where = where or shutil.which(name, path=env.get("PATH"))
    if not where or not os.path.exists(where):
        return f"{name}: none"
    real = os.path.realpath(where)
    stat = os.stat(real)
    return f"{name}: {real} {stat.st_size} {stat.st_mtime_ns}"


def _runtime_digest(web_dir: Path) -> str:
    return _digest(_file_digests([web_dir / "routes.json", web_dir / "backend"], root=web_dir))


def _canonical(value) -> str:
    """A text for `value` that is the same on every start with the same settings (sets sorted, no addresses)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Private fields are Reflex's bookkeeping (which ones were set, whether the name was checked yet).
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if not f.name.startswith("_")}
        return type(value).__name__ + "(" + ", ".join(f"{k}={_canonical(v)}" for k, v in sorted(fields.items())) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_canonical(k)}: {_canonical(v)}" for k, v in sorted(value.items(), key=str)) + "}"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(_canonical(v) for v in value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_canonical(v) for v in value) + "]"
    return _ADDRESS.sub("", repr(value))
