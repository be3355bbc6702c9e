"""Every change Kwik makes to Reflex (and the granian server it runs), in one place.

Written for reflex 0.10.1 and granian 2.8.9 (both pinned in pyproject.toml); `apply()`
refuses any other version with an error naming this file, so an upgrade has to come
here first and re-run tests/integration/test_reflex_patches.py, tests/unit/test_starts.py,
tests/e2e/test_reconnect.py and tests/e2e/test_starts.py.

1. Respawn (granian). `reflex run --env prod` builds granian's `Server` itself and never
   passes `respawn_failed_workers`, so one dead worker stopped the whole console. When
   `kwik-console run` sets KWIK_RESPAWN_FAILED_WORKERS=1, every granian Server built
   afterwards in that process respawns a worker that dies. This module is imported by
   the app module, which Reflex's prod supervisor imports (to compile, and to preload
   it for the fork) before it builds the Server. A respawned worker is a new process
   that runs the app's lifespan again: the delivery scheduler starts in it.

2. Reconnect (reflex.utils.token_manager.RedisTokenManager). Each worker records in
   Redis which worker holds each tab's socket (`token_manager_socket_record_<token>`,
   kept for `redis_token_expiration`, an hour). A killed worker never deletes its
   records, so the tab's reconnect to another worker found the record and was taken
   for a duplicated tab: it got a new token and an empty state. Now each worker
   advertises that it is alive, with a key that expires within ALIVE_TTL seconds
   unless refreshed and a pub/sub subscription that Redis drops the moment the
   process dies. A record whose worker is not alive is released on reconnect, and
   the tab keeps its token and the state Redis holds for it. A real duplicate tab
   (its twin's worker is alive) still gets a new token, as before.

3. Respawn with a backoff (granian). granian's own respawn stops the whole server when a
   worker dies within 5.5 s of the last respawn ("crash loop"), which left deliveries
   Pending with nothing running. Patched servers start a dead worker again at once if it
   had lived a minute, else after 1 s, 2 s, 4 s ... (at most 30 s), and never give up.

4. Warm starts (`reflex run --env prod`, through kwik_console/runtime/reflex_cli.py). The
   app is compiled and the frontend built only when something it is built from changed
   (frontend_build.py); otherwise the build in .web is served as it is.

5. The start's output. Reflex's init tells to run `uv run reflex run`; its Node check warns
   that Node 20 is out of date, although it then builds with bun's runtime, which needs no
   Node (bun --bun: Reflex's own path for a Node older than 22.22); its compile progress
   counts one step more than its total ("31/30"). The first two are dropped, the total fixed.
   When it sets up .web it probes npm mirrors ("Failed to connect to ..."): it gets the
   registry npm is configured with instead, asked only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import pickle
import shutil
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path

from reflex.utils.tasks import ensure_task

from kwik_console.runtime import frontend_build

log = logging.getLogger(__name__)

REFLEX_VERSION = "0.10.1"
GRANIAN_VERSION = "2.8.9"

ALIVE_PREFIX = "kwik_reflex_instance_alive_"  # + instance id: {"pid", "host"}, expires unless refreshed
ALIVE_TTL = 15  # seconds: the longest a worker that vanished without closing its Redis connection counts as alive
ALIVE_REFRESH = 3.0  # seconds between refreshes of the key
READY_WAIT = 5.0  # seconds a first connect waits for its worker to be advertised alive

RESPAWN_ENV = "KWIK_RESPAWN_FAILED_WORKERS"
RESPAWN_FIRST_WAIT = 1.0  # seconds before starting again a worker that died soon after it started; doubles
RESPAWN_MAX_WAIT = 30.0
RESPAWN_STABLE_AFTER = 60.0  # seconds: a worker that lived this long is started again at once when it dies

# Delete the record only if it is still the stale one read (another worker may have claimed the token since).
_DELETE_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_applied = False


class UnsupportedVersion(RuntimeError):
    pass


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Refuse to patch anything but the versions this module was written and tested for."""
    wanted = {"reflex": REFLEX_VERSION, "granian": GRANIAN_VERSION}
    installed = installed if installed is not None else {name: metadata.version(name) for name in wanted}
    wrong = [
        f"{name} {installed.get(name)} (written for {version})"
        for name, version in wanted.items()
        if installed.get(name) != version
    ]
    if wrong:
        raise UnsupportedVersion(
            "kwik_console/reflex_patches.py patches Reflex internals and refuses to run on "
            + ", ".join(wrong)
            + ". Pin the versions it names in pyproject.toml, or update the patches "
            "and re-run tests/test_reflex_patches.py and tests/e2e/test_reconnect.py."
        )


def apply() -> None:
    """Apply the patches the app's processes need, once per process (the app module calls this)."""
    global _applied
    if _applied:
        return
    check_versions()
    _patch_token_manager()
    _patch_newline_paths()
    if os.environ.get(RESPAWN_ENV) == "1":
        _patch_granian_respawn()
    _applied = True


def apply_at_start() -> None:
    """Apply the patches of Reflex's own command, before it runs (reflex_cli.py calls this)."""
    check_versions()
    _patch_warm_start()
    _patch_npm_registry()
    _quiet_start_output()


# --- 1. granian: respawn failed workers ---------------------------------------------------------------


def _patch_granian_respawn() -> None:
    from granian import server  # 60 ms to load: only processes that serve pay for it

    cls = server.Server  # the class reflex.utils.exec.run_granian_backend_prod builds
    if getattr(cls.__init__, "_kwik_respawn", False):
        return
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not self.reload_on_changes:  # dev mode reloads instead
            self.respawn_failed_workers = True
            log.info("granian will respawn a console worker that dies")

    __init__._kwik_respawn = True
    cls.__init__ = __init__
    cls._serve_loop = _serve_loop_with_backoff(cls._serve_loop)


def respawn_wait(quick_deaths: int) -> float:
    """Seconds before starting a dead worker again, after `quick_deaths` deaths in a row soon after a start."""
    if quick_deaths <= 0:
        return 0.0
    return min(RESPAWN_FIRST_WAIT * 2 ** (quick_deaths - 1), RESPAWN_MAX_WAIT)


def _serve_loop_with_backoff(original):
    from granian.log import logger as granian_log  # granian's own lines: same place, same format

    @functools.wraps(original)
    def _serve_loop(self, spawn_target, target_loader):
        # granian 2.8.9's loop (server/common.py) for what Reflex's prod server uses, with its crash
        # branch replaced. Worker lifetimes and memory limits, which Reflex never sets, stay granian's.
        if not self.respawn_failed_workers or self.workers_lifetime is not None or self.workers_rss is not None:
            return original(self, spawn_target, target_loader)
        quick_deaths: dict[int, int] = {}
        due: dict[int, float] = {}  # dead worker -> when to start it again
        while True:
            wait = max(min(due.values()) - time.monotonic(), 0.0) if due else None
            self.main_loop_interrupt.wait(wait)
            if self.interrupt_signal:
                break
            # Cleared before the list is read: a worker that dies meanwhile sets it again.
            self.main_loop_interrupt.clear()
            now = time.monotonic()
            while self.interrupt_children:
                idx = self.interrupt_children.pop(0)
                if idx in due:
                    continue
                lived = now - self.wrks[idx].birth
                quick_deaths[idx] = quick_deaths.get(idx, 0) + 1 if lived < RESPAWN_STABLE_AFTER else 0
                pause = respawn_wait(quick_deaths[idx])
                due[idx] = now + pause
                if pause:
                    granian_log.warning(
                        f"worker-{idx + 1} died {lived:.1f} s after it started; starting it again in {pause:g} s"
                    )
            ready = sorted(idx for idx, at in due.items() if at <= now)
            if ready:
                for idx in ready:
                    del due[idx]
                self._respawn_workers(ready, spawn_target, target_loader)
                self._metrics.incr_respawn_err(1)
            if self.reload_signal:
                self._reload(spawn_target, target_loader)

    _serve_loop._kwik_backoff = True
    return _serve_loop


# --- 2. reflex: a tab whose worker died keeps its token -----------------------------------------------


def alive_key(instance_id: str) -> str:
    return f"{ALIVE_PREFIX}{instance_id}"


def alive_channel(instance_id: str) -> str:
    return f"{ALIVE_PREFIX}{instance_id}"


async def instance_alive(redis, instance_id: str) -> bool:
    """Whether the worker `instance_id` is advertised alive: its key is fresh and its subscription is open."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(alive_key(instance_id))
        pipe.pubsub_numsub(alive_channel(instance_id))
        exists, numsub = await pipe.execute()
    return bool(exists) and bool(numsub) and int(numsub[0][1]) > 0


async def _advertise(manager, instance_id: str, ready: asyncio.Event) -> None:
    """Keep `instance_id` alive in Redis for as long as this process runs (restarted on Redis errors)."""
    value = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    async with manager.redis.pubsub() as pubsub:
        await pubsub.subscribe(alive_channel(instance_id))
        while await pubsub.get_message(timeout=READY_WAIT) is None:  # the subscription is confirmed
            pass
        while True:
            await manager.redis.set(alive_key(instance_id), value, ex=ALIVE_TTL)
            ready.set()
            # Reading the connection also notices when it breaks: the task then starts again.
            await pubsub.get_message(timeout=ALIVE_REFRESH)


async def ensure_advertised(manager) -> None:
    """Start advertising this worker (once per instance id) and wait until it is."""
    if getattr(manager, "_kwik_alive_for", None) != manager.instance_id:
        # First use in this process, or Reflex gave the worker a fresh id when it started.
        if (task := getattr(manager, "_kwik_alive_task", None)) is not None:
            task.cancel()
        manager._kwik_alive_task = None
        manager._kwik_alive_for = manager.instance_id
        manager._kwik_alive_ready = asyncio.Event()
    ensure_task(
        owner=manager,
        task_attribute="_kwik_alive_task",
        coro_function=_advertise,
        manager=manager,
        instance_id=manager.instance_id,
        ready=manager._kwik_alive_ready,
        suppress_exceptions=[Exception],
        exception_limit=10**9,
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(manager._kwik_alive_ready.wait(), READY_WAIT)


async def release_if_owner_gone(manager, token: str) -> bool:
    """Delete the socket record of `token` if the worker it names is no longer alive; True if deleted."""
    key = manager._get_redis_key(token)
    raw = await manager.redis.get(key)
    if not raw:
        return False
    owner = pickle.loads(raw).instance_id
    if owner == manager.instance_id or await instance_alive(manager.redis, owner):
        return False
    released = bool(await manager.redis.eval(_DELETE_IF_UNCHANGED, 1, key, raw))
    cached = manager.token_to_socket.get(token)
    if cached is not None and cached.instance_id == owner:  # a copy this worker fetched earlier
        manager.token_to_socket.pop(token, None)
        if manager.sid_to_token.get(cached.sid) == token:
            manager.sid_to_token.pop(cached.sid, None)
    if released:
        log.info(
            "a tab reconnected from a worker that is gone; it keeps its session token", extra={"dead_instance": owner}
        )
    return released


def _patch_token_manager() -> None:
    # 250 ms to load (Redis and Reflex's state managers): paid only where the patches are applied
    from reflex.utils.token_manager import RedisTokenManager

    if getattr(RedisTokenManager.link_token_to_sid, "_kwik_patched", False):
        return
    original_link = RedisTokenManager.link_token_to_sid
    original_close = RedisTokenManager.close

    @functools.wraps(original_link)
    async def link_token_to_sid(self, token: str, sid: str) -> str | None:
        record = self.token_to_socket.get(token)
        if record is None or record.sid != sid:  # not Reflex's same-socket fast path
            try:
                await ensure_advertised(self)  # before this worker's name goes on any record
                await release_if_owner_gone(self, token)
            except Exception as e:  # Redis trouble: Reflex's own handling follows
                log.warning("could not check the worker of a reconnecting tab: %s", e)
        return await original_link(self, token, sid)

    @functools.wraps(original_close)
    async def close(self) -> None:
        task = getattr(self, "_kwik_alive_task", None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._kwik_alive_task = None
        if getattr(self, "_kwik_alive_for", None):
            with contextlib.suppress(Exception):
                await self.redis.delete(alive_key(self._kwik_alive_for))
        await original_close(self)

    link_token_to_sid._kwik_patched = True
    RedisTokenManager.link_token_to_sid = link_token_to_sid
    RedisTokenManager.close = close


# --- 3. reflex: a start that changes nothing reuses the compiled app and the built frontend -----------

_start_log = logging.getLogger("reflex.kwik")  # under Reflex's logger: printed as Reflex prints its own lines


def _patch_warm_start() -> None:
    # Reflex's command-line modules: loaded only in the process that runs `reflex run`, not in its workers
    from reflex import reflex as reflex_command
    from reflex.utils import build, prerequisites
    from reflex_base import constants
    from reflex_base.config import get_config
    from reflex_base.environment import environment

    if getattr(reflex_command._compile_app, "_kwik_warm", False):
        return
    original_compile = reflex_command._compile_app
    original_build = build.setup_frontend_prod
    this_start: dict = {}  # what the compile decided, for the build that follows it

    @functools.wraps(original_compile)
    def _compile_app(*, avoid_dirty_check: bool = True):
        if environment.REFLEX_ENV_MODE.get() != constants.Env.PROD:
            return original_compile(avoid_dirty_check=avoid_dirty_check)
        web_dir = prerequisites.get_web_dir()
        parts = frontend_build.fingerprint(root=Path.cwd(), package_dir=Path(__file__).parents[1], config=get_config())
        changed = frontend_build.changed_parts(web_dir, parts)
        if changed == []:
            when = frontend_build.built_at(web_dir)
            since = f" on {when.astimezone():%-d %b %Y at %H:%M}" if when else ""
            _start_log.info(f"Serving the frontend built{since}: nothing it is built from has changed.")
            this_start.update(reuse=True)
            return None
        if changed is None:
            _start_log.info("Building the frontend, once: later starts reuse it until what it is built from changes.")
        else:
            why = "; ".join(frontend_build.PART_CHANGED[part] for part in changed)
            _start_log.info(f"Building the frontend again: {why}.")
        this_start.update(reuse=False, parts=parts)
        return original_compile(avoid_dirty_check=avoid_dirty_check)

    @functools.wraps(original_build)
    def setup_frontend_prod(root):
        if this_start.get("reuse"):
            return None
        original_build(root)
        if parts := this_start.get("parts"):
            frontend_build.record(prerequisites.get_web_dir(), parts)
        return None

    _compile_app._kwik_warm = True
    reflex_command._compile_app = _compile_app
    build.setup_frontend_prod = setup_frontend_prod


def _patch_npm_registry() -> None:
    # As above: only the process that runs the command
    from reflex.utils import registry

    if getattr(registry._get_best_registry, "_kwik_npm", False):
        return
    original = registry._get_best_registry

    def npm_registry() -> str:
        """The registry npm is configured with, for bun; Reflex would probe mirrors, unreachable here.

        Asked only when Reflex needs one (setting up .web): a start that reuses the build spends nothing on it.
        """
        if shutil.which("npm"):
            found = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True)
            if found.returncode == 0 and found.stdout.strip():
                return found.stdout.strip()
        return original()

    npm_registry._kwik_npm = True
    registry._get_best_registry = npm_registry


# --- 4. reflex: no misleading line in the start's output ---------------------------------------------


class _DropLines(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


COMPILE_TASK = "Compiling:"


def _quiet_start_output() -> None:
    from reflex.utils import console  # as above: only the process that runs the command

    # `reflex init`'s advice: kwik-console run is what starts the console.
    logging.getLogger("reflex.reflex").addFilter(_DropLines("reflex run`"))
    # Below Node 22.22 Reflex builds with `bun --bun` (bun's runtime), so no Node is out of date for it.
    logging.getLogger("reflex.utils.js_runtimes").addFilter(_DropLines("of Node.js is out of date"))

    if getattr(console.progress, "_kwik_counted", False):
        return
    original_progress = console.progress

    @functools.wraps(original_progress)
    def progress(*args, **kwargs):
        bar = original_progress(*args, **kwargs)
        add_task = bar.add_task

        def add_counted_task(description, *task_args, total=None, **task_kwargs):
            if description == COMPILE_TASK and total is not None:
                total += 1  # the compile advances eight fixed steps and counts seven (reflex/compiler/compiler.py)
            return add_task(description, *task_args, total=total, **task_kwargs)

        bar.add_task = add_counted_task
        return bar

    progress._kwik_counted = True
    console.progress = progress


# --- 5. reflex: a path with a newline reaches Kwik's apps -------------------------------------------------
# Reflex mounts every app at "" on Starlette, whose pattern (".*") does not match a newline: a path with one
# inside ("/api/v1/webhooks/1%0A/pause") got Starlette's plain-text 404 before any of Kwik's apps saw it, not
# the API's problem. The top app now sees the newline percent-escaped, a path no route takes, and Kwik's apps
# answer it as any other unknown path.


def newline_safe(app):
    """`app` (ASGI), seeing each newline of a request's path as %0A."""

    async def safe(scope, receive, send):
        if scope["type"] in ("http", "websocket") and "\n" in scope.get("path", ""):
            scope = dict(scope, path=scope["path"].replace("\n", "%0A"))
        await app(scope, receive, send)

    return safe


def _patch_newline_paths() -> None:
    from reflex.app import App  # seconds to load: only the app module, which builds one, pays for it

    if getattr(App.__call__, "_kwik_newline_safe", False):
        return
    original = App.__call__

    @functools.wraps(original)
    def __call__(self):
        return newline_safe(original(self))

    __call__._kwik_newline_safe = True
    App.__call__ = __call__
